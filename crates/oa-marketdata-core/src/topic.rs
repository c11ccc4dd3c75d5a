//! The bus topic codec: `{EXCHANGE}_{SYMBOL}_{MODE}`.
//!
//! Exchanges and symbols may contain underscores (`NSE_INDEX`, `BTC_USDT`), so the mode is
//! read from the end and the exchange from the known list at the start, longest match first:
//! `NSE_INDEX_NIFTY_QUOTE` is NSE_INDEX / NIFTY / QUOTE, `CRYPTO_SOL_INR_LTP` is
//! CRYPTO / SOL_INR / LTP.
//!
//! The one ambiguity (`NSE` with a symbol starting `INDEX_`) resolves to the longer exchange.

use std::fmt;

use crate::symbols::EXCHANGES;
use crate::tick::TickMode;

/// A decoded topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Exchange code, one of [`EXCHANGES`].
    pub exchange: String,
    /// Trading symbol (non-empty; may contain underscores).
    pub symbol: String,
    /// The mode the payload carries.
    pub mode: TickMode,
}

/// Why a topic could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic does not end with `_LTP`, `_QUOTE` or `_DEPTH`.
    #[error("topic {topic:?} does not end with _LTP, _QUOTE or _DEPTH")]
    Mode {
        /// The topic as received (truncated to 100 characters).
        topic: String,
    },
    /// The topic does not start with a known exchange followed by `_`.
    #[error("topic {topic:?} does not start with a known exchange ({})", EXCHANGES.join(", "))]
    Exchange {
        /// The topic as received (truncated to 100 characters).
        topic: String,
    },
    /// Nothing between the exchange and the mode.
    #[error("topic {topic:?} has no symbol between exchange and mode")]
    Symbol {
        /// The topic as received (truncated to 100 characters).
        topic: String,
    },
}

/// Exchanges sorted longest first, so `NSE_INDEX` wins over `NSE`.
fn exchanges_longest_first() -> &'static [&'static str] {
    static SORTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    SORTED.get_or_init(|| {
        let mut sorted = EXCHANGES.to_vec();
        sorted.sort_by_key(|exchange| std::cmp::Reverse(exchange.len()));
        sorted
    })
}

fn shown(topic: &str) -> String {
    topic.chars().take(100).collect()
}

impl Topic {
    /// A topic.
    pub fn new(exchange: impl Into<String>, symbol: impl Into<String>, mode: TickMode) -> Self {
        Topic {
            exchange: exchange.into(),
            symbol: symbol.into(),
            mode,
        }
    }

    /// `{EXCHANGE}_{SYMBOL}_{MODE}`.
    pub fn encode(&self) -> String {
        encode(&self.exchange, &self.symbol, self.mode)
    }

    /// Decodes a topic (the mode suffix in any case); never panics.
    pub fn decode(topic: &str) -> Result<Self, TopicError> {
        // The mode suffix in any case (`LTP`, `Quote`, `depth`), as upstream's
        // websocket_proxy/mode_utils.py `normalize_mode` reads it.
        let (rest, mode) = topic
            .rsplit_once('_')
            .and_then(|(rest, suffix)| {
                [TickMode::Ltp, TickMode::Quote, TickMode::Depth]
                    .into_iter()
                    .find(|mode| suffix.eq_ignore_ascii_case(mode.topic_name()))
                    .map(|mode| (rest, mode))
            })
            .ok_or_else(|| TopicError::Mode {
                topic: shown(topic),
            })?;
        let (exchange, symbol) = exchanges_longest_first()
            .iter()
            .find_map(|exchange| {
                rest.strip_prefix(exchange)
                    .and_then(|after| after.strip_prefix('_'))
                    .map(|symbol| (*exchange, symbol))
            })
            .or_else(|| {
                // `NSE_` + empty symbol: report the missing symbol, not the exchange.
                exchanges_longest_first()
                    .iter()
                    .find(|exchange| rest == **exchange)
                    .map(|exchange| (*exchange, ""))
            })
            .ok_or_else(|| TopicError::Exchange {
                topic: shown(topic),
            })?;
        if symbol.is_empty() {
            return Err(TopicError::Symbol {
                topic: shown(topic),
            });
        }
        Ok(Topic {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
            mode,
        })
    }
}

/// `{EXCHANGE}_{SYMBOL}_{MODE}` without building a [`Topic`].
pub fn encode(exchange: &str, symbol: &str, mode: TickMode) -> String {
    let mut topic = String::with_capacity(exchange.len() + symbol.len() + 8);
    topic.push_str(exchange);
    topic.push('_');
    topic.push_str(symbol);
    topic.push('_');
    topic.push_str(mode.topic_name());
    topic
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            self.exchange,
            self.symbol,
            self.mode.topic_name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_documented_examples() {
        for (topic, exchange, symbol, mode) in [
            (
                "NSE_INDEX_NIFTY_QUOTE",
                "NSE_INDEX",
                "NIFTY",
                TickMode::Quote,
            ),
            ("NSE_SBIN_LTP", "NSE", "SBIN", TickMode::Ltp),
            ("CRYPTO_SOL_INR_DEPTH", "CRYPTO", "SOL_INR", TickMode::Depth),
            ("GLOBAL_INDEX_DJI_LTP", "GLOBAL_INDEX", "DJI", TickMode::Ltp),
            // A symbol that itself looks like a mode.
            ("NSE_LTP_LTP", "NSE", "LTP", TickMode::Ltp),
        ] {
            assert_eq!(
                Topic::decode(topic).unwrap(),
                Topic::new(exchange, symbol, mode),
                "{topic}"
            );
        }
        assert_eq!(
            Topic::new("BSE_INDEX", "SENSEX", TickMode::Depth).to_string(),
            "BSE_INDEX_SENSEX_DEPTH"
        );
    }

    #[test]
    fn reads_the_mode_suffix_in_any_case() {
        for (topic, mode) in [
            ("NSE_SBIN_ltp", TickMode::Ltp),
            ("NSE_SBIN_Quote", TickMode::Quote),
            ("NSE_INDEX_NIFTY_depth", TickMode::Depth),
        ] {
            assert_eq!(Topic::decode(topic).unwrap().mode, mode, "{topic}");
        }
        assert_eq!(
            Topic::decode("NSE_INDEX_NIFTY_depth").unwrap().symbol,
            "NIFTY"
        );
    }

    #[test]
    fn rejects_with_reasons() {
        for (topic, reason) in [
            ("NSE_SBIN_FULL", "does not end with _LTP, _QUOTE or _DEPTH"),
            ("NASDAQ_AAPL_LTP", "does not start with a known exchange"),
            ("NSE__LTP", "has no symbol between exchange and mode"),
            ("NSE_LTP", "has no symbol between exchange and mode"),
        ] {
            let error = Topic::decode(topic).unwrap_err().to_string();
            assert!(error.contains(reason), "{topic}: {error}");
        }
        assert!(Topic::decode("").is_err());
        assert!(Topic::decode("_LTP").is_err());
    }

    fn mode() -> impl Strategy<Value = TickMode> {
        prop_oneof![
            Just(TickMode::Ltp),
            Just(TickMode::Quote),
            Just(TickMode::Depth)
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(
            exchange in proptest::sample::select(EXCHANGES.to_vec()),
            symbol in "[A-Z0-9&_-]{1,30}",
            mode in mode(),
        ) {
            // `NSE` + `INDEX_X` reads as `NSE_INDEX` + `X`: the one inherent ambiguity,
            // resolved for the longer exchange. No real NSE symbol starts with `INDEX_`.
            let joined = format!("{exchange}_{symbol}");
            prop_assume!(!EXCHANGES.iter().any(|other| other.len() > exchange.len()
                && joined.starts_with(&format!("{other}_"))));
            let topic = Topic::new(exchange, symbol, mode);
            prop_assert_eq!(Topic::decode(&topic.encode()), Ok(topic));
        }

        #[test]
        fn decode_never_panics(input in "\\PC{0,64}") {
            let _ = Topic::decode(&input);
        }

        #[test]
        fn decode_never_panics_on_near_misses(
            prefix in "(NSE|NSE_INDEX|BSE_|MCX_IND|CRYPTO|GLOBAL_INDEX|_)?",
            middle in "[A-Z_]{0,12}",
            suffix in "(_LTP|_QUOTE|_DEPTH|LTP|_|_DEP)?",
        ) {
            let input = format!("{prefix}{middle}{suffix}");
            if let Ok(topic) = Topic::decode(&input) {
                prop_assert_eq!(topic.encode(), input);
            }
        }
    }
}
