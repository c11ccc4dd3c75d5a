//! `optionsorder` (upstream restx_api/options_order.py, services/place_options_order_service.py)
//! and `optionsmultiorder` (restx_api/options_multiorder.py,
//! services/options_multiorder_service.py): the contract is resolved as `optionsymbol`
//! resolves it, then placed through the order service: a whole `optionsorder` is a
//! `placeorder` of the resolved symbol (its log row, `order_event` or `analyzer_update`);
//! a split one and a multi-leg order are one batch with one summary event.

use std::sync::Arc;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

use super::chain::OPTION_QUERY_FIELDS;
use super::resolve::{self, OptionQuery, Underlying, read_expiry, read_kind, read_offset};
use crate::error::HttpError;
use crate::fields::Fields;
use crate::requests::{OrderFields, PlaceOrder, PriceTerms, SPLIT_TERM_FIELDS};
use crate::responses::{Reply, to_value};
use crate::routes::keyed_handler;
use crate::service::options::{
    MAX_SPLIT_ORDERS, MultiOrder, MultiOrderHead, OptionsOrderHead, OptionsSplit, PlannedLeg,
    ResolvedLeg, child_count,
};
use crate::service::{ActionLog, OrderService};
use crate::types::{Action, Exchange, PriceType, Product};

type Result<T> = std::result::Result<T, HttpError>;

/// Most legs one optionsmultiorder may have (upstream's schema: 1 to 20).
const MAX_LEGS: usize = 20;

/// The order fields of an option order or leg (upstream restx_api/schemas.py
/// `OptionsOrderSchema`, `OptionsMultiOrderLegSchema`): the symbol and exchange come from
/// the resolution; products MIS and NRML only.
#[derive(Debug, Clone, PartialEq)]
struct LegFields {
    action: Action,
    quantity: f64,
    splitsize: u64,
    pricetype: PriceType,
    product: Product,
    prices: PriceTerms,
}

impl LegFields {
    fn read(fields: &Fields, exchange: Exchange) -> Result<LegFields> {
        let action = fields.choice::<Action>("action")?;
        let quantity = fields.quantity("quantity", exchange, false, None)?;
        let splitsize = match fields.opt_string("splitsize")? {
            None => 0,
            Some(text) if text.trim() == "0" => 0,
            Some(_) => fields.positive_integer("splitsize")?,
        };
        let pricetype = fields.choice_or("pricetype", PriceType::Market)?;
        let product = fields.choice_or("product", Product::Mis)?;
        if product == Product::Cnc {
            return Err(fields.error("product", "expected one of MIS, NRML, got \"CNC\""));
        }
        let prices = PriceTerms::read(fields, exchange, pricetype)?;
        Ok(LegFields {
            action,
            quantity,
            splitsize,
            pricetype,
            product,
            prices,
        })
    }

    /// The order of the resolved `symbol` on `exchange`.
    fn order(&self, exchange: Exchange, symbol: &str) -> OrderFields {
        OrderFields {
            exchange,
            symbol: symbol.to_string(),
            action: self.action,
            quantity: self.quantity,
            pricetype: self.pricetype,
            product: self.product,
            price: self.prices.price,
            trigger_price: self.prices.trigger_price,
            disclosed_quantity: self.prices.disclosed_quantity,
        }
    }
}

/// The body upstream's `placeorder` of an options order logs (the resolved order with the
/// underlying's price; services/place_options_order_service.py `order_data`).
fn placed_order_log(
    strategy: &str,
    order: &OrderFields,
    underlying_ltp: f64,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("strategy".into(), Value::from(strategy));
    body.insert("exchange".into(), Value::from(order.exchange.as_str()));
    body.insert("symbol".into(), Value::from(order.symbol.clone()));
    body.insert("action".into(), Value::from(order.action.as_str()));
    body.insert("quantity".into(), Value::from(order.quantity));
    body.insert("pricetype".into(), Value::from(order.pricetype.as_str()));
    body.insert("product".into(), Value::from(order.product.as_str()));
    body.insert("price".into(), Value::from(order.price));
    body.insert("trigger_price".into(), Value::from(order.trigger_price));
    body.insert(
        "disclosed_quantity".into(),
        Value::from(order.disclosed_quantity),
    );
    body.insert("underlying_ltp".into(), Value::from(underlying_ltp));
    body
}

/// The body of a whole optionsorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct OptionsOrderPlaced {
    orderid: String,
    #[serde(flatten)]
    head: OptionsOrderHead,
}

/// An optionsorder, read.
struct OptionsOrderRequest {
    strategy: String,
    query: OptionQuery,
    leg: LegFields,
    offset_sent: String,
    underlying_sent: String,
}

/// What optionsorder adds to the option query before the split terms.
const OPTIONS_ORDER_FIELDS: &[&str] = &["offset", "option_type"];

impl OptionsOrderRequest {
    fn read(fields: &Fields) -> Result<OptionsOrderRequest> {
        let strategy = fields.strategy()?;
        let query = OptionQuery::read(fields)?;
        let leg = LegFields::read(fields, query.exchange)?;
        if leg.splitsize > 0 && child_count(leg.quantity, leg.splitsize) > MAX_SPLIT_ORDERS {
            return Err(HttpError::bad_request(format!(
                "Total number of orders would exceed maximum limit of {MAX_SPLIT_ORDERS}"
            )));
        }
        Ok(OptionsOrderRequest {
            strategy,
            query,
            leg,
            offset_sent: fields.required_string("offset")?,
            underlying_sent: fields.required_string("underlying")?,
        })
    }
}

/// The answer of optionsorder: one order, or a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
enum OptionsOrderAnswer {
    Placed(OptionsOrderPlaced),
    Split(OptionsSplit),
}

keyed_handler!(
    /// optionsorder: resolves the option, then places it (whole, or split by `splitsize`),
    /// once per `Idempotency-Key`.
    pub(crate) optionsorder,
    "optionsorder",
    &[OPTION_QUERY_FIELDS, OPTIONS_ORDER_FIELDS, SPLIT_TERM_FIELDS],
    OptionsOrderRequest::read,
    place_options_order
);

async fn place_options_order(
    service: Arc<OrderService>,
    user: String,
    request: OptionsOrderRequest,
    mut log: ActionLog,
) -> Result<Reply<OptionsOrderAnswer>> {
    let OptionsOrderRequest {
        strategy,
        query,
        leg,
        offset_sent,
        underlying_sent,
    } = request;
    let resolved = resolve::resolve(&service, &query, None)?;
    let exchange = Exchange::parse(&resolved.exchange).ok_or_else(|| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to extract symbol from option_symbol response",
        )
    })?;
    let order = leg.order(exchange, &resolved.symbol);
    let head = OptionsOrderHead {
        symbol: resolved.symbol,
        exchange: resolved.exchange,
        underlying: underlying_sent,
        underlying_ltp: resolved.underlying_ltp,
        offset: offset_sent,
        option_type: query.kind.code(),
    };
    if leg.splitsize > 0 {
        let resolved_leg = ResolvedLeg {
            order,
            splitsize: leg.splitsize,
        };
        return Ok(service
            .options_split_order(&user, &strategy, resolved_leg, head, log)
            .await?
            .map(OptionsOrderAnswer::Split));
    }
    let details = OptionsOrderPlaced {
        orderid: String::new(),
        head,
    };
    // The placeorder's stored answer (Idempotency-Key) is the options answer.
    if let (Some(claim), Value::Object(mut extra)) = (log.claim.as_mut(), to_value(&details)) {
        extra.shift_remove("orderid");
        claim.answer_extra = extra;
    }
    let placed_log = ActionLog {
        body: placed_order_log(&strategy, &order, resolved.underlying_ltp),
        claim: log.claim,
    };
    let reply = service
        .place_order(&user, PlaceOrder { strategy, order }, placed_log)
        .await?;
    Ok(reply.map(|placed| {
        OptionsOrderAnswer::Placed(OptionsOrderPlaced {
            orderid: placed.orderid,
            ..details
        })
    }))
}

/// An optionsmultiorder, read.
struct MultiOrderRequest {
    strategy: String,
    underlying_sent: String,
    exchange: Exchange,
    legs: Vec<(OptionQuery, LegFields, String)>,
}

impl MultiOrderRequest {
    fn read(fields: &Fields) -> Result<MultiOrderRequest> {
        let strategy = fields.strategy()?;
        let underlying_sent = fields.required_string("underlying")?;
        let exchange = fields.exchange("exchange")?;
        let expiry_date = read_expiry(fields, "expiry_date")?;
        let strike_int = resolve::read_strike_int(fields)?;
        let items = fields.array("legs")?;
        if items.len() > MAX_LEGS {
            return Err(fields.error(
                "legs",
                &format!("expected 1 to {MAX_LEGS} legs, got {}", items.len()),
            ));
        }
        let mut legs = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let item = Fields::nested(item, &format!("legs[{index}]"), LEG_FIELDS)?;
            let query = OptionQuery {
                underlying: underlying_sent.to_ascii_uppercase(),
                exchange,
                expiry_date: read_expiry(&item, "expiry_date")?.or_else(|| expiry_date.clone()),
                strike_int,
                offset: read_offset(&item, "offset")?,
                kind: read_kind(&item, "option_type")?,
            };
            let offset_sent = item.required_string("offset")?;
            legs.push((query, LegFields::read(&item, exchange)?, offset_sent));
        }
        Ok(MultiOrderRequest {
            strategy,
            underlying_sent,
            exchange,
            legs,
        })
    }
}

const LEG_FIELDS: &[&str] = &[
    "offset",
    "option_type",
    "action",
    "quantity",
    "splitsize",
    "expiry_date",
    "pricetype",
    "product",
    "price",
    "trigger_price",
    "disclosed_quantity",
];

keyed_handler!(
    /// optionsmultiorder: resolves every leg against one read of the underlying's price,
    /// then places the resolved legs (BUY legs first) as one batch, once per
    /// `Idempotency-Key`.
    pub(crate) optionsmultiorder,
    "optionsmultiorder",
    &[OPTION_QUERY_FIELDS, &["legs"]],
    MultiOrderRequest::read,
    place_multi_order
);

async fn place_multi_order(
    service: Arc<OrderService>,
    user: String,
    request: MultiOrderRequest,
    log: ActionLog,
) -> Result<Reply<MultiOrder>> {
    let MultiOrderRequest {
        strategy,
        underlying_sent,
        exchange,
        legs,
    } = request;
    // The underlying's price, read once for every leg (upstream `get_underlying_ltp`); when
    // it cannot be read each leg tries (and reports) on its own.
    let underlying_ltp = Underlying::of(&underlying_sent, exchange)
        .market_data(&service)
        .ok()
        .map(|data| data.ltp);
    let planned: Vec<PlannedLeg> = legs
        .into_iter()
        .enumerate()
        .map(|(index, (query, leg, offset))| {
            let target = resolve::resolve(&service, &query, underlying_ltp)
                .map_err(|error| error.message)
                .and_then(|resolved| {
                    if leg.splitsize > 0
                        && child_count(leg.quantity, leg.splitsize) > MAX_SPLIT_ORDERS
                    {
                        return Err(format!(
                            "Split orders would exceed maximum limit of {MAX_SPLIT_ORDERS} per leg"
                        ));
                    }
                    let exchange = Exchange::parse(&resolved.exchange)
                        .ok_or_else(|| "Failed to resolve option symbol".to_string())?;
                    Ok(ResolvedLeg {
                        order: leg.order(exchange, &resolved.symbol),
                        splitsize: leg.splitsize,
                    })
                });
            PlannedLeg {
                leg: index + 1,
                offset,
                option_type: query.kind.code(),
                action: leg.action,
                target,
            }
        })
        .collect();
    let head = MultiOrderHead {
        underlying: underlying_sent,
        exchange: exchange.as_str().to_string(),
        underlying_ltp,
    };
    service
        .options_multi_order(&user, &strategy, head, planned, log)
        .await
}
