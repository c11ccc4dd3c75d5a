//! Reading a request body field by field, with errors that name the field and what was
//! expected.
//!
//! Requests are read from a JSON object rather than derived with serde so that every error
//! message is ours (`quantity: expected a positive integer, got "-5"`), numbers may arrive as
//! JSON numbers or numeric strings (the official SDK sends strings), and unknown fields are
//! rejected with the list of allowed ones.

use serde_json::{Map, Value};

use crate::error::HttpError;
use crate::types::{Choice, EXCHANGES, Exchange, allowed};

type Result<T> = std::result::Result<T, HttpError>;

/// Longest accepted `strategy` tag, in characters. Upstream OpenAlgo's request schemas
/// (`restx_api/schemas.py`: `strategy = fields.Str(required=True)`) set no limit; its sandbox
/// tables declare `String(100)` and its strategy book `String(120)`. 255 accepts every tag
/// those hold while bounding what a client can make the store keep per order.
pub(crate) const MAX_STRATEGY_CHARS: usize = 255;

/// A request body being read.
#[derive(Debug, Clone)]
pub struct Fields {
    map: Map<String, Value>,
    /// Prepended to field names in messages (`orders[2].`).
    prefix: String,
}

/// Shows a client value in an error message, shortened.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let short: String = text.chars().take(37).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// A number from a JSON number or a numeric string.
fn number(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

impl Fields {
    /// Checks that every key is one of `allowed`.
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Fields> {
        if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(HttpError::bad_request(format!(
                "{unknown}: unknown field; allowed fields: {}",
                allowed.join(", ")
            )));
        }
        Ok(Fields {
            map,
            prefix: String::new(),
        })
    }

    /// Checks that every key is in one of `groups` (lists shared by several endpoints);
    /// an error lists the allowed fields in group order.
    pub fn in_groups(map: Map<String, Value>, groups: &[&[&str]]) -> Result<Fields> {
        Fields::new(map, &groups.concat())
    }

    /// Reads a nested object (an item of an array), checking its keys.
    pub fn nested(value: &Value, path: &str, allowed: &[&str]) -> Result<Fields> {
        match value {
            Value::Object(map) => {
                if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
                    return Err(HttpError::bad_request(format!(
                        "{path}.{unknown}: unknown field; allowed fields: {}",
                        allowed.join(", ")
                    )));
                }
                Ok(Fields {
                    map: map.clone(),
                    prefix: format!("{path}."),
                })
            }
            other => Err(HttpError::bad_request(format!(
                "{path}: expected an object, got {}",
                show(other)
            ))),
        }
    }

    /// The body as received, without `apikey` (for the order log and `analyzer_update`).
    pub fn without_apikey(&self) -> Map<String, Value> {
        let mut map = self.map.clone();
        // shift_remove keeps the other keys in the order the client sent them.
        map.shift_remove("apikey");
        map
    }

    fn present(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    fn missing(&self, name: &str, expected: &str) -> HttpError {
        self.error(
            name,
            &format!("missing required field (expected {expected})"),
        )
    }

    fn invalid(&self, name: &str, expected: &str, value: &Value) -> HttpError {
        self.error(name, &format!("expected {expected}, got {}", show(value)))
    }

    /// A 400 about `name` (with this object's prefix).
    pub fn error(&self, name: &str, message: &str) -> HttpError {
        HttpError::bad_request(format!("{}{name}: {message}", self.prefix))
    }

    /// A required, non-empty string. Numbers are accepted and written in decimal (order ids).
    pub fn string(&self, name: &str) -> Result<String> {
        self.opt_string(name)?
            .ok_or_else(|| self.missing(name, "a non-empty string"))
    }

    /// An optional string; empty strings count as absent.
    pub fn opt_string(&self, name: &str) -> Result<Option<String>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.trim().to_string())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(self.invalid(name, "a string", other)),
        }
    }

    /// A required string that must not be blank (explicit empty strings are named as such).
    pub fn required_string(&self, name: &str) -> Result<String> {
        if let Some(Value::String(text)) = self.present(name)
            && text.trim().is_empty()
        {
            return Err(self.error(name, "must not be empty"));
        }
        self.string(name)
    }

    /// The required `strategy` tag: a non-empty string of at most `MAX_STRATEGY_CHARS`
    /// characters.
    pub fn strategy(&self) -> Result<String> {
        let strategy = self.required_string("strategy")?;
        let length = strategy.chars().count();
        if length > MAX_STRATEGY_CHARS {
            return Err(self.error(
                "strategy",
                &format!("expected at most {MAX_STRATEGY_CHARS} characters, got {length}"),
            ));
        }
        Ok(strategy)
    }

    /// A required choice (`action`, `pricetype`, `product`).
    pub fn choice<T: Choice>(&self, name: &str) -> Result<T> {
        match self.present(name) {
            None => Err(self.missing(name, &format!("one of {}", allowed::<T>()))),
            Some(value) => self.parse_choice(name, value),
        }
    }

    /// An optional choice with a default.
    pub fn choice_or<T: Choice>(&self, name: &str, default: T) -> Result<T> {
        match self.present(name) {
            None => Ok(default),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(default),
            Some(value) => self.parse_choice(name, value),
        }
    }

    fn parse_choice<T: Choice>(&self, name: &str, value: &Value) -> Result<T> {
        value
            .as_str()
            .and_then(T::parse)
            .ok_or_else(|| self.invalid(name, &format!("one of {}", allowed::<T>()), value))
    }

    /// A required exchange code.
    pub fn exchange(&self, name: &str) -> Result<Exchange> {
        let expected = || format!("one of {}", EXCHANGES.join(", "));
        match self.present(name) {
            None => Err(self.missing(name, &expected())),
            Some(value) => value
                .as_str()
                .and_then(Exchange::parse)
                .ok_or_else(|| self.invalid(name, &expected(), value)),
        }
    }

    /// A quantity: > 0 (or >= 0 with `allow_zero`), an integer unless the exchange allows
    /// fractions. `default` applies when the field is absent.
    pub fn quantity(
        &self,
        name: &str,
        exchange: Exchange,
        allow_zero: bool,
        default: Option<f64>,
    ) -> Result<f64> {
        let fractional = exchange.allows_fractional_quantity();
        let expected = match (allow_zero, fractional) {
            (false, false) => "a positive integer (number or numeric string)",
            (true, false) => "an integer >= 0 (number or numeric string)",
            (false, true) => "a positive number (number or numeric string)",
            (true, true) => "a number >= 0 (number or numeric string)",
        };
        let Some(value) = self.present(name) else {
            return default.ok_or_else(|| self.missing(name, expected));
        };
        let quantity = number(value).ok_or_else(|| self.invalid(name, expected, value))?;
        let sign_ok = if allow_zero {
            quantity >= 0.0
        } else {
            quantity > 0.0
        };
        if !sign_ok || (!fractional && quantity.fract() != 0.0) {
            return Err(self.invalid(name, expected, value));
        }
        Ok(quantity)
    }

    /// A signed quantity (`position_size`): an integer unless the exchange allows fractions.
    pub fn signed_quantity(&self, name: &str, exchange: Exchange) -> Result<f64> {
        let expected = if exchange.allows_fractional_quantity() {
            "a number (number or numeric string; negative for a short position)"
        } else {
            "an integer (number or numeric string; negative for a short position)"
        };
        let value = self
            .present(name)
            .ok_or_else(|| self.missing(name, expected))?;
        let quantity = number(value).ok_or_else(|| self.invalid(name, expected, value))?;
        if !exchange.allows_fractional_quantity() && quantity.fract() != 0.0 {
            return Err(self.invalid(name, expected, value));
        }
        Ok(quantity)
    }

    /// A price-like number >= 0; `None` when absent.
    pub fn opt_price(&self, name: &str) -> Result<Option<f64>> {
        let expected = "a number >= 0 (number or numeric string)";
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
            Some(value) => match number(value) {
                Some(price) if price >= 0.0 => Ok(Some(price)),
                _ => Err(self.invalid(name, expected, value)),
            },
        }
    }

    /// A required price-like number >= 0.
    pub fn price(&self, name: &str) -> Result<f64> {
        self.opt_price(name)?
            .ok_or_else(|| self.missing(name, "a number >= 0 (number or numeric string)"))
    }

    /// A required positive integer (`splitsize`).
    pub fn positive_integer(&self, name: &str) -> Result<u64> {
        let expected = "a positive integer (number or numeric string)";
        let value = self
            .present(name)
            .ok_or_else(|| self.missing(name, expected))?;
        match number(value) {
            Some(n) if n >= 1.0 && n.fract() == 0.0 && n < 1e15 => Ok(n as u64),
            _ => Err(self.invalid(name, expected, value)),
        }
    }

    /// A required boolean; "true"/"false" strings are accepted.
    pub fn boolean(&self, name: &str) -> Result<bool> {
        let expected = "a boolean (true or false)";
        match self.present(name) {
            None => Err(self.missing(name, expected)),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => Err(self.invalid(name, expected, other)),
        }
    }

    /// An optional boolean (`true`/`false`, also as strings); `None` when absent.
    pub fn opt_boolean(&self, name: &str) -> Result<Option<bool>> {
        match self.present(name) {
            None => Ok(None),
            Some(_) => self.boolean(name).map(Some),
        }
    }

    /// A required non-empty array.
    pub fn array(&self, name: &str) -> Result<&Vec<Value>> {
        let expected = "a non-empty array of objects";
        match self.present(name) {
            None => Err(self.missing(name, expected)),
            Some(Value::Array(items)) if !items.is_empty() => Ok(items),
            Some(other) => Err(self.invalid(name, expected, other)),
        }
    }

    /// Checks that `value`, as read from `name`, is one of `allowed`.
    pub fn check_one_of(&self, name: &str, value: &str, allowed: &[&str]) -> Result<()> {
        if allowed.contains(&value) {
            return Ok(());
        }
        Err(self.error(
            name,
            &format!("expected one of {}, got {value:?}", allowed.join(", ")),
        ))
    }

    /// The items of the non-empty array `name`, at most `max` of them, each an object whose
    /// keys are among `allowed` (errors name it `name[index].key`). Items are read one by
    /// one, so the first bad item is the one reported.
    pub fn objects<'a>(
        &'a self,
        name: &'a str,
        max: usize,
        allowed: &'a [&'a str],
    ) -> Result<impl Iterator<Item = Result<Fields>> + 'a> {
        let items = self.array(name)?;
        if items.len() > max {
            return Err(self.error(
                name,
                &format!("at most {max} {name} per request, got {}", items.len()),
            ));
        }
        Ok(items
            .iter()
            .enumerate()
            .map(move |(index, item)| Fields::nested(item, &format!("{name}[{index}]"), allowed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Action;
    use serde_json::json;

    fn fields(value: Value, allowed: &[&str]) -> Result<Fields> {
        match value {
            Value::Object(map) => Fields::new(map, allowed),
            _ => unreachable!(),
        }
    }

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let nse = Exchange::parse("NSE").unwrap();
        let f = fields(
            json!({"a": "10", "b": 10, "c": "850.5", "d": 1.5}),
            &["a", "b", "c", "d"],
        )
        .unwrap();
        assert_eq!(f.quantity("a", nse, false, None).unwrap(), 10.0);
        assert_eq!(f.quantity("b", nse, false, None).unwrap(), 10.0);
        assert_eq!(f.price("c").unwrap(), 850.5);
        let error = f.quantity("d", nse, false, None).unwrap_err().message;
        assert_eq!(
            error,
            "d: expected a positive integer (number or numeric string), got 1.5"
        );
        let crypto = Exchange::parse("CRYPTO").unwrap();
        assert_eq!(f.quantity("d", crypto, false, None).unwrap(), 1.5);
    }

    #[test]
    fn errors_name_the_field_and_the_expectation() {
        let error = fields(json!({"x": 1}), &["apikey", "symbol"])
            .unwrap_err()
            .message;
        assert_eq!(error, "x: unknown field; allowed fields: apikey, symbol");
        let f = fields(json!({"action": "hold", "q": "-5"}), &["action", "q"]).unwrap();
        assert_eq!(
            f.choice::<Action>("action").unwrap_err().message,
            "action: expected one of BUY, SELL, got \"hold\""
        );
        assert_eq!(
            f.choice::<Action>("side").unwrap_err().message,
            "side: missing required field (expected one of BUY, SELL)"
        );
        let nse = Exchange::parse("NSE").unwrap();
        assert!(
            f.quantity("q", nse, false, None)
                .unwrap_err()
                .message
                .contains("\"-5\"")
        );
    }
}
