//! Numbers as OpenAlgo writes them.
//!
//! Python serialises `10` as `10` and `10.5` as `10.5`; a plain `f64` in serde_json would
//! write `10.0`. [`Quantity`] keeps integral quantities integral on the wire so payloads match
//! upstream byte for byte, while still allowing fractional CRYPTO quantities.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An order quantity: integral for most exchanges, fractional for CRYPTO.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Quantity(pub f64);

impl Quantity {
    /// The quantity as a float.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl From<i64> for Quantity {
    fn from(value: i64) -> Self {
        Quantity(value as f64)
    }
}

impl From<f64> for Quantity {
    fn from(value: f64) -> Self {
        Quantity(value)
    }
}

/// Largest magnitude at which every integer is exactly representable in an f64.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
            serializer.serialize_i64(value as i64)
        } else {
            serializer.serialize_f64(value)
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        f64::deserialize(deserializer).map(Quantity)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "Order quantity; an integer except on CRYPTO, where it may be fractional."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_quantities_serialise_without_a_fraction() {
        assert_eq!(serde_json::to_string(&Quantity(10.0)).unwrap(), "10");
        assert_eq!(serde_json::to_string(&Quantity(0.0)).unwrap(), "0");
        assert_eq!(serde_json::to_string(&Quantity(-25.0)).unwrap(), "-25");
    }

    #[test]
    fn fractional_quantities_keep_their_fraction() {
        assert_eq!(serde_json::to_string(&Quantity(0.25)).unwrap(), "0.25");
    }

    #[test]
    fn quantities_read_integers_and_floats() {
        assert_eq!(
            serde_json::from_str::<Quantity>("7").unwrap(),
            Quantity(7.0)
        );
        assert_eq!(
            serde_json::from_str::<Quantity>("7.5").unwrap(),
            Quantity(7.5)
        );
    }
}
