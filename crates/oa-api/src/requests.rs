//! The request bodies of every endpoint: allowed fields, required fields, defaults and
//! cross-field rules (docs/rest-api.md).

use crate::error::HttpError;
use crate::fields::Fields;
use crate::types::{Action, Exchange, PriceType, Product};

type Result<T> = std::result::Result<T, HttpError>;

/// The order fields shared by placeorder, placesmartorder, basket items and splitorder: what
/// an order asks for (the engine's [`NewOrder`](crate::engine::NewOrder) embeds them).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFields {
    /// Exchange.
    pub exchange: Exchange,
    /// Symbol.
    pub symbol: String,
    /// BUY or SELL.
    pub action: Action,
    /// Quantity.
    pub quantity: f64,
    /// Price type (default MARKET).
    pub pricetype: PriceType,
    /// Product (default MIS).
    pub product: Product,
    /// Limit price (default 0).
    pub price: f64,
    /// Trigger price (default 0).
    pub trigger_price: f64,
    /// Disclosed quantity (default 0).
    pub disclosed_quantity: f64,
}

/// Checks the prices a price type needs.
pub(crate) fn check_prices(
    fields: &Fields,
    pricetype: PriceType,
    price: f64,
    trigger_price: f64,
) -> Result<()> {
    if matches!(pricetype, PriceType::Limit | PriceType::Sl) && price <= 0.0 {
        return Err(fields.error(
            "price",
            &format!("expected a number > 0 for {pricetype} orders, got {price}"),
        ));
    }
    if matches!(pricetype, PriceType::Sl | PriceType::SlM) && trigger_price <= 0.0 {
        return Err(fields.error(
            "trigger_price",
            &format!("expected a number > 0 for {pricetype} orders, got {trigger_price}"),
        ));
    }
    Ok(())
}

/// The optional price fields of an order (each 0 when absent), checked against its price
/// type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PriceTerms {
    /// Limit price.
    pub(crate) price: f64,
    /// Trigger price.
    pub(crate) trigger_price: f64,
    /// Disclosed quantity.
    pub(crate) disclosed_quantity: f64,
}

impl PriceTerms {
    /// Reads `price`, `trigger_price` and `disclosed_quantity` (in lots of `exchange`).
    pub(crate) fn read(
        fields: &Fields,
        exchange: Exchange,
        pricetype: PriceType,
    ) -> Result<PriceTerms> {
        let price = fields.opt_price("price")?.unwrap_or(0.0);
        let trigger_price = fields.opt_price("trigger_price")?.unwrap_or(0.0);
        let disclosed_quantity =
            fields.quantity("disclosed_quantity", exchange, true, Some(0.0))?;
        check_prices(fields, pricetype, price, trigger_price)?;
        Ok(PriceTerms {
            price,
            trigger_price,
            disclosed_quantity,
        })
    }
}

impl OrderFields {
    /// Reads the order fields; `allow_zero_quantity` for smart orders.
    pub fn read(fields: &Fields, allow_zero_quantity: bool) -> Result<OrderFields> {
        let exchange = fields.exchange("exchange")?;
        let symbol = fields.required_string("symbol")?;
        let action = fields.choice::<Action>("action")?;
        let quantity = fields.quantity("quantity", exchange, allow_zero_quantity, None)?;
        let pricetype = fields.choice_or("pricetype", PriceType::Market)?;
        let product = fields.choice_or("product", Product::Mis)?;
        let PriceTerms {
            price,
            trigger_price,
            disclosed_quantity,
        } = PriceTerms::read(fields, exchange, pricetype)?;
        Ok(OrderFields {
            exchange,
            symbol: symbol.to_ascii_uppercase(),
            action,
            quantity,
            pricetype,
            product,
            price,
            trigger_price,
            disclosed_quantity,
        })
    }
}

/// Fields of placeorder.
pub const PLACE_ORDER_FIELDS: &[&str] = &[
    "apikey",
    "strategy",
    "exchange",
    "symbol",
    "action",
    "quantity",
    "pricetype",
    "product",
    "price",
    "trigger_price",
    "disclosed_quantity",
    "underlying_ltp",
];

/// Fields of placesmartorder.
pub const SMART_ORDER_FIELDS: &[&str] = &[
    "apikey",
    "strategy",
    "exchange",
    "symbol",
    "action",
    "quantity",
    "position_size",
    "pricetype",
    "product",
    "price",
    "trigger_price",
    "disclosed_quantity",
];

/// Fields of modifyorder (all required).
pub const MODIFY_ORDER_FIELDS: &[&str] = &[
    "apikey",
    "strategy",
    "exchange",
    "symbol",
    "orderid",
    "action",
    "product",
    "pricetype",
    "price",
    "quantity",
    "disclosed_quantity",
    "trigger_price",
];

/// Fields of one basket item.
pub const BASKET_ITEM_FIELDS: &[&str] = &[
    "exchange",
    "symbol",
    "action",
    "quantity",
    "pricetype",
    "product",
    "price",
    "trigger_price",
    "disclosed_quantity",
];

/// The order terms of a split (splitorder, optionsorder), after what names the instrument.
pub const SPLIT_TERM_FIELDS: &[&str] = &[
    "action",
    "quantity",
    "splitsize",
    "pricetype",
    "product",
    "price",
    "trigger_price",
    "disclosed_quantity",
];

/// Fields of splitorder that name the instrument; [`SPLIT_TERM_FIELDS`] follow.
pub const SPLIT_ORDER_FIELDS: &[&str] = &["apikey", "strategy", "exchange", "symbol"];

/// Most orders one basket or split may create.
pub const MAX_BATCH_ORDERS: u64 = 100;

/// A parsed placeorder.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder {
    /// Strategy tag.
    pub strategy: String,
    /// The order.
    pub order: OrderFields,
}

impl PlaceOrder {
    /// Reads placeorder. `underlying_ltp` (upstream restx_api/schemas.py `OrderSchema`: an
    /// optional number an options order passes for reference) is checked and not used.
    pub fn read(fields: &Fields) -> Result<PlaceOrder> {
        fields.opt_price("underlying_ltp")?;
        Ok(PlaceOrder {
            strategy: fields.strategy()?,
            order: OrderFields::read(fields, false)?,
        })
    }
}

/// A parsed placesmartorder.
#[derive(Debug, Clone, PartialEq)]
pub struct SmartOrder {
    /// Strategy tag.
    pub strategy: String,
    /// The order (quantity may be 0).
    pub order: OrderFields,
    /// Target signed net position.
    pub position_size: f64,
}

impl SmartOrder {
    /// Reads placesmartorder.
    pub fn read(fields: &Fields) -> Result<SmartOrder> {
        let strategy = fields.strategy()?;
        let order = OrderFields::read(fields, true)?;
        let position_size = fields.signed_quantity("position_size", order.exchange)?;
        Ok(SmartOrder {
            strategy,
            order,
            position_size,
        })
    }
}

/// A parsed modifyorder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModifyRequest {
    /// Strategy tag.
    pub strategy: String,
    /// The order id.
    pub orderid: String,
    /// The new order fields (all required).
    pub order: OrderFields,
}

impl ModifyRequest {
    /// Reads modifyorder: every field is required.
    pub fn read(fields: &Fields) -> Result<ModifyRequest> {
        let strategy = fields.strategy()?;
        let orderid = fields.required_string("orderid")?;
        let exchange = fields.exchange("exchange")?;
        let symbol = fields.required_string("symbol")?;
        let action = fields.choice::<Action>("action")?;
        let product = fields.choice::<Product>("product")?;
        let pricetype = fields.choice::<PriceType>("pricetype")?;
        let price = fields.price("price")?;
        let quantity = fields.quantity("quantity", exchange, false, None)?;
        let disclosed_quantity = fields.quantity("disclosed_quantity", exchange, true, None)?;
        let trigger_price = fields.price("trigger_price")?;
        check_prices(fields, pricetype, price, trigger_price)?;
        Ok(ModifyRequest {
            strategy,
            orderid,
            order: OrderFields {
                exchange,
                symbol: symbol.to_ascii_uppercase(),
                action,
                quantity,
                pricetype,
                product,
                price,
                trigger_price,
                disclosed_quantity,
            },
        })
    }
}

/// A parsed basketorder.
#[derive(Debug, Clone, PartialEq)]
pub struct BasketOrder {
    /// Strategy tag.
    pub strategy: String,
    /// The orders, in request order.
    pub orders: Vec<OrderFields>,
}

impl BasketOrder {
    /// Reads basketorder.
    pub fn read(fields: &Fields) -> Result<BasketOrder> {
        let strategy = fields.strategy()?;
        let items = fields.array("orders")?;
        if items.len() as u64 > MAX_BATCH_ORDERS {
            return Err(HttpError::bad_request(format!(
                "orders: expected at most {MAX_BATCH_ORDERS} orders, got {}",
                items.len()
            )));
        }
        let orders = items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let path = format!("orders[{index}]");
                let item = Fields::nested(item, &path, BASKET_ITEM_FIELDS)?;
                OrderFields::read(&item, false)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BasketOrder { strategy, orders })
    }
}

/// A parsed splitorder.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOrder {
    /// Strategy tag.
    pub strategy: String,
    /// The order with the total quantity.
    pub order: OrderFields,
    /// Quantity of each child order (the last one takes the remainder).
    pub splitsize: f64,
}

impl SplitOrder {
    /// Reads splitorder.
    pub fn read(fields: &Fields) -> Result<SplitOrder> {
        let strategy = fields.strategy()?;
        let order = OrderFields::read(fields, false)?;
        let splitsize = fields.positive_integer("splitsize")? as f64;
        let children = (order.quantity / splitsize).ceil();
        if children > MAX_BATCH_ORDERS as f64 {
            return Err(HttpError::bad_request(format!(
                "splitsize: {splitsize} would split quantity {} into {children} orders; at most {MAX_BATCH_ORDERS} are allowed",
                order.quantity
            )));
        }
        Ok(SplitOrder {
            strategy,
            order,
            splitsize,
        })
    }
}
