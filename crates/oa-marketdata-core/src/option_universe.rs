//! The bundled NFO derivatives universe: NIFTY and BANKNIFTY futures and options, generated
//! for the current date around each index's price, with OpenAlgo's symbol format
//! (`NIFTY30DEC2524000CE`: name, expiry `DDMMMYY`, strike, `CE`/`PE`; `NIFTY30DEC25FUT`).
//!
//! Expiries follow NSE's calendar rules since September 2025: index options expire on
//! Tuesdays; NIFTY has weekly expiries and a monthly one on the last Tuesday of the month;
//! BANKNIFTY has monthly expiries only; futures expire with the monthly options. Exchange
//! holidays (which move an expiry to the previous trading day) are not applied.

pub use chrono::NaiveDate;
use chrono::{Datelike, Duration, Weekday};

use crate::options::OptionKind;
use crate::symbols::Instrument;

/// A family of derivatives on one index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionSeries {
    /// Name in symbols (`NIFTY`).
    pub name: &'static str,
    /// Where the index is listed (`NSE_INDEX`).
    pub underlying_exchange: &'static str,
    /// The index symbol (`NIFTY`).
    pub underlying: &'static str,
    /// Where its derivatives are listed (`NFO`).
    pub exchange: &'static str,
    /// Distance between listed strikes.
    pub strike_step: f64,
    /// Strikes listed on each side of the at-the-money one.
    pub strikes_each_side: u32,
    /// Contract lot size.
    pub lot_size: f64,
    /// Weekly expiries listed (besides the monthly ones).
    pub weekly_expiries: usize,
    /// Monthly expiries listed.
    pub monthly_expiries: usize,
    /// At-the-money volatility of the simulated smile, decimal.
    pub atm_volatility: f64,
}

/// The bundled series.
pub const BUNDLED_SERIES: &[OptionSeries] = &[
    OptionSeries {
        name: "NIFTY",
        underlying_exchange: "NSE_INDEX",
        underlying: "NIFTY",
        exchange: "NFO",
        strike_step: 50.0,
        strikes_each_side: 40,
        lot_size: 75.0,
        weekly_expiries: 4,
        monthly_expiries: 3,
        atm_volatility: 0.13,
    },
    OptionSeries {
        name: "BANKNIFTY",
        underlying_exchange: "NSE_INDEX",
        underlying: "BANKNIFTY",
        exchange: "NFO",
        strike_step: 100.0,
        strikes_each_side: 40,
        lot_size: 35.0,
        weekly_expiries: 0,
        monthly_expiries: 3,
        atm_volatility: 0.15,
    },
];

/// The current date in India (UTC+05:30).
pub fn today_in_india() -> NaiveDate {
    (chrono::Utc::now() + Duration::minutes(330)).date_naive()
}

/// The weekday index options expire on.
const EXPIRY_WEEKDAY: Weekday = Weekday::Tue;

/// What a derivative is written on and when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The underlying's exchange (`NSE_INDEX`).
    pub underlying_exchange: String,
    /// The underlying's symbol (`NIFTY`).
    pub underlying: String,
    /// Expiry date (Indian calendar); contracts expire at 15:30 IST.
    pub expiry: NaiveDate,
    /// Strike; 0 for futures.
    pub strike: f64,
    /// Call or put; `None` for futures.
    pub kind: Option<OptionKind>,
    /// At-the-money volatility the simulator prices it with.
    pub atm_volatility: f64,
}

/// The last `weekday` of the month of `date`.
fn last_weekday_of_month(date: NaiveDate, weekday: Weekday) -> NaiveDate {
    let (year, month) = (date.year(), date.month());
    let first_of_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .unwrap_or(date);
    let mut day = first_of_next - Duration::days(1);
    while day.weekday() != weekday {
        day -= Duration::days(1);
    }
    day
}

/// The first `weekday` on or after `date`.
fn next_weekday(date: NaiveDate, weekday: Weekday) -> NaiveDate {
    let ahead = (7 + weekday.num_days_from_monday() - date.weekday().num_days_from_monday()) % 7;
    date + Duration::days(i64::from(ahead))
}

/// The series' expiries on or after `today`, earliest first: (date, is the monthly expiry).
pub fn expiries(series: &OptionSeries, today: NaiveDate) -> Vec<(NaiveDate, bool)> {
    let mut monthly = Vec::new();
    let mut month = today.with_day(1).unwrap_or(today);
    while monthly.len() < series.monthly_expiries {
        let expiry = last_weekday_of_month(month, EXPIRY_WEEKDAY);
        if expiry >= today {
            monthly.push(expiry);
        }
        month = last_weekday_of_month(month, EXPIRY_WEEKDAY) + Duration::days(7);
        month = month.with_day(1).unwrap_or(month);
    }
    let mut all: Vec<(NaiveDate, bool)> = monthly.iter().map(|date| (*date, true)).collect();
    let mut week = next_weekday(today, EXPIRY_WEEKDAY);
    for _ in 0..series.weekly_expiries {
        if !monthly.contains(&week) {
            all.push((week, false));
        }
        week += Duration::days(7);
    }
    all.sort_by_key(|(date, _)| *date);
    all
}

/// `30DEC25`, as in OpenAlgo symbols.
pub fn symbol_date(date: NaiveDate) -> String {
    date.format("%d%b%y").to_string().to_ascii_uppercase()
}

/// `30-DEC-25`, as in OpenAlgo's master contract `expiry` column.
pub fn expiry_label(date: NaiveDate) -> String {
    date.format("%d-%b-%y").to_string().to_ascii_uppercase()
}

/// A strike as OpenAlgo writes it in symbols: whole numbers without a fraction.
fn strike_text(strike: f64) -> String {
    if strike.fract() == 0.0 {
        format!("{strike:.0}")
    } else {
        format!("{strike}")
    }
}

/// The futures and options of `series` for `today`, strikes around `spot`.
pub fn instruments(series: &OptionSeries, spot: f64, today: NaiveDate) -> Vec<Instrument> {
    let at_the_money = (spot / series.strike_step).round() * series.strike_step;
    let mut out = Vec::new();
    for (expiry, monthly) in expiries(series, today) {
        let date = symbol_date(expiry);
        let contract = |strike: f64, kind: Option<OptionKind>| Contract {
            underlying_exchange: series.underlying_exchange.to_string(),
            underlying: series.underlying.to_string(),
            expiry,
            strike,
            kind,
            atm_volatility: series.atm_volatility,
        };
        let instrument = |symbol: String,
                          instrument_type: &str,
                          base_price: f64,
                          contract: Contract| Instrument {
            exchange: series.exchange.to_string(),
            symbol,
            name: series.name.to_string(),
            lot_size: series.lot_size,
            tick_size: 0.05,
            instrument_type: instrument_type.to_string(),
            base_price,
            contract: Some(contract),
        };
        if monthly {
            out.push(instrument(
                format!("{}{date}FUT", series.name),
                "FUT",
                spot,
                contract(0.0, None),
            ));
        }
        let steps = i64::from(series.strikes_each_side);
        for step in -steps..=steps {
            let strike = at_the_money + step as f64 * series.strike_step;
            if strike <= 0.0 {
                continue;
            }
            for kind in [OptionKind::Call, OptionKind::Put] {
                let symbol = format!(
                    "{}{date}{}{}",
                    series.name,
                    strike_text(strike),
                    kind.code()
                );
                out.push(instrument(
                    symbol,
                    kind.code(),
                    0.0,
                    contract(strike, Some(kind)),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn nifty_has_weekly_tuesdays_and_monthly_last_tuesdays() {
        let nifty = &BUNDLED_SERIES[0];
        // Wednesday 2 December 2026.
        let listed = expiries(nifty, date("2026-12-02"));
        let dates: Vec<String> = listed.iter().map(|(d, _)| d.to_string()).collect();
        assert_eq!(
            dates,
            [
                "2026-12-08",
                "2026-12-15",
                "2026-12-22",
                "2026-12-29",
                "2027-01-26",
                "2027-02-23"
            ]
        );
        let monthly: Vec<bool> = listed.iter().map(|(_, m)| *m).collect();
        assert_eq!(monthly, [false, false, false, true, true, true]);
        // On an expiry day that expiry is still listed.
        assert_eq!(
            expiries(nifty, date("2026-12-29"))[0],
            (date("2026-12-29"), true)
        );
    }

    #[test]
    fn banknifty_has_monthly_expiries_only() {
        let bank = &BUNDLED_SERIES[1];
        let listed = expiries(bank, date("2026-12-30"));
        let dates: Vec<String> = listed.iter().map(|(d, _)| d.to_string()).collect();
        assert_eq!(dates, ["2027-01-26", "2027-02-23", "2027-03-30"]);
    }

    #[test]
    fn symbols_follow_openalgos_format() {
        let nifty = &BUNDLED_SERIES[0];
        let listed = instruments(nifty, 24_362.0, date("2026-12-02"));
        let symbols: Vec<&str> = listed.iter().map(|i| i.symbol.as_str()).collect();
        assert!(
            symbols.contains(&"NIFTY08DEC2624350CE"),
            "{:?}",
            &symbols[..4]
        );
        assert!(symbols.contains(&"NIFTY08DEC2624350PE"));
        assert!(symbols.contains(&"NIFTY29DEC26FUT"));
        assert!(
            !symbols.contains(&"NIFTY08DEC26FUT"),
            "weekly expiries have no future"
        );
        // 6 expiries x 81 strikes x 2 kinds + 3 futures.
        assert_eq!(listed.len(), 6 * 81 * 2 + 3);
        let call = listed
            .iter()
            .find(|i| i.symbol == "NIFTY29DEC2625000CE")
            .unwrap();
        let contract = call.contract.as_ref().unwrap();
        assert_eq!(
            (
                call.exchange.as_str(),
                call.lot_size,
                call.instrument_type.as_str()
            ),
            ("NFO", 75.0, "CE")
        );
        assert_eq!(
            (contract.strike, contract.kind, contract.expiry),
            (25_000.0, Some(OptionKind::Call), date("2026-12-29"))
        );
        assert_eq!(expiry_label(contract.expiry), "29-DEC-26");
    }
}
