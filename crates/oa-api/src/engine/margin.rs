//! The sandbox money rules: what an order blocks when it is placed, and how a fill settles
//! against the position and the account.
//!
//! - **Placement** blocks `opening quantity x margin price / leverage`, where the opening
//!   quantity is the part of the order beyond the opposite position held *now* (an exit of an
//!   open position blocks nothing) and the margin price is the executable price for MARKET,
//!   `price` for LIMIT and SL and `trigger_price` for SL-M.
//! - **A fill is authoritative.** It releases the order's block, closes what it can of the
//!   opposite position (releasing that share of the position margin and booking the realized
//!   P&L), and the rest opens exposure that holds `quantity x fill price / leverage`. When the
//!   opening part needs more than the cash the account has at that moment (its free cash plus
//!   the released block, released position margin and realized P&L of this fill), the whole
//!   order is rejected at fill instead ([`Settlement::shortfall`]). A fill that only closes
//!   exposure is never refused.
//!
//! So an SL-M that gaps through its trigger is charged at its fill price, and several resting
//! exits of one position cannot together open an unmargined opposite position: whichever
//! fills after the position is flat opens exposure and must be funded then.

use super::{EPSILON, Position};
use crate::price::Quote;
use crate::types::{Action, PriceType};

/// The part of `quantity` that opens exposure when `action` meets a position of signed
/// quantity `net` (the rest reduces the opposite position).
pub(crate) fn opening_quantity(net: f64, action: Action, quantity: f64) -> f64 {
    let reducible = match action {
        Action::Buy if net < 0.0 => -net,
        Action::Sell if net > 0.0 => net,
        _ => 0.0,
    };
    (quantity - reducible).max(0.0)
}

/// The price an order's placement margin is computed at.
pub(crate) fn placement_price(
    pricetype: PriceType,
    action: Action,
    price: f64,
    trigger_price: f64,
    quote: &Quote,
) -> f64 {
    match pricetype {
        PriceType::Market => match action {
            Action::Buy => quote.buy_price(),
            Action::Sell => quote.sell_price(),
        },
        PriceType::Limit | PriceType::Sl => price,
        PriceType::SlM => trigger_price,
    }
}

/// What one fill does to its position and account.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settlement {
    /// The position after the fill.
    pub position: Position,
    /// P&L realized by the closing part.
    pub realized: f64,
    /// Position margin released by the closing part.
    pub released: f64,
    /// Margin the opening part holds (`opening quantity x fill price / leverage`).
    pub opened_margin: f64,
}

impl Settlement {
    /// Computes the fill of `quantity` (> 0) at `price` against `position`.
    pub(crate) fn compute(
        position: &Position,
        action: Action,
        quantity: f64,
        price: f64,
        leverage: f64,
    ) -> Settlement {
        let mut after = position.clone();
        let direction = action.sign();
        let mut realized = 0.0;
        let mut released = 0.0;
        let mut opening = quantity;
        if after.quantity.abs() > EPSILON && after.quantity.signum() != direction {
            let open = after.quantity.abs();
            let closing = quantity.min(open);
            realized = (price - after.average_price) * closing * after.quantity.signum();
            released = if (closing - open).abs() < EPSILON {
                after.margin
            } else {
                after.margin * closing / open
            };
            after.margin -= released;
            after.quantity += closing * direction;
            after.realized_pnl += realized;
            opening = quantity - closing;
            if after.quantity.abs() < EPSILON {
                after.quantity = 0.0;
                after.margin = 0.0;
                after.average_price = 0.0;
            }
        }
        let mut opened_margin = 0.0;
        if opening > EPSILON {
            let total = after.quantity + opening * direction;
            after.average_price =
                (after.average_price * after.quantity.abs() + price * opening) / total.abs();
            after.quantity = total;
            opened_margin = opening * price / leverage;
            after.margin += opened_margin;
        }
        Settlement {
            position: after,
            realized,
            released,
            opened_margin,
        }
    }

    /// How much the opening part lacks when the account has `cash` free and the order held
    /// `blocked`; `None` when the fill is funded or opens nothing.
    pub(crate) fn shortfall(&self, cash: f64, blocked: f64) -> Option<Shortfall> {
        let available = cash + blocked + self.released + self.realized;
        (self.opened_margin > EPSILON && self.opened_margin > available + EPSILON).then_some(
            Shortfall {
                required: self.opened_margin,
                available,
            },
        )
    }
}

/// An unfunded fill: the margin its opening part needs and the cash there was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shortfall {
    /// Margin the opening part needs at the fill price.
    pub required: f64,
    /// Cash available to the fill (free cash, the order's block, released margin, P&L).
    pub available: f64,
}

impl Shortfall {
    /// The `rejection_reason` of an order rejected at fill.
    pub(crate) fn reason(&self, price: f64) -> String {
        format!(
            "Insufficient funds at fill: margin required {:.2} at fill price {price:.2}, available {:.2}",
            self.required, self.available
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long of 10 at 100 holding `margin`.
    fn long_ten_at_100(margin: f64) -> Position {
        Position {
            quantity: 10.0,
            average_price: 100.0,
            realized_pnl: 0.0,
            margin,
        }
    }

    #[test]
    fn a_reversal_releases_the_old_margin_and_margins_only_the_excess() {
        let fill = Settlement::compute(&long_ten_at_100(1000.0), Action::Sell, 15.0, 90.0, 1.0);
        assert_eq!(fill.realized, -100.0);
        assert_eq!(fill.released, 1000.0);
        assert_eq!(fill.opened_margin, 450.0);
        assert_eq!(fill.position.quantity, -5.0);
        assert_eq!(fill.position.average_price, 90.0);
        // Cash after the closing part: 0 + 1000 - 100 = 900 >= 450.
        assert_eq!(fill.shortfall(0.0, 0.0), None);
        let short = fill.shortfall(-500.0, 0.0).unwrap();
        assert_eq!((short.required, short.available), (450.0, 400.0));
    }

    #[test]
    fn a_pure_exit_is_never_short_of_funds() {
        let fill = Settlement::compute(&long_ten_at_100(200.0), Action::Sell, 10.0, 50.0, 5.0);
        assert_eq!(fill.opened_margin, 0.0);
        assert_eq!(fill.shortfall(0.0, 0.0), None);
        assert_eq!(fill.position.quantity, 0.0);
    }
}
