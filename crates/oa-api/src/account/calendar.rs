//! The exchange calendar behind `market/holidays` and `market/timings` (upstream
//! services/market_calendar_service.py over database/market_calendar_db.py): regular
//! sessions per exchange and a list of holidays, read from a JSON file. The bundled file
//! (`data/market_calendar.json`) holds upstream's seeded 2025 and 2026 holidays;
//! `OA_MARKET_CALENDAR` names a replacement in the same format.

use std::path::Path;

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Weekday};
use serde::{Deserialize, Serialize};

/// The bundled calendar.
pub(crate) const BUNDLED_CALENDAR: &str = include_str!("../../data/market_calendar.json");

/// The holiday types upstream knows.
const HOLIDAY_TYPES: &[&str] = &["TRADING_HOLIDAY", "SETTLEMENT_HOLIDAY", "SPECIAL_SESSION"];

/// Why a calendar file cannot be used; the message names the entry and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CalendarError(pub String);

#[derive(Debug, Deserialize)]
struct CalendarFile {
    sessions: Vec<SessionEntry>,
    #[serde(default)]
    holidays: Vec<HolidayEntry>,
}

#[derive(Debug, Deserialize)]
struct SessionEntry {
    exchange: String,
    start: String,
    end: String,
}

#[derive(Debug, Deserialize)]
struct HolidayEntry {
    date: String,
    description: String,
    holiday_type: String,
    #[serde(default)]
    closed_exchanges: Vec<String>,
    #[serde(default)]
    open_exchanges: Vec<ExchangeWindow>,
}

/// An exchange open from `start_time` to `end_time` (epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExchangeWindow {
    /// Exchange code.
    pub(crate) exchange: String,
    /// Opens, epoch ms.
    pub(crate) start_time: i64,
    /// Closes, epoch ms.
    pub(crate) end_time: i64,
}

/// One holiday as `market/holidays` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Holiday {
    /// `YYYY-MM-DD`.
    pub(crate) date: String,
    /// Its name.
    pub(crate) description: String,
    /// `TRADING_HOLIDAY`, `SETTLEMENT_HOLIDAY` or `SPECIAL_SESSION`.
    pub(crate) holiday_type: String,
    /// Exchanges closed all day.
    pub(crate) closed_exchanges: Vec<String>,
    /// Exchanges with a session that day (e.g. MCX's evening, Muhurat trading).
    pub(crate) open_exchanges: Vec<ExchangeWindow>,
    #[serde(skip)]
    day: NaiveDate,
}

/// A regular session: milliseconds from midnight (IST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    start_ms: i64,
    end_ms: i64,
}

/// The calendar: sessions in file order and holidays by date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarketCalendar {
    sessions: Vec<(String, Session)>,
    holidays: Vec<Holiday>,
}

/// `HH:MM` or `HH:MM:SS` as milliseconds from midnight.
fn time_of_day(text: &str) -> Option<i64> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
        .map(|time| i64::from(time.num_seconds_from_midnight()) * 1000)
}

/// Midnight of `date` in India, epoch ms.
fn india_midnight_ms(date: NaiveDate) -> i64 {
    chrono::FixedOffset::east_opt(19_800)
        .and_then(|zone| {
            zone.from_local_datetime(&date.and_time(NaiveTime::MIN))
                .single()
        })
        .map_or(0, |time| time.timestamp_millis())
}

impl MarketCalendar {
    /// The bundled calendar.
    pub(crate) fn bundled() -> Result<MarketCalendar, CalendarError> {
        MarketCalendar::parse(BUNDLED_CALENDAR)
    }

    /// The calendar of `path`, or the bundled one.
    pub(crate) fn load(path: Option<&Path>) -> Result<MarketCalendar, CalendarError> {
        let Some(path) = path else {
            return MarketCalendar::bundled();
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| CalendarError(format!("cannot read {}: {error}", path.display())))?;
        MarketCalendar::parse(&text)
            .map_err(|error| CalendarError(format!("{}: {}", path.display(), error.0)))
    }

    /// Parses a calendar file (JSON: `sessions` and `holidays`, see docs/options.md).
    pub(crate) fn parse(text: &str) -> Result<MarketCalendar, CalendarError> {
        let file: CalendarFile = serde_json::from_str(text)
            .map_err(|error| CalendarError(format!("not a calendar file: {error}")))?;
        let mut sessions = Vec::with_capacity(file.sessions.len());
        for (index, entry) in file.sessions.iter().enumerate() {
            let at = |name: &str, text: &str| {
                time_of_day(text).ok_or_else(|| {
                    CalendarError(format!(
                        "sessions[{index}].{name}: expected a time HH:MM, got {text:?}"
                    ))
                })
            };
            let session = Session {
                start_ms: at("start", &entry.start)?,
                end_ms: at("end", &entry.end)?,
            };
            sessions.push((entry.exchange.to_ascii_uppercase(), session));
        }
        let mut holidays = Vec::with_capacity(file.holidays.len());
        for (index, entry) in file.holidays.into_iter().enumerate() {
            let day = NaiveDate::parse_from_str(&entry.date, "%Y-%m-%d").map_err(|_| {
                CalendarError(format!(
                    "holidays[{index}].date: expected a date YYYY-MM-DD, got {:?}",
                    entry.date
                ))
            })?;
            if !HOLIDAY_TYPES.contains(&entry.holiday_type.as_str()) {
                return Err(CalendarError(format!(
                    "holidays[{index}].holiday_type: expected one of {}, got {:?}",
                    HOLIDAY_TYPES.join(", "),
                    entry.holiday_type
                )));
            }
            holidays.push(Holiday {
                date: day.format("%Y-%m-%d").to_string(),
                description: entry.description,
                holiday_type: entry.holiday_type,
                closed_exchanges: entry.closed_exchanges,
                open_exchanges: entry.open_exchanges,
                day,
            });
        }
        holidays.sort_by_key(|holiday| holiday.day);
        Ok(MarketCalendar { sessions, holidays })
    }

    /// The holidays of `year`, by date.
    pub(crate) fn holidays(&self, year: i32) -> Vec<Holiday> {
        self.holidays
            .iter()
            .filter(|holiday| holiday.day.year() == year)
            .cloned()
            .collect()
    }

    /// Each exchange's session on `date` (upstream `get_market_timings_for_date`): a special
    /// session's windows; every regular session on a settlement holiday; the open windows
    /// of a trading holiday (none when every exchange is closed); CRYPTO only on weekends;
    /// else every regular session.
    pub(crate) fn timings(&self, date: NaiveDate) -> Vec<ExchangeWindow> {
        let midnight = india_midnight_ms(date);
        let regular = |exchange: &str, session: &Session| ExchangeWindow {
            exchange: exchange.to_string(),
            start_time: midnight + session.start_ms,
            end_time: midnight + session.end_ms,
        };
        if let Some(holiday) = self.holidays.iter().find(|holiday| holiday.day == date) {
            return match holiday.holiday_type.as_str() {
                "SETTLEMENT_HOLIDAY" => self
                    .sessions
                    .iter()
                    .map(|(exchange, session)| regular(exchange, session))
                    .collect(),
                _ => holiday.open_exchanges.clone(),
            };
        }
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return self
                .sessions
                .iter()
                .filter(|(exchange, _)| exchange == "CRYPTO")
                .map(|(exchange, session)| regular(exchange, session))
                .collect();
        }
        self.sessions
            .iter()
            .map(|(exchange, session)| regular(exchange, session))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_bundled_calendar_has_upstreams_holidays_and_sessions() {
        let calendar = MarketCalendar::bundled().unwrap();
        let holidays = calendar.holidays(2026);
        assert_eq!(holidays.len(), 17);
        assert_eq!(holidays[0].date, "2026-01-15");
        let christmas = holidays.last().unwrap();
        assert_eq!(christmas.description, "Christmas");
        assert!(christmas.open_exchanges.is_empty());
        // A regular Wednesday: every exchange, NSE 09:15-15:30 IST.
        let timings = calendar.timings(date("2026-12-02"));
        assert_eq!(timings.len(), 9);
        assert_eq!(timings[0].exchange, "NSE");
        assert_eq!(timings[0].start_time, 1_796_183_100_000); // 2026-12-02 03:45 UTC
        assert_eq!(timings[0].end_time - timings[0].start_time, 22_500_000);
        // Holi: only MCX's evening session. Christmas: nothing. A Saturday: CRYPTO only.
        let holi = calendar.timings(date("2026-03-03"));
        assert_eq!(holi.len(), 1);
        assert_eq!(holi[0].exchange, "MCX");
        assert!(calendar.timings(date("2026-12-25")).is_empty());
        let saturday = calendar.timings(date("2026-12-05"));
        assert_eq!(saturday.len(), 1);
        assert_eq!(saturday[0].exchange, "CRYPTO");
    }

    #[test]
    fn a_bad_file_names_the_entry() {
        let error = MarketCalendar::parse(
            r#"{"sessions": [{"exchange": "NSE", "start": "9am", "end": "15:30"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.0,
            "sessions[0].start: expected a time HH:MM, got \"9am\""
        );
        let error = MarketCalendar::parse(
            r#"{"sessions": [], "holidays": [{"date": "2026-13-01", "description": "x", "holiday_type": "TRADING_HOLIDAY"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.0,
            "holidays[0].date: expected a date YYYY-MM-DD, got \"2026-13-01\""
        );
    }
}
