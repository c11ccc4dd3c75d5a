//! The axum routes of `/api/v1`, the JSON body extractor and the JSON fallbacks.
//!
//! Every error is `{"status":"error","message":...}` JSON: malformed bodies and wrong
//! content types (400), unknown fields (400), bad API keys (403), unknown paths (404),
//! wrong methods (405), bodies over the limit (413) and rate limits (429).
//!
//! Order-changing endpoints also take an `Idempotency-Key` header ([`crate::idempotency`]):
//! 409 while the key's first request runs, 422 for a key reused with another request, and
//! 503 while the order engine does not take writes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, OriginalUri, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::commands::{CommandKind, read_command, run_command};
use crate::config::RateLimits;
use crate::error::HttpError;
use crate::fields::Fields;
use crate::idempotency::{
    Claim, IdempotencyKey, InFlight, REPLAYED_HEADER, Stored, fingerprint, in_progress_error,
    mismatch_error,
};
use crate::keys::KeyStore;
use crate::ratelimit::{self, IpRateLimiter};
use crate::requests::{BasketOrder, SPLIT_ORDER_FIELDS, SPLIT_TERM_FIELDS, SplitOrder};
use crate::responses::{
    AnalyzerData, ByMode, Data, DepthData, Funds, IntervalGroups, MultiQuotes, OpenPosition,
    OrderBook, OrderStatusData, Pong, PositionBook, QuoteData, Reply, SandboxFunds, SandboxOrder,
    SearchResults, SymbolInfo, TradeRow,
};
use crate::service::holdings::HoldingsBody;
use crate::service::{ActionLog, OrderService};
use crate::types::{Exchange, Product};

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    /// The order service.
    pub service: Arc<OrderService>,
    /// The key store.
    pub keys: KeyStore,
    /// The body limit, for the 413 message.
    pub body_limit: usize,
    /// Idempotency keys whose first request is running.
    pub in_flight: InFlight,
    /// Candle history (`history`, `ticker`).
    pub history: Arc<crate::history::History>,
    /// The exchange calendar and sandbox leverage (`market/*`, `margin`).
    pub account: Arc<crate::account::AccountSettings>,
}

/// A JSON object body, read with JSON errors.
#[derive(Debug)]
pub(crate) struct ApiBody(pub Map<String, Value>);

impl FromRequest<AppState> for ApiBody {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let is_json = content_type
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(HttpError::bad_request(format!(
                "Content-Type must be application/json (got {:?})",
                content_type
            )));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    HttpError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "Request body too large: the limit is {} bytes",
                            state.body_limit
                        ),
                    )
                } else {
                    HttpError::bad_request(format!("Cannot read the request body: {rejection}"))
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(ApiBody(map)),
            Ok(_) => Err(HttpError::bad_request("Request body must be a JSON object")),
            Err(error) => Err(HttpError::bad_request(format!(
                "Malformed JSON body: {error}"
            ))),
        }
    }
}

impl AppState {
    /// The user of the body's `apikey`, or 403.
    pub(crate) async fn authenticate(&self, fields: &Fields) -> Result<String, HttpError> {
        let key = fields.string("apikey")?;
        match self.keys.verify_key(&key).await {
            Ok(Some(user)) => Ok(user.user_id),
            Ok(None) => Err(HttpError::invalid_apikey()),
            Err(error) => Err(HttpError::internal(&error)),
        }
    }

    /// Reads an order-changing request: the `Idempotency-Key` header, then the body by `read`,
    /// then the API key (in that order, so each error is the one a client sees first).
    async fn prepare<R>(
        &self,
        headers: &HeaderMap,
        read: impl FnOnce() -> Result<(R, Fields), HttpError>,
    ) -> Result<Prepared<R>, HttpError> {
        let key = IdempotencyKey::from_headers(headers)?;
        let (request, fields) = read()?;
        let user = self.authenticate(&fields).await?;
        Ok(Prepared {
            key,
            request,
            user,
            body: fields.without_apikey(),
        })
    }

    /// Reads (see [`AppState::prepare`]) and runs an order-changing request. Without a key: `run`. With one: the stored response of
    /// an earlier request with that key (422 if it asked something else), or `run` with the
    /// claim that stores its response; 409 while another request with the key runs.
    pub(crate) async fn keyed<R, B, F, Fut>(
        &self,
        endpoint: &'static str,
        headers: &HeaderMap,
        read: impl FnOnce() -> Result<(R, Fields), HttpError>,
        run: F,
    ) -> Result<Response, HttpError>
    where
        R: Send + 'static,
        B: Serialize + Send + 'static,
        F: FnOnce(Arc<OrderService>, String, R, ActionLog) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Reply<B>, HttpError>> + Send + 'static,
    {
        let Prepared {
            key,
            request,
            user,
            body,
        } = self.prepare(headers, read).await?;
        let service = Arc::clone(&self.service);
        let Some(key) = key else {
            return Ok(run(service, user, request, ActionLog::from(body))
                .await?
                .into_response());
        };
        let Some(running) = self.in_flight.claim(&user, &key) else {
            return Err(in_progress_error());
        };
        let claim = Claim {
            user_id: user.clone(),
            fingerprint: fingerprint(endpoint, &body),
            key,
            answer_extra: Map::new(),
        };
        // A task, so the request runs to its end (and keeps its key claimed until the outcome
        // is stored) even when the client disconnects: a retry then finds the stored response.
        let task = tokio::spawn(async move {
            let _running = running;
            match service.stored_response(&claim).await? {
                Stored::Replay(status, body) => {
                    Ok((status, [(REPLAYED_HEADER, "true")], Json(body)).into_response())
                }
                Stored::Mismatch => Err(mismatch_error()),
                Stored::None => {
                    let log = ActionLog {
                        body,
                        claim: Some(claim),
                    };
                    Ok(run(service, user, request, log).await?.into_response())
                }
            }
        });
        task.await.map_err(|error| HttpError::internal(&error))?
    }
}

/// An order-changing request, read and authenticated.
struct Prepared<R> {
    key: Option<IdempotencyKey>,
    request: R,
    user: String,
    /// The body without `apikey` (order log, fingerprint).
    body: Map<String, Value>,
}

/// Reads `body` with the fields allowed by `groups` by `read`.
pub(crate) fn read_body<R>(
    body: Map<String, Value>,
    groups: &[&[&str]],
    read: fn(&Fields) -> Result<R, HttpError>,
) -> Result<(R, Fields), HttpError> {
    let fields = Fields::in_groups(body, groups)?;
    Ok((read(&fields)?, fields))
}

const ORDER_ID: &[&str] = &["apikey", "strategy", "orderid"];
const APIKEY_ONLY: &[&str] = &["apikey"];
const SYMBOL_EXCHANGE: &[&str] = &["apikey", "symbol", "exchange"];
const OPEN_POSITION: &[&str] = &["apikey", "strategy", "symbol", "exchange", "product"];
const BASKET: &[&str] = &["apikey", "strategy", "orders"];
const TOGGLE: &[&str] = &["apikey", "mode"];

/// An order command over REST: the body is read exactly as the ESB reads it (plus `apikey`),
/// then the key is checked, then the command runs (once per idempotency key).
macro_rules! command {
    ($name:ident, $kind:expr) => {
        async fn $name(
            State(app): State<AppState>,
            headers: HeaderMap,
            ApiBody(body): ApiBody,
        ) -> Result<Response, HttpError> {
            let read = || read_command($kind, body, true);
            app.keyed(
                $kind.rest_name(),
                &headers,
                read,
                |service, user, command, log| async move {
                    run_command(&service, &user, command, log).await
                },
            )
            .await
        }
    };
}

command!(placeorder, CommandKind::PlaceOrder);
command!(placesmartorder, CommandKind::PlaceSmartOrder);
command!(modifyorder, CommandKind::ModifyOrder);
command!(cancelorder, CommandKind::CancelOrder);
command!(cancelallorder, CommandKind::CancelAllOrders);
command!(closeposition, CommandKind::ClosePosition);

async fn orderstatus(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<ByMode<OrderStatusData, SandboxOrder>>>, HttpError> {
    let fields = Fields::new(body, ORDER_ID)?;
    fields.strategy()?;
    let orderid = fields.required_string("orderid")?;
    let user = app.authenticate(&fields).await?;
    app.service.order_status(&user, &orderid).await
}

async fn openposition(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<OpenPosition>, HttpError> {
    let fields = Fields::new(body, OPEN_POSITION)?;
    fields.strategy()?;
    let exchange = fields.exchange("exchange")?;
    let symbol = fields.required_string("symbol")?.to_ascii_uppercase();
    let product = fields.choice::<Product>("product")?;
    let user = app.authenticate(&fields).await?;
    app.service
        .open_position(&user, exchange, &symbol, product, fields.without_apikey())
        .await
}

/// A read whose body has only `apikey`: the service's read of the key's user.
macro_rules! apikey_only {
    ($name:ident, $method:ident, $reply:ty) => {
        async fn $name(
            State(app): State<AppState>,
            ApiBody(body): ApiBody,
        ) -> Result<Reply<$reply>, HttpError> {
            let fields = Fields::new(body, APIKEY_ONLY)?;
            let user = app.authenticate(&fields).await?;
            app.service.$method(&user).await
        }
    };
}

apikey_only!(orderbook, order_book, Data<OrderBook>);
apikey_only!(tradebook, trade_book, Data<Vec<TradeRow>>);
apikey_only!(funds, funds, Data<ByMode<Funds, SandboxFunds>>);
apikey_only!(positionbook, position_book, PositionBook);
apikey_only!(holdings, holdings, Data<HoldingsBody>);

/// True when a GET query's `format` is `format` (any case): the downloads (`instruments`,
/// `ticker`) answer in that format, errors included.
pub(crate) fn query_asks_format(query: &HashMap<String, String>, format: &str) -> bool {
    query
        .get("format")
        .is_some_and(|asked| asked.eq_ignore_ascii_case(format))
}

/// The exchange and symbol of a market-data request, once its key is checked.
async fn market_request(
    app: &AppState,
    body: Map<String, Value>,
) -> Result<(Exchange, String), HttpError> {
    let fields = Fields::new(body, SYMBOL_EXCHANGE)?;
    let exchange = fields.exchange("exchange")?;
    let symbol = fields.required_string("symbol")?.to_ascii_uppercase();
    app.authenticate(&fields).await?;
    Ok((exchange, symbol))
}

/// A read of one instrument (`symbol` and `exchange`): the service's read of it, once the
/// key is checked.
macro_rules! instrument_read {
    ($(#[$doc:meta])* $name:ident, $method:ident, $data:ty) => {
        $(#[$doc])*
        async fn $name(
            State(app): State<AppState>,
            ApiBody(body): ApiBody,
        ) -> Result<Reply<Data<$data>>, HttpError> {
            let (exchange, symbol) = market_request(&app, body).await?;
            app.service.$method(exchange, &symbol)
        }
    };
}

instrument_read!(quotes, quotes, QuoteData);
instrument_read!(depth, depth, DepthData);
instrument_read!(
    /// symbol: one instrument of the symbol master (upstream restx_api/symbol.py).
    symbol,
    symbol,
    SymbolInfo
);

/// search: symbols of the symbol master matching a query (upstream restx_api/search.py).
async fn search(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<SearchResults>, HttpError> {
    let fields = Fields::new(body, &["apikey", "query", "exchange"])?;
    let query = fields.required_string("query")?;
    let exchange = match fields.opt_string("exchange")? {
        Some(_) => Some(fields.exchange("exchange")?),
        None => None,
    };
    app.authenticate(&fields).await?;
    Ok(app.service.search(&query, exchange))
}

/// The most symbols one multiquotes request may name.
const MAX_MULTIQUOTES_SYMBOLS: usize = 500;

/// multiquotes: quotes of several symbols (upstream restx_api/multiquotes.py).
async fn multiquotes(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<MultiQuotes>, HttpError> {
    let fields = Fields::new(body, &["apikey", "symbols"])?;
    let mut requested = Vec::new();
    for item in fields.objects("symbols", MAX_MULTIQUOTES_SYMBOLS, &["symbol", "exchange"])? {
        let item = item?;
        let exchange = item.exchange("exchange")?;
        let symbol = item.required_string("symbol")?.to_ascii_uppercase();
        requested.push((exchange, symbol));
    }
    app.authenticate(&fields).await?;
    app.service.multiquotes(&requested)
}

/// intervals: the candle intervals history serves (upstream restx_api/intervals.py).
async fn intervals(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<IntervalGroups>>, HttpError> {
    let fields = Fields::new(body, &["apikey"])?;
    app.authenticate(&fields).await?;
    Ok(app.service.intervals())
}

/// An order-changing handler: the body read by `$read` with the fields of `$groups`, then
/// `$run` once per idempotency key ([`AppState::keyed`]).
macro_rules! keyed_handler {
    ($(#[$doc:meta])* $vis:vis $name:ident, $endpoint:literal, $groups:expr, $read:expr, $run:expr) => {
        $(#[$doc])*
        $vis async fn $name(
            axum::extract::State(app): axum::extract::State<$crate::routes::AppState>,
            headers: axum::http::HeaderMap,
            $crate::routes::ApiBody(body): $crate::routes::ApiBody,
        ) -> ::std::result::Result<axum::response::Response, $crate::error::HttpError> {
            let read = || $crate::routes::read_body(body, $groups, $read);
            app.keyed($endpoint, &headers, read, $run).await
        }
    };
}
pub(crate) use keyed_handler;

/// A basket or split over REST: read, key checked, placed once per idempotency key.
macro_rules! batch {
    ($name:ident, $endpoint:literal, $fields:expr, $request:ty, $method:ident) => {
        keyed_handler!(
            $name,
            $endpoint,
            $fields,
            <$request>::read,
            |service: Arc<OrderService>, user: String, request, log| async move {
                service.$method(&user, request, log).await
            }
        );
    };
}

batch!(
    basketorder,
    "basketorder",
    &[BASKET],
    BasketOrder,
    basket_order
);
batch!(
    splitorder,
    "splitorder",
    &[SPLIT_ORDER_FIELDS, SPLIT_TERM_FIELDS],
    SplitOrder,
    split_order
);

async fn analyzer(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<AnalyzerData>>, HttpError> {
    let fields = Fields::new(body, APIKEY_ONLY)?;
    let user = app.authenticate(&fields).await?;
    Ok(app.service.analyzer_status(&user))
}

keyed_handler!(
    analyzer_toggle,
    "analyzer/toggle",
    &[TOGGLE],
    |fields| fields.boolean("mode"),
    |service: Arc<OrderService>, user: String, analyze, log: ActionLog| async move {
        service.analyzer_toggle(&user, analyze, log.claim).await
    }
);

async fn ping(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<Pong>>, HttpError> {
    let fields = Fields::new(body, APIKEY_ONLY)?;
    app.authenticate(&fields).await?;
    Ok(Reply::new(Data {
        data: Pong {
            message: "pong",
            broker: app.service.live_broker_name(),
        },
    }))
}

/// The path as the client sent it (nesting strips prefixes from `uri()`).
fn original_path(request: &Request) -> String {
    request.extensions().get::<OriginalUri>().map_or_else(
        || request.uri().path().to_string(),
        |uri| uri.path().to_string(),
    )
}

/// upstream app.py `not_found_error`: `{"status":"error","message":"Not found","path":...}`.
async fn not_found(request: Request) -> Response {
    HttpError::not_found("Not found")
        .with("path", original_path(&request))
        .into_response()
}

/// 405 for the POST routes (all but `ticker` and `instruments`).
async fn method_not_allowed(request: Request) -> Response {
    wrong_method(&request, "POST")
}

/// 405 for the GET routes (`ticker`, `instruments`).
async fn method_not_allowed_use_get(request: Request) -> Response {
    wrong_method(&request, "GET")
}

fn wrong_method(request: &Request, allowed: &str) -> Response {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Method {} is not allowed on {}; use {allowed}",
            request.method(),
            original_path(request)
        ),
    )
    .into_response()
}

/// The limiters of the three route groups.
#[derive(Debug, Clone)]
pub(crate) struct Limiters {
    /// Order endpoints.
    pub order: IpRateLimiter,
    /// placesmartorder.
    pub smart_order: IpRateLimiter,
    /// Everything else.
    pub api: IpRateLimiter,
}

impl Limiters {
    /// Limiters for the configured rates.
    pub(crate) fn new(limits: RateLimits) -> Self {
        Limiters {
            order: IpRateLimiter::new(limits.order),
            smart_order: IpRateLimiter::new(limits.smart_order),
            api: IpRateLimiter::new(limits.api),
        }
    }

    /// Forgets idle clients every minute, for as long as the runtime runs.
    pub(crate) fn spawn_cleanup(&self) {
        let limiters = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiters.order.retain_recent();
                limiters.smart_order.retain_recent();
                limiters.api.retain_recent();
            }
        });
    }
}

/// Routes `path` and `path/` to `handler`: upstream's routes are `strict_slashes=False`
/// (restx_api/*.py), so a trailing slash reaches the same endpoint.
fn route_both(
    router: Router<AppState>,
    path: &str,
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}/"), handler)
}

/// The router: `/api/v1/...` plus JSON fallbacks for every other `/api/...` path. The rate
/// limit groups are upstream's: `ORDER_RATE_LIMIT` for placeorder, modifyorder,
/// cancelorder, optionsorder and optionsmultiorder, `SMART_ORDER_RATE_LIMIT` for placesmartorder, `API_RATE_LIMIT` for the rest
/// (cancelallorder, closeposition, basketorder and splitorder included).
pub(crate) fn router(state: AppState, limiters: &Limiters) -> Router {
    let body_limit = state.body_limit;
    let group = |routes: &[(&str, MethodRouter<AppState>)], limiter: &IpRateLimiter| {
        routes
            .iter()
            .fold(Router::new(), |router, (path, handler)| {
                route_both(router, path, handler.clone())
            })
            .layer(middleware::from_fn_with_state(
                limiter.clone(),
                ratelimit::limit,
            ))
    };
    let orders = group(
        &[
            ("/placeorder", post(placeorder)),
            ("/modifyorder", post(modifyorder)),
            ("/cancelorder", post(cancelorder)),
            ("/optionsorder", post(crate::options::orders::optionsorder)),
            (
                "/optionsmultiorder",
                post(crate::options::orders::optionsmultiorder),
            ),
        ],
        &limiters.order,
    );
    let smart = group(
        &[("/placesmartorder", post(placesmartorder))],
        &limiters.smart_order,
    );
    let api = group(
        &[
            ("/cancelallorder", post(cancelallorder)),
            ("/closeposition", post(closeposition)),
            ("/basketorder", post(basketorder)),
            ("/splitorder", post(splitorder)),
            ("/orderstatus", post(orderstatus)),
            ("/openposition", post(openposition)),
            ("/orderbook", post(orderbook)),
            ("/tradebook", post(tradebook)),
            ("/positionbook", post(positionbook)),
            ("/funds", post(funds)),
            ("/quotes", post(quotes)),
            ("/depth", post(depth)),
            ("/search", post(search)),
            ("/symbol", post(symbol)),
            ("/multiquotes", post(multiquotes)),
            ("/intervals", post(intervals)),
            ("/history", post(crate::history::routes::history)),
            (
                "/ticker/{symbol}",
                get(crate::history::routes::ticker).fallback(method_not_allowed_use_get),
            ),
            ("/expiry", post(crate::contracts::expiry)),
            ("/optionsymbol", post(crate::options::chain::optionsymbol)),
            ("/optionchain", post(crate::options::chain::optionchain)),
            (
                "/syntheticfuture",
                post(crate::options::chain::syntheticfuture),
            ),
            ("/optiongreeks", post(crate::options::greeks::optiongreeks)),
            (
                "/multioptiongreeks",
                post(crate::options::greeks::multioptiongreeks),
            ),
            (
                "/instruments",
                get(crate::contracts::instruments).fallback(method_not_allowed_use_get),
            ),
            ("/holdings", post(holdings)),
            ("/margin", post(crate::account::margin)),
            ("/market/holidays", post(crate::account::holidays)),
            ("/market/timings", post(crate::account::timings)),
            ("/analyzer", post(analyzer)),
            ("/analyzer/toggle", post(analyzer_toggle)),
            ("/ping", post(ping)),
        ],
        &limiters.api,
    );
    let v1 = orders
        .merge(smart)
        .merge(api)
        .layer(DefaultBodyLimit::max(body_limit))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new().nest("/api", Router::new().nest("/v1", v1).fallback(not_found))
}
