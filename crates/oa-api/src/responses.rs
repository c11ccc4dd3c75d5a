//! The response bodies of the REST API (docs/rest-api.md), shared by the routes and the ESB
//! results: each a `Serialize` struct whose field order is the key order on the wire.
//!
//! A success body is a [`Reply`]: `"status":"success"`, the endpoint's keys, and
//! `"mode":"analyze"` last for an action or read that ran in analyzer mode. Error bodies are
//! [`HttpError`](crate::HttpError)s.

use axum::response::{IntoResponse, Response};
use oa_events_core::number::Quantity;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::types::AccountMode;

/// Serializes as the string `"success"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Success;

impl Serialize for Success {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("success")
    }
}

/// A success body: `{"status":"success", <body's keys>, "mode":"analyze"?}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply<T> {
    status: Success,
    #[serde(flatten)]
    body: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
}

impl<T> Reply<T> {
    /// A body without the `mode` key (market data, analyzer status, ping).
    pub fn new(body: T) -> Self {
        Reply {
            status: Success,
            body,
            mode: None,
        }
    }

    /// A body of an action or read that ran in `mode`: `"mode":"analyze"` in analyzer mode.
    pub fn in_mode(body: T, mode: AccountMode) -> Self {
        Reply {
            status: Success,
            body,
            mode: (mode == AccountMode::Analyze).then_some("analyze"),
        }
    }

    /// The endpoint's part of the body.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// Converts the endpoint's part.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            status: self.status,
            body: convert(self.body),
            mode: self.mode,
        }
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

impl<T: Serialize> Reply<T> {
    /// The body as a JSON value (for the order log, `analyzer_update` and ESB results).
    pub fn to_value(&self) -> Value {
        to_value(self)
    }
}

/// A body as a JSON value; these bodies have string keys only, so this cannot fail (a failure
/// would give `null`).
pub(crate) fn to_value(body: &impl Serialize) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// `{"orderid": ...}`: placeorder, modifyorder, cancelorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderId {
    /// The order.
    pub orderid: String,
    /// What was done (the sandbox's modify and cancel answers: "Order modified
    /// successfully", "Order cancelled successfully").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl OrderId {
    /// `{"orderid": ...}` alone.
    pub fn new(orderid: impl Into<String>) -> Self {
        OrderId {
            orderid: orderid.into(),
            message: None,
        }
    }
}

/// A body whose shape depends on the account's mode: the live broker's shape, or the
/// sandbox's in analyzer mode (OpenAlgo's `sandbox/` answers its reads with other keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ByMode<L, A> {
    /// Live mode.
    Live(L),
    /// Analyzer mode.
    Analyze(A),
}

/// The body of closeposition: the message and, in analyzer mode, the counts of the
/// sandbox (`Closed N positions`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closed {
    /// What was done.
    pub message: String,
    /// Positions squared off (analyzer mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_positions: Option<usize>,
    /// Positions whose square-off order was rejected (analyzer mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_closures: Option<usize>,
}

/// `{"message": ...}`: a smart order whose position matches, closeposition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// The message.
    pub message: String,
}

/// The body of cancelallorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CancelAll {
    /// The orders cancelled.
    pub canceled_orders: Vec<String>,
    /// The orders that could not be cancelled, with why.
    pub failed_cancellations: Vec<FailedCancellation>,
    /// `Canceled N orders. Failed to cancel M orders.`
    pub message: String,
}

/// One order cancelallorder could not cancel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedCancellation {
    /// The order.
    pub orderid: String,
    /// Why.
    pub message: String,
}

/// The body of an order command (the six that REST and the ESB share).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CommandBody {
    /// placeorder, modifyorder, cancelorder, and a smart order that placed one.
    OrderId(OrderId),
    /// A smart order whose position matches.
    Message(Message),
    /// closeposition.
    Closed(Closed),
    /// cancelallorder.
    CancelAll(CancelAll),
}

/// The outcome of one order of a basket or split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemOutcome {
    /// "success" or "error".
    pub status: &'static str,
    /// The order's id (absent when no order was created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orderid: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The body of basketorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Basket {
    /// One entry per order, in request order.
    pub results: Vec<BasketResult>,
}

/// One order of a basket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasketResult {
    /// The order's symbol.
    pub symbol: String,
    /// The order's exchange, on success (as upstream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// The order's product, on success (as upstream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: ItemOutcome,
    /// True on a success in analyzer mode (upstream's sandbox basket items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_order: Option<bool>,
    /// On a success in analyzer mode: whether it is the basket's last order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_last_order: Option<bool>,
}

/// The body of splitorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// The size of each child.
    pub split_size: Quantity,
    /// The quantity split.
    pub total_quantity: Quantity,
    /// One entry per child.
    pub results: Vec<SplitResult>,
}

/// One child of a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitResult {
    /// 1-based position.
    pub order_num: usize,
    /// The child's quantity.
    pub quantity: Quantity,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: ItemOutcome,
}

/// `{"data": ...}`: the reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// The body of openposition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenPosition {
    /// Signed net quantity.
    pub quantity: Quantity,
}

/// The data of orderstatus (keys in OpenAlgo's alphabetical order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderStatusData {
    /// BUY or SELL.
    pub action: &'static str,
    /// Average fill price.
    pub average_price: f64,
    /// Exchange.
    pub exchange: &'static str,
    /// Status.
    pub order_status: &'static str,
    /// The order.
    pub orderid: String,
    /// Limit price.
    pub price: f64,
    /// Price type.
    pub pricetype: &'static str,
    /// Product.
    pub product: &'static str,
    /// Quantity.
    pub quantity: Quantity,
    /// Symbol.
    pub symbol: String,
    /// Last change, `DD-MMM-YYYY HH:MM:SS` IST.
    pub timestamp: String,
    /// Trigger price.
    pub trigger_price: f64,
    /// Why it was rejected (only for rejected orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
}

/// An order in analyzer mode as upstream's sandbox reports it (sandbox/order_manager.py):
/// the data of orderstatus (`get_order_status`) and each orderbook row (`get_orderbook`).
/// The two differ in two keys: orderstatus spells the price type `price_type` and has no
/// `rejection_reason`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxOrder {
    /// The order.
    pub orderid: String,
    /// Symbol.
    pub symbol: String,
    /// Exchange.
    pub exchange: &'static str,
    /// BUY or SELL.
    pub action: &'static str,
    /// Quantity.
    pub quantity: Quantity,
    /// Limit price.
    pub price: f64,
    /// Trigger price.
    pub trigger_price: f64,
    /// Price type, in an orderbook row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricetype: Option<&'static str>,
    /// Price type, in orderstatus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_type: Option<&'static str>,
    /// Product.
    pub product: &'static str,
    /// Status.
    pub order_status: &'static str,
    /// Average fill price.
    pub average_price: f64,
    /// Filled quantity.
    pub filled_quantity: Quantity,
    /// Quantity still to fill (0 once rejected).
    pub pending_quantity: Quantity,
    /// Why it was rejected ("" otherwise), in an orderbook row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// Creation, `YYYY-MM-DD HH:MM:SS` IST.
    pub timestamp: String,
    /// Strategy tag.
    pub strategy: String,
}

/// The data of orderbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderBook {
    /// Newest first.
    pub orders: Vec<ByMode<OrderRow, SandboxOrder>>,
    /// Counts over every order.
    pub statistics: OrderStatistics,
}

/// The keys a row of orderbook and of tradebook start with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowHead {
    /// BUY or SELL.
    pub action: &'static str,
    /// Symbol.
    pub symbol: String,
    /// Exchange.
    pub exchange: &'static str,
    /// The order.
    pub orderid: String,
    /// Product.
    pub product: &'static str,
    /// Quantity (ordered, or filled for a trade).
    pub quantity: Quantity,
}

impl RowHead {
    /// The head of an orderbook row.
    pub(crate) fn new(orderid: &str, terms: &crate::requests::OrderFields, quantity: f64) -> Self {
        RowHead {
            action: terms.action.as_str(),
            symbol: terms.symbol.clone(),
            exchange: terms.exchange.as_str(),
            orderid: orderid.to_string(),
            product: terms.product.as_str(),
            quantity: Quantity(quantity),
        }
    }
}

/// One row of orderbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRow {
    /// Action, symbol, exchange, orderid, product, quantity.
    #[serde(flatten)]
    pub head: RowHead,
    /// Limit price.
    pub price: f64,
    /// Price type.
    pub pricetype: &'static str,
    /// Status.
    pub order_status: &'static str,
    /// Trigger price.
    pub trigger_price: f64,
    /// Average fill price.
    pub average_price: f64,
    /// Last change.
    pub timestamp: String,
}

/// The statistics of orderbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderStatistics {
    /// BUY orders.
    pub total_buy_orders: usize,
    /// SELL orders.
    pub total_sell_orders: usize,
    /// Filled orders.
    pub total_completed_orders: usize,
    /// Orders with status `open` (not `trigger pending`, as upstream counts).
    pub total_open_orders: usize,
    /// Rejected orders.
    pub total_rejected_orders: usize,
    /// Orders with status `trigger pending` (analyzer mode, as upstream's sandbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_trigger_pending_orders: Option<usize>,
}

/// One row of tradebook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeRow {
    /// Action, symbol, exchange, the order filled, product, quantity filled.
    #[serde(flatten)]
    pub head: RowHead,
    /// Fill price.
    pub average_price: f64,
    /// Price x quantity, rounded to two decimals.
    pub trade_value: f64,
    /// Time of the fill.
    pub timestamp: String,
}

/// The keys a row of positionbook starts with, in either mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionHead {
    /// Symbol.
    pub symbol: String,
    /// Exchange.
    pub exchange: &'static str,
    /// Product.
    pub product: &'static str,
    /// Signed net quantity.
    pub quantity: Quantity,
}

impl PositionHead {
    /// The head of `position`'s row.
    pub(crate) fn of(position: &crate::broker::PositionView) -> Self {
        PositionHead {
            symbol: position.symbol.clone(),
            exchange: position.exchange.as_str(),
            product: position.product.as_str(),
            quantity: Quantity(position.quantity),
        }
    }
}

/// One row of positionbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRow {
    /// Symbol, exchange, product, quantity.
    #[serde(flatten)]
    pub head: PositionHead,
    /// Average entry price, two decimals, as a string.
    pub average_price: String,
    /// Last price, rounded to two decimals.
    pub ltp: f64,
    /// P&L, rounded to two decimals.
    pub pnl: f64,
}

/// One row of positionbook in analyzer mode (upstream sandbox/position_manager.py
/// `get_open_positions`): numbers, P&L split into its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxPositionRow {
    /// Symbol, exchange, product, quantity.
    #[serde(flatten)]
    pub head: PositionHead,
    /// Average entry price (0 for a flat position).
    pub average_price: f64,
    /// Last price.
    pub ltp: f64,
    /// Realized + unrealized P&L.
    pub pnl: f64,
    /// `pnl` as a percentage of the open quantity's value (0 when flat).
    pub pnlpercent: f64,
    /// Unrealized P&L of the open quantity.
    pub unrealized_pnl: f64,
    /// Realized P&L.
    pub today_realized_pnl: f64,
    /// Realized + unrealized P&L.
    pub total_pnl_today: f64,
    /// Contract value multiplier (1 for every instrument oa lists).
    pub lot_size: f64,
}

/// The body of positionbook: the rows and, in analyzer mode, the sandbox's totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionBook {
    /// The rows.
    pub data: ByMode<Vec<PositionRow>, Vec<SandboxPositionRow>>,
    /// Totals (analyzer mode).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub totals: Option<PositionTotals>,
}

/// The totals of the sandbox's positionbook.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PositionTotals {
    /// Sum of `pnl`.
    pub total_pnl: f64,
    /// Sum of `unrealized_pnl`.
    pub total_unrealized_pnl: f64,
    /// Sum of `today_realized_pnl`.
    pub total_today_realized_pnl: f64,
    /// Sum of `total_pnl_today`.
    pub total_pnl_today: f64,
}

/// The data of funds in analyzer mode (upstream sandbox/fund_manager.py `get_funds`):
/// numbers, not strings, with the sandbox's extra keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxFunds {
    /// Cash available for new orders.
    pub availablecash: f64,
    /// Collateral (none in the sandbox).
    pub collateral: f64,
    /// Unrealized P&L.
    pub m2munrealized: f64,
    /// Realized P&L.
    pub m2mrealized: f64,
    /// Realized P&L (oa keeps one figure; upstream's all-time one).
    pub total_realized_pnl: f64,
    /// Realized P&L.
    pub today_realized_pnl: f64,
    /// Margin in use.
    pub utiliseddebits: f64,
    /// Margin in use.
    pub grossexposure: f64,
    /// Realized + unrealized P&L.
    pub totalpnl: f64,
}

/// The data of funds: amounts as strings with two decimals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funds {
    /// Cash available for new orders.
    pub availablecash: String,
    /// Collateral.
    pub collateral: String,
    /// Realized P&L.
    pub m2mrealized: String,
    /// Unrealized P&L.
    pub m2munrealized: String,
    /// Margin in use.
    pub utiliseddebits: String,
}

/// The data of quotes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuoteData {
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Last traded price.
    pub ltp: f64,
    /// Best ask.
    pub ask: f64,
    /// Best bid.
    pub bid: f64,
    /// Previous close.
    pub prev_close: f64,
    /// Volume.
    pub volume: f64,
    /// Open interest.
    pub oi: f64,
}

/// The data of depth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepthData {
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Last traded price.
    pub ltp: f64,
    /// Last traded quantity.
    pub ltq: Quantity,
    /// Previous close.
    pub prev_close: f64,
    /// Volume.
    pub volume: f64,
    /// Open interest.
    pub oi: f64,
    /// Total quantity bid.
    pub totalbuyqty: Quantity,
    /// Total quantity offered.
    pub totalsellqty: Quantity,
    /// Five ask levels, padded with zeros.
    pub asks: Vec<DepthLevel>,
    /// Five bid levels, padded with zeros.
    pub bids: Vec<DepthLevel>,
}

/// One level of depth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DepthLevel {
    /// Price.
    pub price: f64,
    /// Quantity.
    pub quantity: Quantity,
}

/// The data of analyzer and analyzer/toggle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzerData {
    /// "live" or "analyze".
    pub mode: &'static str,
    /// True in analyzer mode.
    pub analyze_mode: bool,
    /// Actions logged in analyzer mode.
    pub total_logs: u64,
    /// analyzer/toggle only: what was switched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The data of ping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pong {
    /// "pong".
    pub message: &'static str,
    /// The live broker's name.
    pub broker: &'static str,
}

/// A list body as upstream writes it: a summary line (`Found N ...`, or what was not found),
/// then the items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    /// The summary line.
    pub message: String,
    /// The items.
    pub data: Vec<T>,
}

/// The body of search: "Found N matching symbols" (or "No matching symbols found"), then the
/// matches, closest first.
pub type SearchResults = Listing<SymbolMatch>;

/// One search match, with upstream's keys (oa's symbol master has no broker tokens,
/// expiries or strikes for cash instruments: `brsymbol`/`brexchange` repeat the OpenAlgo
/// names, `token` is empty, `expiry` empty, `strike` 0, `freeze_qty` 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolMatch {
    /// OpenAlgo symbol.
    pub symbol: String,
    /// Broker symbol (the same in oa).
    pub brsymbol: String,
    /// Instrument name.
    pub name: String,
    /// Exchange code.
    pub exchange: String,
    /// Broker exchange (the same in oa).
    pub brexchange: String,
    /// Broker token (none in oa).
    pub token: String,
    /// Expiry (derivatives only).
    pub expiry: String,
    /// Strike (options only).
    pub strike: f64,
    /// Lot size.
    pub lotsize: Quantity,
    /// EQ, INDEX, FUT, CE, PE, ...
    pub instrumenttype: String,
    /// Minimum price step.
    pub tick_size: f64,
    /// Exchange freeze quantity (1 where none applies).
    pub freeze_qty: u64,
}

/// The data of symbol: upstream's row `id`, then the keys of a search match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolInfo {
    /// 1-based position in the symbol master.
    pub id: u64,
    /// The instrument.
    #[serde(flatten)]
    pub listing: SymbolMatch,
}

/// The body of multiquotes: one result per requested symbol, in request order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiQuotes {
    /// Quotes, or the reason a symbol has none.
    pub results: Vec<MultiQuote>,
}

/// One symbol of multiquotes: `data` with its quote, or `error`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultiQuote {
    /// Symbol as requested.
    pub symbol: String,
    /// Exchange as requested.
    pub exchange: String,
    /// The quote (keys as in quotes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<QuoteData>,
    /// Why there is no quote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The data of intervals: the history intervals served, grouped as upstream groups them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalGroups {
    /// `Ns` intervals (none here).
    pub seconds: Vec<&'static str>,
    /// `Nm` intervals.
    pub minutes: Vec<&'static str>,
    /// `Nh` intervals.
    pub hours: Vec<&'static str>,
    /// `D`.
    pub days: Vec<&'static str>,
    /// `W`.
    pub weeks: Vec<&'static str>,
    /// `M`.
    pub months: Vec<&'static str>,
}
