//! Property tests: over random order sequences and price moves, every account keeps
//! `cash + order margin + position margin - realized P&L == starting funds`, margins match
//! the orders and positions that hold them, and flat positions hold no margin.

use oa_api::PriceSource;
use oa_api::config::Leverage;
use oa_api::engine::{Engine, EngineConfig, ModifyOrder, NewOrder};
use oa_api::price::StaticPrices;
use oa_api::types::{Action, Book, Exchange, PriceType, Product};
use proptest::prelude::*;

const FUNDS: f64 = 1_000_000.0;
const SYMBOLS: [&str; 2] = ["SBIN", "INFY"];

#[derive(Debug, Clone)]
enum Op {
    Place {
        user: usize,
        symbol: usize,
        buy: bool,
        quantity: u32,
        kind: u8,
        offset: i32,
        product: u8,
    },
    Modify {
        pick: usize,
        quantity: u32,
        offset: i32,
    },
    Cancel {
        pick: usize,
    },
    CancelAll {
        user: usize,
    },
    Close {
        user: usize,
    },
    Price {
        symbol: usize,
        ltp: u32,
        spread: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..2usize, any::<bool>(), 1..400u32, 0..4u8, -30..30i32, 0..3u8).prop_map(
            |(user, symbol, buy, quantity, kind, offset, product)| Op::Place { user, symbol, buy, quantity, kind, offset, product }),
        1 => (any::<usize>(), 1..400u32, -30..30i32).prop_map(|(pick, quantity, offset)| Op::Modify { pick, quantity, offset }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => (0..2usize).prop_map(|user| Op::CancelAll { user }),
        1 => (0..2usize).prop_map(|user| Op::Close { user }),
        4 => (0..2usize, 50..150u32, 0..3u8).prop_map(|(symbol, ltp, spread)| Op::Price { symbol, ltp, spread }),
    ]
}

fn users() -> [&'static str; 2] {
    ["alice", "bob"]
}

fn check(engine: &Engine) -> Result<(), TestCaseError> {
    for user in users() {
        let account = engine.account(Book::Sandbox, user);
        prop_assert!(
            account.imbalance().abs() < 1e-6,
            "{user}: {account:?} imbalance {}",
            account.imbalance()
        );
        let blocked: f64 = engine
            .orders(Book::Sandbox, user)
            .iter()
            .map(|order| {
                if !order.status.is_active() {
                    assert_eq!(order.blocked_margin, 0.0, "{order:?}");
                }
                order.blocked_margin
            })
            .sum();
        prop_assert!(
            (blocked - account.order_margin).abs() < 1e-6,
            "order margin {blocked} vs {account:?}"
        );
        let positions = engine.positions(Book::Sandbox, user);
        let held: f64 = positions.iter().map(|(_, p)| p.margin).sum();
        prop_assert!(
            (held - account.position_margin).abs() < 1e-6,
            "position margin {held} vs {account:?}"
        );
        let realized: f64 = positions.iter().map(|(_, p)| p.realized_pnl).sum();
        prop_assert!(
            (realized - account.realized_pnl).abs() < 1e-6,
            "realized {realized} vs {account:?}"
        );
        for (key, position) in positions {
            prop_assert!(position.margin >= -1e-9, "{key:?}: {position:?}");
            if position.quantity == 0.0 {
                prop_assert_eq!(position.margin, 0.0);
            }
        }
        prop_assert!(account.order_margin >= -1e-9 && account.position_margin >= -1e-9);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn funds_margin_and_pnl_stay_consistent(ops in prop::collection::vec(op(), 1..80)) {
        let prices = StaticPrices::new();
        prices.set("NSE", "SBIN", 100.0, Some(99.5), Some(100.5));
        prices.set("NSE", "INFY", 100.0, None, None);
        let mut engine = Engine::new(
            EngineConfig { starting_funds: FUNDS, leverage: Leverage::default() },
            1,
        );
        let nse = Exchange::parse("NSE").unwrap();
        let mut now = 0;
        for op in ops {
            now += 1;
            match op {
                Op::Place { user, symbol, buy, quantity, kind, offset, product } => {
                    let ltp = prices.quote("NSE", SYMBOLS[symbol]).unwrap().ltp;
                    let pricetype = [PriceType::Market, PriceType::Limit, PriceType::Sl, PriceType::SlM][kind as usize];
                    let level = (ltp + f64::from(offset)).max(1.0);
                    let order = NewOrder {
                        user_id: users()[user].to_string(),
                        strategy: "p".into(),
                        exchange: nse,
                        symbol: SYMBOLS[symbol].to_string(),
                        action: if buy { Action::Buy } else { Action::Sell },
                        quantity: f64::from(quantity),
                        pricetype,
                        product: [Product::Mis, Product::Nrml, Product::Cnc][product as usize],
                        price: if matches!(pricetype, PriceType::Limit | PriceType::Sl) { level } else { 0.0 },
                        trigger_price: if matches!(pricetype, PriceType::Sl | PriceType::SlM) { level } else { 0.0 },
                        disclosed_quantity: 0.0,
                    };
                    engine.place(Book::Sandbox, order, None, &prices, now);
                }
                Op::Modify { pick, quantity, offset } => {
                    let active: Vec<_> = users().iter().flat_map(|u| engine.orders(Book::Sandbox, u))
                        .filter(|o| o.status.is_active()).cloned().collect();
                    if let Some(order) = active.get(pick % active.len().max(1)) {
                        let level = (order.price.max(order.trigger_price) + f64::from(offset)).max(1.0);
                        let change = ModifyOrder {
                            orderid: order.orderid.clone(),
                            exchange: order.exchange,
                            symbol: order.symbol.clone(),
                            action: order.action,
                            product: order.product,
                            pricetype: order.pricetype,
                            price: if order.price > 0.0 { level } else { 0.0 },
                            quantity: f64::from(quantity),
                            disclosed_quantity: 0.0,
                            trigger_price: if order.trigger_price > 0.0 { level } else { 0.0 },
                        };
                        let _ = engine.modify(Book::Sandbox, &order.user_id, change, &prices, now);
                    }
                }
                Op::Cancel { pick } => {
                    let active: Vec<_> = users().iter().flat_map(|u| engine.orders(Book::Sandbox, u))
                        .filter(|o| o.status.is_active()).map(|o| (o.user_id.clone(), o.orderid.clone())).collect();
                    if let Some((user, id)) = active.get(pick % active.len().max(1)) {
                        engine.cancel(Book::Sandbox, user, id, now).unwrap();
                    }
                }
                Op::CancelAll { user } => { engine.cancel_all(Book::Sandbox, users()[user], now); }
                Op::Close { user } => { engine.close_positions(Book::Sandbox, users()[user], "p", &prices, now); }
                Op::Price { symbol, ltp, spread } => {
                    let ltp = f64::from(ltp);
                    let half = f64::from(spread) / 2.0;
                    let (bid, ask) = if spread == 0 { (None, None) } else { (Some(ltp - half), Some(ltp + half)) };
                    prices.set("NSE", SYMBOLS[symbol], ltp, bid, ask);
                    let quote = prices.quote("NSE", SYMBOLS[symbol]).unwrap();
                    engine.on_price(nse, SYMBOLS[symbol], &quote, now);
                }
            }
            let _ = engine.take_changes();
            check(&engine)?;
        }
        // Squaring everything off leaves no margin in use and cash = funds + realized P&L.
        for user in users() {
            engine.cancel_all(Book::Sandbox, user, now + 1);
            engine.close_positions(Book::Sandbox, user, "p", &prices, now + 1);
            let account = engine.account(Book::Sandbox, user);
            prop_assert!(account.order_margin.abs() < 1e-6 && account.position_margin.abs() < 1e-6, "{account:?}");
            prop_assert!((account.cash - FUNDS - account.realized_pnl).abs() < 1e-6, "{account:?}");
        }
        check(&engine)?;
    }
}
