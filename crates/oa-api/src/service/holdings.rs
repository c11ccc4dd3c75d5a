//! `holdings`: delivery (CNC) positions carried over from earlier sessions. The CNC
//! quantity held when today's session began (the position with today's CNC trades undone)
//! is a holding, as upstream's T+1 settlement makes it: today's buys join and today's
//! sales leave the holdings at the next session; in analyzer mode with the sandbox's keys (upstream
//! sandbox/holdings_manager.py `get_holdings`), in live mode with the broker mappings'
//! keys (services/holdings_service.py: `symbol, exchange, quantity, product, pnl,
//! pnlpercent` and the four statistics).

use std::collections::HashMap;

use oa_events_core::number::Quantity;
use oa_marketdata_core::symbols::round_to;
use serde::Serialize;

use super::{OrderService, Result, format_sandbox_timestamp};
use crate::responses::{ByMode, Data, Reply};
use crate::types::{AccountMode, Action, Product};

/// A holding in the sandbox's keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SandboxHolding {
    /// Symbol.
    pub(crate) symbol: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// Always `CNC`.
    pub(crate) product: &'static str,
    /// Quantity held.
    pub(crate) quantity: Quantity,
    /// Average buy price.
    pub(crate) average_price: f64,
    /// Last price (0 when unknown).
    pub(crate) ltp: f64,
    /// Unrealized P&L.
    pub(crate) pnl: f64,
    /// P&L percent of the investment.
    pub(crate) pnlpercent: f64,
    /// quantity x ltp.
    pub(crate) current_value: f64,
    /// The session date the quantity is reported as held from (`YYYY-MM-DD`, today).
    pub(crate) settlement_date: String,
}

/// A holding in the live broker mappings' keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LiveHolding {
    /// Symbol.
    pub(crate) symbol: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// Quantity held.
    pub(crate) quantity: Quantity,
    /// Always `CNC`.
    pub(crate) product: &'static str,
    /// Unrealized P&L (2 decimals).
    pub(crate) pnl: f64,
    /// P&L percent (2 decimals).
    pub(crate) pnlpercent: f64,
}

/// The portfolio totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HoldingStatistics {
    /// Sum of quantity x ltp.
    pub(crate) totalholdingvalue: f64,
    /// Sum of quantity x average price.
    pub(crate) totalinvvalue: f64,
    /// Sum of the P&L.
    pub(crate) totalprofitandloss: f64,
    /// P&L percent of the investment.
    pub(crate) totalpnlpercentage: f64,
}

/// `data` of holdings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Holdings<H> {
    /// The holdings.
    pub(crate) holdings: Vec<H>,
    /// Totals.
    pub(crate) statistics: HoldingStatistics,
}

/// The body of holdings in either mode.
pub(crate) type HoldingsBody = ByMode<Holdings<LiveHolding>, Holdings<SandboxHolding>>;

/// The quantity and average price a position had when the session began: today's trades
/// undone newest first (a buy leaves the average it changed, a sell never changed it). A
/// position that was flat at some point today reports nothing from earlier sessions:
/// (0, 0).
fn start_of_session(
    quantity: f64,
    average_price: f64,
    today: &[&crate::engine::Trade],
) -> (f64, f64) {
    let (mut quantity, mut average) = (quantity, average_price);
    for trade in today.iter().rev() {
        match trade.action {
            Action::Buy => {
                let before = quantity - trade.quantity;
                if before <= 1e-9 {
                    return (0.0, 0.0);
                }
                average = (average * quantity - trade.quantity * trade.price) / before;
                quantity = before;
            }
            Action::Sell => {
                if quantity <= 1e-9 {
                    // Flat after this sale: the engine no longer knows the average of what
                    // was held, so nothing is reported (upstream holds it until T+1).
                    return (0.0, 0.0);
                }
                quantity += trade.quantity;
            }
        }
    }
    (quantity, average)
}

fn percent(pnl: f64, investment: f64) -> f64 {
    if investment > 0.0 {
        pnl / investment * 100.0
    } else {
        0.0
    }
}

impl OrderService {
    /// holdings of the user's current mode.
    pub(crate) async fn holdings(&self, user_id: &str) -> Result<Reply<Data<HoldingsBody>>> {
        let mode = self.mode(user_id);
        let broker = self.broker(mode);
        let positions = broker.position_book(user_id).await?;
        let trades = broker.trade_book(user_id).await?;
        // Today's CNC trades per (exchange, symbol), oldest first: the session's memory
        // holds today's trades only.
        let mut today: HashMap<(String, String), Vec<&crate::engine::Trade>> = HashMap::new();
        for trade in trades.iter().filter(|trade| trade.product == Product::Cnc) {
            today
                .entry((trade.exchange.as_str().to_string(), trade.symbol.clone()))
                .or_default()
                .push(trade);
        }
        let stamp = format_sandbox_timestamp(chrono::Utc::now().timestamp_millis());
        let session_date = stamp.get(..10).unwrap_or_default().to_string();
        let mut sandbox = Vec::new();
        let (mut value, mut investment, mut pnl_total) = (0.0, 0.0, 0.0);
        for position in positions.iter().filter(|p| p.product == Product::Cnc) {
            let key = (
                position.exchange.as_str().to_string(),
                position.symbol.clone(),
            );
            let (start_quantity, average_price) = start_of_session(
                position.quantity,
                position.average_price,
                today.get(&key).map_or(&[][..], Vec::as_slice),
            );
            // Today's sales settle at T+1 (upstream sandbox/execution_engine.py: a CNC sell
            // does not reduce the holding at fill time; holdings_manager.py nets it at the
            // next session's settlement): the holding is what was held at the open.
            let held = start_quantity;
            if held <= 1e-9 {
                continue;
            }
            let invested = held * average_price;
            let current = if position.ltp > 0.0 {
                held * position.ltp
            } else {
                0.0
            };
            let pnl = if position.ltp > 0.0 {
                current - invested
            } else {
                0.0
            };
            value += current;
            investment += invested;
            pnl_total += pnl;
            sandbox.push(SandboxHolding {
                symbol: position.symbol.clone(),
                exchange: position.exchange.as_str().to_string(),
                product: "CNC",
                quantity: Quantity(held),
                average_price: round_to(average_price, 2),
                ltp: position.ltp,
                pnl: round_to(pnl, 2),
                pnlpercent: round_to(percent(pnl, invested), 2),
                current_value: round_to(current, 2),
                settlement_date: session_date.clone(),
            });
        }
        let statistics = HoldingStatistics {
            totalholdingvalue: round_to(value, 2),
            totalinvvalue: round_to(investment, 2),
            totalprofitandloss: round_to(pnl_total, 2),
            totalpnlpercentage: round_to(percent(pnl_total, investment), 2),
        };
        let body = match mode {
            AccountMode::Analyze => ByMode::Analyze(Holdings {
                holdings: sandbox,
                statistics,
            }),
            AccountMode::Live => ByMode::Live(Holdings {
                holdings: sandbox
                    .into_iter()
                    .map(|holding| LiveHolding {
                        symbol: holding.symbol,
                        exchange: holding.exchange,
                        quantity: holding.quantity,
                        product: "CNC",
                        pnl: holding.pnl,
                        pnlpercent: holding.pnlpercent,
                    })
                    .collect(),
                statistics,
            }),
        };
        Ok(Reply::in_mode(Data { data: body }, mode))
    }
}
