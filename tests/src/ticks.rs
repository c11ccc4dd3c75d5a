//! Ticks for tests that publish their own prices on the bus (`OA_FEED=none`).

use oa_marketdata_core::{Depth, DepthLevel, Quote, Tick, TickMode};

/// A Depth tick of `exchange:symbol` at `ltp` with a one-level book (`bid`, `ask`): what the
/// sandbox fills against (MARKET at the far side, LIMIT once the far side reaches it).
pub fn depth_tick(exchange: &str, symbol: &str, ltp: f64, bid: f64, ask: f64) -> Tick {
    let mut tick = Tick::ltp(exchange, symbol, ltp);
    tick.mode = TickMode::Depth;
    tick.quote = Some(Quote {
        open: ltp - 5.0,
        high: ltp + 10.0,
        low: ltp - 10.0,
        close: ltp - 2.0,
        volume: 1000.0,
        last_quantity: 5.0,
        total_buy_quantity: 300.0,
        total_sell_quantity: 400.0,
        ..Quote::default()
    });
    tick.depth = Some(Depth {
        buy: vec![DepthLevel {
            price: bid,
            quantity: 100.0,
            orders: 3,
        }],
        sell: vec![DepthLevel {
            price: ask,
            quantity: 200.0,
            orders: 4,
        }],
    });
    tick
}
