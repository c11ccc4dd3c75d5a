//! [`EnvVar`]: one environment variable of a layer, as listed in that layer's `ENV_VARS` table.
//!
//! Each crate that reads settings owns one table of them (its variable names, the default as
//! text and a one-line help). The table is the single place a default is written: `oa-server`
//! builds its flags (`--help`) from the tables, a test checks `.sample.env` against them, and
//! each crate checks that its typed defaults parse from the table's text.

/// One environment variable: its name, its default as text (empty: unset by default) and
/// what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name, e.g. `KAFKA_BOOTSTRAP_SERVERS`.
    pub name: &'static str,
    /// The default, exactly as it would be written in `.sample.env`; empty when unset.
    pub default: &'static str,
    /// One line on what the variable does and what it accepts.
    pub help: &'static str,
    /// A secret (a password, a key): its value is never shown by help texts or `Debug`.
    pub secret: bool,
}

impl EnvVar {
    /// A variable that is not secret.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        EnvVar {
            name,
            default,
            help,
            secret: false,
        }
    }

    /// A secret variable, unset by default.
    pub const fn secret(name: &'static str, help: &'static str) -> Self {
        EnvVar {
            name,
            default: "",
            help,
            secret: true,
        }
    }

    /// The default, or `None` when the variable is unset by default.
    pub fn default_value(&self) -> Option<&'static str> {
        (!self.default.is_empty()).then_some(self.default)
    }
}

/// The default of the variable `name` in `table`, when it is listed with one.
pub fn default_of(table: &[EnvVar], name: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|var| var.name == name)
        .and_then(EnvVar::default_value)
}

/// Reads a layer's settings from a lookup of environment variables (for example
/// `|name| std::env::var(name).ok()`, or a map in tests): a variable that is unset or blank
/// leaves its field at the default.
#[derive(Debug, Clone, Copy)]
pub struct EnvReader<L> {
    lookup: L,
}

impl<L: Fn(&str) -> Option<String>> EnvReader<L> {
    /// Reads through `lookup`.
    pub fn new(lookup: L) -> Self {
        EnvReader { lookup }
    }

    /// The value of the variable `name`, `None` when it is unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|value| !value.trim().is_empty())
    }

    /// Sets `field` to what `read` (given the name and the value) makes of the variable
    /// `name`; leaves it when the variable is unset or blank.
    pub fn set<T, E>(
        &self,
        field: &mut T,
        name: &'static str,
        read: impl FnOnce(&'static str, &str) -> Result<T, E>,
    ) -> Result<(), E> {
        if let Some(value) = self.get(name) {
            *field = read(name, &value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_default_means_unset() {
        const TABLE: &[EnvVar] = &[
            EnvVar::new("A", "1", "a"),
            EnvVar::new("B", "", "b"),
            EnvVar::secret("C", "c"),
        ];
        assert_eq!(default_of(TABLE, "A"), Some("1"));
        assert_eq!(default_of(TABLE, "B"), None);
        assert_eq!(default_of(TABLE, "C"), None);
        assert_eq!(default_of(TABLE, "D"), None);
        assert!(TABLE[2].secret && !TABLE[0].secret);
    }

    #[test]
    fn the_reader_keeps_defaults_of_unset_or_blank_variables_and_passes_errors_on() {
        let reader = EnvReader::new(|name: &str| match name {
            "SET" => Some(" 7 ".to_string()),
            "BLANK" => Some("  ".to_string()),
            "BAD" => Some("x".to_string()),
            _ => None,
        });
        let read = |name: &'static str, value: &str| {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{name}: {value:?}"))
        };
        let (mut set, mut blank, mut unset, mut bad) = (1, 2, 3, 4);
        reader.set(&mut set, "SET", read).unwrap();
        reader.set(&mut blank, "BLANK", read).unwrap();
        reader.set(&mut unset, "UNSET", read).unwrap();
        assert_eq!((set, blank, unset), (7, 2, 3));
        assert_eq!(
            reader.set(&mut bad, "BAD", read),
            Err("BAD: \"x\"".to_string())
        );
        assert_eq!(bad, 4);
    }
}
