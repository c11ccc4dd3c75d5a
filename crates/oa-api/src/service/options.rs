//! Option orders whose contracts are resolved (crate::options::orders): a split
//! `optionsorder` and `optionsmultiorder`, placed as one batch through the user's broker,
//! journalled with one summary event as upstream emits them
//! (services/place_options_order_service.py, services/options_multiorder_service.py,
//! subscribers/socketio_subscriber.py `on_options_completed`, `on_multiorder_completed`).

use axum::http::StatusCode;
use oa_events_core::Event;
use oa_events_core::catalog::{BatchSummary, OrderEvent};
use oa_events_core::number::Quantity;
use serde::Serialize;

use super::actions::{batch_summary_event, item_outcome, split_results};
use super::{ActionLog, OrderService, Result};
use crate::broker::BatchOutcome;
use crate::requests::OrderFields;
use crate::responses::{Reply, SplitResult};
use crate::types::{AccountMode, Action};

/// Most orders one leg may be split into (upstream `MAX_SPLIT_ORDERS_PER_LEG`, and
/// `MAX_SPLIT_ORDERS` of an options order).
pub(crate) const MAX_SPLIT_ORDERS: u64 = 100;

/// A leg whose contract is known: the order to place and how to split it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedLeg {
    /// The order (resolved symbol and exchange).
    pub(crate) order: OrderFields,
    /// Quantity per child order; 0 places one order.
    pub(crate) splitsize: u64,
}

/// A leg of optionsmultiorder: what was asked and what it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedLeg {
    /// 1-based position in the request.
    pub(crate) leg: usize,
    /// The offset as sent.
    pub(crate) offset: String,
    /// `CE` or `PE`.
    pub(crate) option_type: &'static str,
    /// BUY or SELL.
    pub(crate) action: Action,
    /// The resolved leg, or why it could not be resolved.
    pub(crate) target: std::result::Result<ResolvedLeg, String>,
}

/// One leg of the optionsmultiorder answer, with upstream's keys in its order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LegResult {
    /// 1-based position in the request.
    pub(crate) leg: usize,
    /// The resolved symbol (absent when it could not be resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) symbol: Option<String>,
    /// Its exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exchange: Option<String>,
    /// The product, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) product: Option<String>,
    /// The offset as sent.
    pub(crate) offset: String,
    /// `CE` or `PE`.
    pub(crate) option_type: &'static str,
    /// BUY or SELL.
    pub(crate) action: &'static str,
    /// `success` or `error` (a split leg succeeds when any child does).
    pub(crate) status: &'static str,
    /// The order, on success of a leg placed whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) orderid: Option<String>,
    /// A split leg's quantity, child size and children.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) split: Option<LegSplit>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
    /// `live` or `analyze`, on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<&'static str>,
}

/// The keys of a split leg of optionsmultiorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LegSplit {
    /// The leg's quantity.
    pub(crate) total_quantity: Quantity,
    /// Quantity per child.
    pub(crate) split_size: u64,
    /// The children.
    pub(crate) split_results: Vec<SplitResult>,
}

/// The body of optionsmultiorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MultiOrder {
    /// The underlying as sent.
    pub(crate) underlying: String,
    /// Its price, when it could be read.
    pub(crate) underlying_ltp: Option<f64>,
    /// One result per leg, in request order.
    pub(crate) results: Vec<LegResult>,
}

/// The keys an optionsorder answer starts with (after `orderid` when it was placed whole):
/// the resolved contract and what the request named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OptionsOrderHead {
    /// The resolved symbol.
    pub(crate) symbol: String,
    /// Its exchange.
    pub(crate) exchange: String,
    /// The underlying as sent.
    pub(crate) underlying: String,
    /// Its price.
    pub(crate) underlying_ltp: f64,
    /// The offset as sent.
    pub(crate) offset: String,
    /// `CE` or `PE`.
    pub(crate) option_type: &'static str,
}

/// The body of a split optionsorder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OptionsSplit {
    /// The resolved contract and the request's names.
    #[serde(flatten)]
    pub(crate) head: OptionsOrderHead,
    /// The quantity split.
    pub(crate) total_quantity: Quantity,
    /// Quantity per child.
    pub(crate) split_size: u64,
    /// One entry per child.
    pub(crate) results: Vec<SplitResult>,
}

/// What an optionsmultiorder reports besides its legs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MultiOrderHead {
    /// The underlying as sent.
    pub(crate) underlying: String,
    /// The request's exchange (named by the summary event).
    pub(crate) exchange: String,
    /// The underlying's price, when it could be read.
    pub(crate) underlying_ltp: Option<f64>,
}

/// The quantities of `total` in children of `size` (the last takes the rest).
fn split_quantities(total: f64, size: u64) -> Vec<f64> {
    let size = size as f64;
    let mut quantities = Vec::new();
    let mut remaining = total;
    while remaining > 1e-9 {
        let quantity = remaining.min(size);
        quantities.push(quantity);
        remaining -= quantity;
    }
    quantities
}

/// The number of children `total` makes in pieces of `size`.
pub(crate) fn child_count(total: f64, size: u64) -> u64 {
    (total / size as f64).ceil() as u64
}

/// The children of each placed leg: (index into the legs, quantities).
type Children = Vec<(usize, Vec<f64>)>;

impl OrderService {
    /// A split optionsorder: the resolved order in children of `splitsize`, one summary
    /// `order_event` (live) or `analyzer_update` (api_type `optionsorder`).
    pub(crate) async fn options_split_order(
        &self,
        user_id: &str,
        strategy: &str,
        leg: ResolvedLeg,
        head: OptionsOrderHead,
        log: ActionLog,
    ) -> Result<Reply<OptionsSplit>> {
        let order = leg.order;
        let action = self.action(user_id, "optionsorder", log);
        let action = self.check_order(action, &order).await?;
        let quantities = split_quantities(order.quantity, leg.splitsize);
        let children: Vec<OrderFields> = quantities
            .iter()
            .map(|quantity| OrderFields {
                quantity: *quantity,
                ..order.clone()
            })
            .collect();
        let mode = self.mode(user_id);
        let summary_order = order.clone();
        // upstream subscribers/socketio_subscriber.py `on_options_completed`.
        let summary = move |outcomes: &BatchOutcome| batch_summary_event(&summary_order, outcomes);
        let total = order.quantity;
        let splitsize = leg.splitsize;
        let respond = move |outcomes: &BatchOutcome| OptionsSplit {
            head: head.clone(),
            total_quantity: Quantity(total),
            split_size: splitsize,
            results: split_results(outcomes, &quantities, mode),
        };
        self.place_batch(user_id, strategy, children, action, respond, summary)
            .await
    }

    /// optionsmultiorder: the resolved legs, BUY legs before SELL legs, each whole or in
    /// children of its `splitsize`, placed as one batch; legs that could not be resolved or
    /// checked are error results. One summary `order_event` (live) or `analyzer_update`.
    pub(crate) async fn options_multi_order(
        &self,
        user_id: &str,
        strategy: &str,
        head: MultiOrderHead,
        mut legs: Vec<PlannedLeg>,
        log: ActionLog,
    ) -> Result<Reply<MultiOrder>> {
        let mode = self.mode(user_id);
        let action = self.action(user_id, "optionsmultiorder", log);
        // A leg the symbol master refuses (a quantity that is not whole lots) fails alone.
        for planned in &mut legs {
            if let Ok(resolved) = &planned.target {
                let order = &resolved.order;
                if let Err(error) =
                    self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity))
                {
                    planned.target = Err(error.message);
                }
            }
        }
        // Stable: BUY legs first, each side in request order (upstream
        // `process_multiorder_with_auth`).
        let mut placing: Vec<usize> = (0..legs.len()).collect();
        placing.sort_by_key(|index| legs[*index].action != Action::Buy);
        let mut children_of: Children = Vec::new();
        let mut orders: Vec<OrderFields> = Vec::new();
        for index in placing {
            if let Ok(resolved) = &legs[index].target {
                let quantities = if resolved.splitsize > 0 {
                    split_quantities(resolved.order.quantity, resolved.splitsize)
                } else {
                    vec![resolved.order.quantity]
                };
                for quantity in &quantities {
                    orders.push(OrderFields {
                        quantity: *quantity,
                        ..resolved.order.clone()
                    });
                }
                children_of.push((index, quantities));
            }
        }
        let MultiOrderHead {
            underlying,
            exchange: exchange_sent,
            underlying_ltp,
        } = head;
        let (summary_underlying, summary_strategy) = (underlying.clone(), strategy.to_string());
        let leg_count = legs.len();
        let respond_legs = legs.clone();
        let respond_children = children_of.clone();
        let respond = move |outcomes: &BatchOutcome| {
            leg_results(
                &respond_legs,
                &respond_children,
                outcomes,
                mode,
                &underlying,
                underlying_ltp,
            )
        };
        // upstream subscribers/socketio_subscriber.py `on_multiorder_completed`.
        let summary_legs = legs.clone();
        let summary_children = children_of.clone();
        let summary = move |outcomes: &BatchOutcome| {
            let body = leg_results(
                &summary_legs,
                &summary_children,
                outcomes,
                mode,
                &summary_underlying,
                None,
            );
            let successful = body
                .results
                .iter()
                .filter(|result| result.status == "success")
                .count();
            OrderEvent {
                symbol: summary_underlying.clone(),
                action: if summary_strategy.is_empty() {
                    "Multi-Order".to_string()
                } else {
                    summary_strategy.clone()
                },
                orderid: format!("{successful}/{leg_count} legs"),
                exchange: exchange_sent.clone(),
                price_type: "MULTI".to_string(),
                product_type: "OPTIONS".to_string(),
                mode: "live".to_string(),
                batch: BatchSummary::LAST,
                multiorder_summary: Some(true),
                successful_legs: Some(successful as u64),
                failed_legs: Some((leg_count - successful) as u64),
            }
        };
        if orders.is_empty() {
            // Nothing to place: journal the answer alone.
            let outcomes = BatchOutcome::new();
            let body = respond(&outcomes);
            let response = Reply::in_mode(body.clone(), mode).to_value();
            let event = Event::for_user(user_id.to_string(), summary(&outcomes));
            self.record_only(action.record(StatusCode::OK, response, vec![event]))
                .await?;
            return Ok(Reply::in_mode(body, mode));
        }
        self.place_batch(user_id, strategy, orders, action, respond, summary)
            .await
    }
}

/// The multiorder answer from the batch's outcomes (children in placing order).
fn leg_results(
    legs: &[PlannedLeg],
    children_of: &Children,
    outcomes: &BatchOutcome,
    mode: AccountMode,
    underlying: &str,
    underlying_ltp: Option<f64>,
) -> MultiOrder {
    let mode_text = match mode {
        AccountMode::Live => "live",
        AccountMode::Analyze => "analyze",
    };
    let mut results: Vec<LegResult> = legs
        .iter()
        .map(|planned| LegResult {
            leg: planned.leg,
            symbol: None,
            exchange: None,
            product: None,
            offset: planned.offset.clone(),
            option_type: planned.option_type,
            action: planned.action.as_str(),
            status: "error",
            orderid: None,
            split: None,
            message: planned.target.as_ref().err().cloned(),
            mode: None,
        })
        .collect();
    let mut next = 0;
    for (index, quantities) in children_of {
        let (Some(planned), Some(result)) = (legs.get(*index), results.get_mut(*index)) else {
            continue;
        };
        let Ok(resolved) = &planned.target else {
            continue;
        };
        let placed: Vec<_> = outcomes.iter().skip(next).take(quantities.len()).collect();
        next += quantities.len();
        result.symbol = Some(resolved.order.symbol.clone());
        result.exchange = Some(resolved.order.exchange.as_str().to_string());
        if resolved.splitsize > 0 {
            let children = split_results(placed.iter().copied(), quantities, mode);
            let any = children
                .iter()
                .any(|child| child.outcome.status == "success");
            result.status = if any { "success" } else { "error" };
            result.product = Some(resolved.order.product.as_str().to_string());
            result.split = Some(LegSplit {
                total_quantity: Quantity(resolved.order.quantity),
                split_size: resolved.splitsize,
                split_results: children,
            });
            result.mode = Some(mode_text);
        } else {
            let Some(outcome) = placed.first() else {
                continue;
            };
            let item = item_outcome(outcome, mode);
            if item.status == "success" {
                result.status = "success";
                result.product = Some(resolved.order.product.as_str().to_string());
                result.orderid = item.orderid;
                result.mode = Some(mode_text);
            } else {
                result.message = item.message;
            }
        }
    }
    MultiOrder {
        underlying: underlying.to_string(),
        underlying_ltp,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_leave_the_rest_to_the_last_child() {
        assert_eq!(split_quantities(375.0, 150), [150.0, 150.0, 75.0]);
        assert_eq!(split_quantities(150.0, 75), [75.0, 75.0]);
        assert_eq!(child_count(375.0, 150), 3);
    }
}
