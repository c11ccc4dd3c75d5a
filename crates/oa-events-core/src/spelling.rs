//! Enums with a fixed set of spellings: settings values (`ORDER_EVENT_MODE=KAFKA`,
//! `KAFKA_SECURITY_PROTOCOL=SASL_SSL`) and wire words (`BUY`, `MIS`).
//!
//! [`spelled_enum!`](crate::spelled_enum) declares such an enum once, with each variant's
//! canonical spelling, and derives what every crate used to write by hand: `ALL`, `ALLOWED`
//! (for error messages), `as_str`, a case-insensitive `from_spelling` and `Display`.

/// Declares a fieldless enum whose variants each have one canonical spelling.
///
/// Generates, on the enum:
/// - `ALL`: every variant, in declaration order;
/// - `ALLOWED`: the spellings joined by `", "`, for error messages;
/// - `as_str(self)`: the canonical spelling;
/// - `from_spelling(&str)`: the variant spelled so, ignoring ASCII case and surrounding
///   white space;
/// - `Display`, printing the canonical spelling.
///
/// The caller writes the enum's derives and any `FromStr`, so each crate keeps its own
/// error type.
///
/// ```
/// oa_events_core::spelled_enum! {
///     /// A traffic light.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Light {
///         /// Stop.
///         Red = "RED",
///         /// Go.
///         Green = "GREEN",
///     }
/// }
///
/// assert_eq!(Light::from_spelling(" red "), Some(Light::Red));
/// assert_eq!(Light::Green.to_string(), "GREEN");
/// assert_eq!(Light::ALLOWED, "RED, GREEN");
/// assert_eq!(Light::ALL, [Light::Red, Light::Green]);
/// ```
#[macro_export]
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident = $first_text:literal
            $(, $(#[$rest_meta:meta])* $rest:ident = $rest_text:literal)* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(#[$first_meta])* $first,
            $($(#[$rest_meta])* $rest,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$first_text $(, $rest_text)*].len()] =
                [$name::$first $(, $name::$rest)*];

            /// Every accepted spelling, comma separated, for error messages.
            pub const ALLOWED: &'static str = concat!($first_text $(, ", ", $rest_text)*);

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $name::$first => $first_text,
                    $($name::$rest => $rest_text,)*
                }
            }

            /// The variant spelled `value`, ignoring ASCII case and surrounding white space.
            pub fn from_spelling(value: &str) -> Option<$name> {
                let value = value.trim();
                $name::ALL
                    .into_iter()
                    .find(|variant| variant.as_str().eq_ignore_ascii_case(value))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::spelled_enum! {
        /// One variant only: the macro's smallest input.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Single {
            Only = "only",
        }
    }

    crate::spelled_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        enum Protocol {
            #[default]
            Plain = "PLAINTEXT",
            SaslSsl = "SASL_SSL",
        }
    }

    #[test]
    fn every_variant_round_trips_through_its_spelling() {
        for variant in Protocol::ALL {
            assert_eq!(Protocol::from_spelling(variant.as_str()), Some(variant));
            assert_eq!(variant.to_string(), variant.as_str());
        }
        assert_eq!(Single::ALL, [Single::Only]);
        assert_eq!(Single::ALLOWED, "only");
        assert_eq!(Single::from_spelling("ONLY"), Some(Single::Only));
    }

    #[test]
    fn spellings_match_ignoring_case_and_white_space_only() {
        assert_eq!(
            Protocol::from_spelling(" sasl_ssl\n"),
            Some(Protocol::SaslSsl)
        );
        assert_eq!(Protocol::from_spelling("SASL-SSL"), None);
        assert_eq!(Protocol::from_spelling(""), None);
        assert_eq!(Protocol::ALLOWED, "PLAINTEXT, SASL_SSL");
        assert_eq!(Protocol::default(), Protocol::Plain);
    }
}
