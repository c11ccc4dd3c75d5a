//! OpenAlgo's option calls over the symbol master and the price cache:
//!
//! - [`resolve`]: the contract an underlying, expiry and offset (`ATM`, `ITM2`, `OTM1`) name;
//! - [`chain`]: `optionsymbol`, `optionchain` and `syntheticfuture`;
//! - [`greeks`]: `optiongreeks` and `multioptiongreeks` (Black-76 on the option's last price);
//! - [`orders`]: `optionsorder` and `optionsmultiorder`, placed through the order service.
//!
//! Each endpoint reads the request fields and answers with the keys, messages and statuses
//! of upstream's `restx_api/` and `services/` file it names.

pub(crate) mod chain;
pub(crate) mod greeks;
pub(crate) mod orders;
pub(crate) mod resolve;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
pub(crate) use oa_marketdata_core::symbols::round_to;

/// Indian Standard Time, UTC+05:30.
fn india() -> Option<chrono::FixedOffset> {
    chrono::FixedOffset::east_opt(5 * 3600 + 1800)
}

/// `instant` in Indian time, formatted with `format` (chrono's strftime).
pub(crate) fn india_text(instant: DateTime<Utc>, format: &str) -> String {
    india()
        .map(|zone| instant.with_timezone(&zone).format(format).to_string())
        .unwrap_or_default()
}

/// `28OCT25` as a date.
pub(crate) fn parse_symbol_date(text: &str) -> Option<NaiveDate> {
    let title: String = text
        .char_indices()
        .map(
            |(index, c)| {
                if index > 2 { c.to_ascii_lowercase() } else { c }
            },
        )
        .collect();
    NaiveDate::parse_from_str(&title, "%d%b%y").ok()
}

/// The instant an option of `exchange` expiring on `date` expires: the exchange's cut-off
/// (IST) on that day (upstream services/option_greeks_service.py `EXCHANGE_EXPIRY_TIMES`:
/// MCX 23:30, CDS 12:30, others 15:30), or `custom` (`(hour, minute)`).
pub(crate) fn expiry_instant(
    date: NaiveDate,
    exchange: &str,
    custom: Option<(u32, u32)>,
) -> Option<DateTime<Utc>> {
    let (hour, minute) = custom.unwrap_or(match exchange {
        "MCX" => (23, 30),
        "CDS" => (12, 30),
        _ => (15, 30),
    });
    let local = date.and_hms_opt(hour, minute, 0)?;
    india()?
        .from_local_datetime(&local)
        .single()
        .map(|time| time.with_timezone(&Utc))
}

/// Years and days until `expiry` from `now` (upstream `calculate_time_to_expiry`): zero
/// once expired, at least 0.0001 years (about an hour) before.
pub(crate) fn time_to_expiry(expiry: DateTime<Utc>, now: DateTime<Utc>) -> (f64, f64) {
    if expiry < now {
        return (0.0, 0.0);
    }
    let days = (expiry - now).num_milliseconds() as f64 / 86_400_000.0;
    let years = days / 365.0;
    if years < 0.0001 {
        return (0.0001, 0.0001 * 365.0);
    }
    (years, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_expire_at_the_exchanges_cut_off_in_india() {
        let date = parse_symbol_date("30DEC25").unwrap();
        assert_eq!(date, NaiveDate::from_ymd_opt(2025, 12, 30).unwrap());
        let nfo = expiry_instant(date, "NFO", None).unwrap();
        assert_eq!(nfo.to_rfc3339(), "2025-12-30T10:00:00+00:00");
        let mcx = expiry_instant(date, "MCX", None).unwrap();
        assert_eq!(mcx.to_rfc3339(), "2025-12-30T18:00:00+00:00");
        let custom = expiry_instant(date, "NFO", Some((19, 0))).unwrap();
        assert_eq!(custom.to_rfc3339(), "2025-12-30T13:30:00+00:00");
        assert_eq!(parse_symbol_date("30XYZ25"), None);
    }

    #[test]
    fn time_to_expiry_is_zero_after_and_floored_before() {
        let expiry = expiry_instant(parse_symbol_date("30DEC25").unwrap(), "NFO", None).unwrap();
        assert_eq!(
            time_to_expiry(expiry, expiry + chrono::Duration::seconds(1)),
            (0.0, 0.0)
        );
        let (years, _) = time_to_expiry(expiry, expiry - chrono::Duration::seconds(60));
        assert_eq!(years, 0.0001);
        let (years, days) = time_to_expiry(expiry, expiry - chrono::Duration::days(73));
        assert!((days - 73.0).abs() < 1e-9 && (years - 0.2).abs() < 1e-12);
    }
}
