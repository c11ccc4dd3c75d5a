//! The vocabulary of orders: exchanges, actions, price types, products, statuses and the
//! account mode.
//!
//! Every enum parses the spellings clients send (case-insensitively) and prints the one
//! OpenAlgo prints. `ALLOWED` lists the accepted values for error messages.

use std::fmt;

/// Exchanges accepted in requests (docs/rest-api.md), in documentation order: the
/// market-data layer's list, so a symbol master and the REST layer never disagree.
pub use oa_marketdata_core::EXCHANGES;

/// A validated exchange code (one of [`EXCHANGES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exchange(&'static str);

impl Exchange {
    /// Parses an exchange code, case-insensitively.
    pub fn parse(value: &str) -> Option<Exchange> {
        EXCHANGES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(value.trim()))
            .map(|known| Exchange(known))
    }

    /// The canonical code.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// True for exchanges that allow fractional quantities (CRYPTO).
    pub fn allows_fractional_quantity(self) -> bool {
        self.0 == "CRYPTO"
    }

    /// True for index "exchanges", on which nothing can be traded.
    pub fn is_index(self) -> bool {
        self.0.ends_with("_INDEX")
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An enum with a fixed set of wire spellings.
pub trait Choice: Sized + Copy {
    /// The accepted values, comma separated, for error messages.
    const ALLOWED: &'static str;
    /// Parses a value (case-insensitive).
    fn parse(value: &str) -> Option<Self>;
    /// The canonical spelling.
    fn as_str(self) -> &'static str;
}

macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl Choice for $name {
            const ALLOWED: &'static str = concat!($($text, ", "),+);
            fn parse(value: &str) -> Option<Self> {
                let value = value.trim();
                $( if value.eq_ignore_ascii_case($text) { return Some($name::$variant); } )+
                None
            }
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl $name {
            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice! {
    /// BUY or SELL.
    Action { /// Buy.
        Buy = "BUY", /// Sell.
        Sell = "SELL" }
}

choice! {
    /// How an order is priced.
    PriceType { /// At the best available price, at once.
        Market = "MARKET", /// At `price` or better.
        Limit = "LIMIT", /// Stop-loss limit: becomes a limit order at `price` once `trigger_price` trades.
        Sl = "SL", /// Stop-loss market: becomes a market order once `trigger_price` trades.
        SlM = "SL-M" }
}

choice! {
    /// The product (margin treatment) of an order.
    Product { /// Intraday.
        Mis = "MIS", /// Normal (carry forward derivatives).
        Nrml = "NRML", /// Cash and carry (delivery).
        Cnc = "CNC" }
}

choice! {
    /// The status of an order, as OpenAlgo prints it (lower case).
    OrderStatus { /// Resting, waiting for its price.
        Open = "open", /// A stop order waiting for its trigger.
        TriggerPending = "trigger pending", /// Filled.
        Complete = "complete", /// Refused; see the rejection reason.
        Rejected = "rejected", /// Cancelled before it filled.
        Cancelled = "cancelled" }
}

/// `Choice::ALLOWED` ends with ", "; this trims it for messages.
pub fn allowed<T: Choice>() -> &'static str {
    T::ALLOWED.trim_end_matches(", ")
}

impl Action {
    /// +1 for BUY, -1 for SELL.
    pub fn sign(self) -> f64 {
        match self {
            Action::Buy => 1.0,
            Action::Sell => -1.0,
        }
    }

    /// The other side.
    pub fn opposite(self) -> Action {
        match self {
            Action::Buy => Action::Sell,
            Action::Sell => Action::Buy,
        }
    }
}

impl OrderStatus {
    /// True while the order can still fill, be modified or be cancelled.
    pub fn is_active(self) -> bool {
        matches!(self, OrderStatus::Open | OrderStatus::TriggerPending)
    }
}

/// The account mode: whether a user's actions go to the sandbox (analyzer mode) or the live
/// broker. Not to be confused with the market-data tick mode (LTP/Quote/Depth) or the event
/// delivery mode (`ORDER_EVENT_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccountMode {
    /// Orders go to the live broker (here: the simulator).
    #[default]
    Live,
    /// Analyzer mode: orders go to the sandbox with virtual funds.
    Analyze,
}

impl AccountMode {
    /// "live" or "analyze".
    pub fn as_str(self) -> &'static str {
        match self {
            AccountMode::Live => "live",
            AccountMode::Analyze => "analyze",
        }
    }

    /// The mode stored under `analyze_mode`.
    pub fn from_analyze_flag(analyze: bool) -> AccountMode {
        if analyze {
            AccountMode::Analyze
        } else {
            AccountMode::Live
        }
    }
}

/// Which book (account namespace) an order lives in: each broker keeps its own orders,
/// positions and funds, like upstream keeps the sandbox apart from the broker account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Book {
    /// Analyzer mode's virtual account.
    Sandbox,
    /// The live stand-in broker's account.
    Simulator,
}

impl Book {
    /// The broker name, also stored in the `book` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Book::Sandbox => "sandbox",
            Book::Simulator => "simulator",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Book> {
        match value {
            "sandbox" => Some(Book::Sandbox),
            "simulator" => Some(Book::Simulator),
            _ => None,
        }
    }

    /// The mode whose actions this book serves.
    pub fn mode(self) -> AccountMode {
        match self {
            Book::Sandbox => AccountMode::Analyze,
            Book::Simulator => AccountMode::Live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_case_insensitively_and_print_canonically() {
        assert_eq!(Action::parse("buy"), Some(Action::Buy));
        assert_eq!(PriceType::parse("sl-m"), Some(PriceType::SlM));
        assert_eq!(Product::parse(" cnc "), Some(Product::Cnc));
        assert_eq!(Action::parse("HOLD"), None);
        assert_eq!(allowed::<PriceType>(), "MARKET, LIMIT, SL, SL-M");
        assert_eq!(OrderStatus::TriggerPending.as_str(), "trigger pending");
    }

    #[test]
    fn exchanges_parse_to_canonical_codes() {
        assert_eq!(
            Exchange::parse("nse_index").map(Exchange::as_str),
            Some("NSE_INDEX")
        );
        assert!(Exchange::parse("NASDAQ").is_none());
        assert!(Exchange::parse("CRYPTO").is_some_and(Exchange::allows_fractional_quantity));
    }
}
