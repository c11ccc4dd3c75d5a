//! [`RateSpec`]: a rate in flask-limiter syntax, as OpenAlgo's settings write it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// A parsed rate: `count` events per `period` (the count is also the burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Events allowed per period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub period: Duration,
}

impl RateSpec {
    /// Parses `"N per [M] unit"` or `"N/unit"`; units second, minute, hour, day (singular or
    /// plural, case-insensitive). The error says what is wrong, without the setting's name.
    pub fn parse(value: &str) -> Result<RateSpec, String> {
        let lower = value.trim().to_ascii_lowercase();
        let (count, rest) = if let Some((count, rest)) = lower.split_once('/') {
            (count.trim().to_string(), rest.trim().to_string())
        } else if let Some((count, rest)) = lower.split_once(" per ") {
            (count.trim().to_string(), rest.trim().to_string())
        } else {
            return Err("missing \"per\" or \"/\"".to_string());
        };
        let count: u32 = count
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number of requests"))?;
        let count = NonZeroU32::new(count).ok_or("the request count must be at least 1")?;
        let mut words = rest.split_whitespace();
        let (multiplier, unit) = match (words.next(), words.next(), words.next()) {
            (Some(unit), None, None) => (1u64, unit),
            (Some(number), Some(unit), None) => (
                number
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{number:?} is not a positive number of periods"))?,
                unit,
            ),
            _ => return Err(format!("cannot read the period {rest:?}")),
        };
        let seconds = match unit.trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (allowed: second, minute, hour, day)"
                ));
            }
        };
        Ok(RateSpec {
            count,
            period: Duration::from_secs(seconds * multiplier),
        })
    }

    /// The governor quota: `count` per `period`, with a burst of `count`.
    pub fn quota(self) -> Quota {
        let per_request = self.period / self.count.get();
        Quota::with_period(per_request.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}
