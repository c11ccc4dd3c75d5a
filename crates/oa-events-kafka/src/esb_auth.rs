//! Authentication of ESB commands (docs/esb.md, "Authentication").
//!
//! Every command carries the record header `oa_signature: <key id>:<hex>`, the lowercase hex
//! HMAC-SHA256 of the exact record value bytes under the secret named by the key id in
//! `KAFKA_ESB_SIGNING_KEYS`. Several keys may be configured at once so that producers can
//! move to a new key before the old one is removed (rotation without downtime). Signed
//! commands must also carry an envelope `timestamp` no older than `KAFKA_ESB_MAX_AGE_SECONDS`
//! (and at most [`MAX_FUTURE_SKEW`] ahead of oa's clock), so that a captured command cannot
//! be replayed later.
//!
//! Without keys the consumer does not start, unless the owner sets
//! `KAFKA_ESB_TRUST_UNSIGNED=true` (then any well-formed command is executed, as before
//! signatures existed). Secrets are never logged and never shown by `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use oa_events_core::EnvVar;
use sha2::Sha256;

/// The record header that carries a command's signature.
pub const SIGNATURE_HEADER: &str = "oa_signature";
/// Fewest bytes a signing secret may have.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Default of `KAFKA_ESB_MAX_AGE_SECONDS`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Largest accepted `KAFKA_ESB_MAX_AGE_SECONDS` (one day).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);
/// How far a command's `timestamp` may be ahead of oa's clock (clock skew between hosts).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// Every variable [`EsbSecurity::from_lookup`] reads, with its default and help.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::secret(
        "KAFKA_ESB_SIGNING_KEYS",
        "signing keys of ESB commands: id1:secret1,id2:secret2 (each secret at least 32 bytes; several at once to rotate keys); prefer the environment: flags show in ps",
    ),
    EnvVar::new(
        "KAFKA_ESB_TRUST_UNSIGNED",
        "false",
        "execute UNSIGNED ESB commands (anyone who can write to the ESB topic can trade for every user who allowed ESB control): true or false",
    ),
    EnvVar::new(
        "KAFKA_ESB_MAX_AGE_SECONDS",
        "300",
        "oldest accepted ESB command timestamp, in seconds (1 to 86400)",
    ),
];

type HmacSha256 = Hmac<Sha256>;

/// The header value for `value` signed with (`key_id`, `secret`): `<key id>:<lowercase hex>`.
/// This is what an ESB producer puts in the `oa_signature` header.
pub fn sign(key_id: &str, secret: &[u8], value: &[u8]) -> String {
    format!(
        "{key_id}:{}",
        hex::encode(mac(secret, value).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], value: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(value);
    mac
}

/// Why a command's signature was not accepted. The text goes to the dead letter; it never
/// contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `oa_signature` header.
    #[error(
        "the record has no oa_signature header (expected <key id>:<hex HMAC-SHA256 of the value>)"
    )]
    Missing,
    /// The header is not `<key id>:<64 hex digits>`.
    #[error("the oa_signature header is malformed: {0}")]
    Malformed(String),
    /// The key id is not configured (never was, or was removed by a rotation).
    #[error("the oa_signature key id {0:?} is not one of KAFKA_ESB_SIGNING_KEYS")]
    UnknownKey(String),
    /// The HMAC does not match the value.
    #[error("the oa_signature of key id {0:?} does not match the record value")]
    Mismatch(String),
}

/// The configured signing keys (key id -> secret). `Debug` shows the ids only.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys {
    keys: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("key_ids", &self.ids())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SigningKeys {
    /// Reads `KAFKA_ESB_SIGNING_KEYS`: `id1:secret1,id2:secret2`. A key id is 1 to 64 of
    /// `[A-Za-z0-9._-]`; a secret is everything after the first `:` up to the next `,`
    /// (surrounding spaces removed), at least [`MIN_SECRET_LEN`] bytes. Returns every problem,
    /// one line each, naming the entry by position and key id, never by secret.
    pub fn parse(value: &str) -> Result<SigningKeys, Vec<String>> {
        const VAR: &str = "KAFKA_ESB_SIGNING_KEYS";
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        for (index, entry) in value.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                problems.push(format!(
                    "{VAR}: entry {position} is empty (expected <key id>:<secret>, entries separated by ',')"
                ));
                continue;
            }
            let Some((id, secret)) = entry.split_once(':') else {
                problems.push(format!(
                    "{VAR}: entry {position} has no ':' (expected <key id>:<secret>)"
                ));
                continue;
            };
            let (id, secret) = (id.trim(), secret.trim());
            if !valid_key_id(id) {
                problems.push(format!(
                    "{VAR}: entry {position} has an invalid key id {id:?} (1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-')"
                ));
                continue;
            }
            if secret.len() < MIN_SECRET_LEN {
                problems.push(format!(
                    "{VAR}: the secret of key id {id:?} has {} bytes; at least {MIN_SECRET_LEN} are required (for example `openssl rand -hex 32`)",
                    secret.len()
                ));
                continue;
            }
            if keys
                .insert(id.to_string(), secret.as_bytes().to_vec())
                .is_some()
            {
                problems.push(format!("{VAR}: key id {id:?} is given more than once"));
            }
        }
        if problems.is_empty() {
            Ok(SigningKeys { keys })
        } else {
            Err(problems)
        }
    }

    /// The configured key ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Checks the `oa_signature` header (`None` when absent) against `value`; returns the key
    /// id that signed it. The HMAC is compared in constant time.
    pub fn verify(&self, header: Option<&[u8]>, value: &[u8]) -> Result<String, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let header = std::str::from_utf8(header)
            .map_err(|_| SignatureError::Malformed("not UTF-8".to_string()))?;
        let Some((id, digest)) = header.trim().split_once(':') else {
            return Err(SignatureError::Malformed(
                "expected <key id>:<64 hex digits>, found no ':'".to_string(),
            ));
        };
        if !valid_key_id(id) {
            return Err(SignatureError::Malformed(format!(
                "the key id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-'"
            )));
        }
        let digest = match hex::decode(digest) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                return Err(SignatureError::Malformed(format!(
                    "after key id {id:?} expected 64 hex digits (HMAC-SHA256)"
                )));
            }
        };
        let secret = self
            .keys
            .get(id)
            .ok_or_else(|| SignatureError::UnknownKey(id.to_string()))?;
        mac(secret, value)
            .verify_slice(&digest)
            .map_err(|_| SignatureError::Mismatch(id.to_string()))?;
        Ok(id.to_string())
    }
}

/// How the consumer authenticates commands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EsbAuth {
    /// Neither keys nor the trust flag: the consumer does not start.
    #[default]
    Disabled,
    /// Every command must be signed with one of these keys and carry a fresh `timestamp`.
    Signed(SigningKeys),
    /// `KAFKA_ESB_TRUST_UNSIGNED=true`: commands are not authenticated (anyone who can write
    /// to the topic can trade for every user who allowed ESB control).
    TrustUnsigned,
}

/// The ESB consumer's security settings (`KAFKA_ESB_SIGNING_KEYS`,
/// `KAFKA_ESB_TRUST_UNSIGNED`, `KAFKA_ESB_MAX_AGE_SECONDS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsbSecurity {
    /// How commands are authenticated.
    pub auth: EsbAuth,
    /// Oldest accepted command `timestamp`, relative to oa's clock.
    pub max_age: Duration,
}

impl Default for EsbSecurity {
    fn default() -> Self {
        EsbSecurity {
            auth: EsbAuth::Disabled,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Why a command was refused before it reached the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Signature missing, malformed, of an unknown key, or wrong.
    Unauthenticated(SignatureError),
    /// The `timestamp` is missing or unreadable while commands are signed.
    Invalid(String),
    /// The `timestamp` is older than the maximum age, or too far in the future.
    Expired(String),
}

impl EsbSecurity {
    /// Commands signed with `keys`, at most `max_age` old.
    pub fn signed(keys: SigningKeys, max_age: Duration) -> Self {
        EsbSecurity {
            auth: EsbAuth::Signed(keys),
            max_age,
        }
    }

    /// Unsigned commands accepted (`KAFKA_ESB_TRUST_UNSIGNED=true`).
    pub fn trust_unsigned() -> Self {
        EsbSecurity {
            auth: EsbAuth::TrustUnsigned,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Reads the settings through `lookup` (variable -> value; unset or empty = default).
    /// Returns every problem, one line each; secrets never appear in them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut problems = Vec::new();
        let keys = match get("KAFKA_ESB_SIGNING_KEYS") {
            None => None,
            Some(value) => match SigningKeys::parse(&value) {
                Ok(keys) => Some(keys),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            },
        };
        let trust = match get("KAFKA_ESB_TRUST_UNSIGNED") {
            None => false,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    problems.push(format!(
                        "KAFKA_ESB_TRUST_UNSIGNED={value:?} is not valid: expected true or false"
                    ));
                    false
                }
            },
        };
        let max_age = match get("KAFKA_ESB_MAX_AGE_SECONDS") {
            None => DEFAULT_MAX_AGE,
            Some(value) => match value.trim().parse::<u64>() {
                Ok(seconds) if (1..=MAX_MAX_AGE.as_secs()).contains(&seconds) => {
                    Duration::from_secs(seconds)
                }
                _ => {
                    problems.push(format!(
                        "KAFKA_ESB_MAX_AGE_SECONDS={value:?} is not valid: expected whole seconds from 1 to {}",
                        MAX_MAX_AGE.as_secs()
                    ));
                    DEFAULT_MAX_AGE
                }
            },
        };
        let has_keys = keys.is_some() || get("KAFKA_ESB_SIGNING_KEYS").is_some();
        if trust && has_keys {
            problems.push(
                "KAFKA_ESB_TRUST_UNSIGNED=true and KAFKA_ESB_SIGNING_KEYS are both set: choose one (with keys, every command must be signed)".to_string(),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let auth = match (keys, trust) {
            (Some(keys), _) => EsbAuth::Signed(keys),
            (None, true) => EsbAuth::TrustUnsigned,
            (None, false) => EsbAuth::Disabled,
        };
        Ok(EsbSecurity { auth, max_age })
    }

    /// True when the consumer may run (keys configured, or unsigned commands trusted).
    pub fn enabled(&self) -> bool {
        !matches!(self.auth, EsbAuth::Disabled)
    }

    /// Why the consumer does not run, when it does not.
    pub fn disabled_reason(&self) -> Option<&'static str> {
        matches!(self.auth, EsbAuth::Disabled).then_some(
            "no KAFKA_ESB_SIGNING_KEYS configured and KAFKA_ESB_TRUST_UNSIGNED is not true: ESB commands are not consumed (docs/esb.md, Authentication)",
        )
    }

    /// The name of the authentication in force, for `/health` and logs.
    pub fn mode_name(&self) -> &'static str {
        match self.auth {
            EsbAuth::Disabled => "disabled",
            EsbAuth::Signed(_) => "hmac-sha256",
            EsbAuth::TrustUnsigned => "trust-unsigned",
        }
    }

    /// The configured key ids (empty unless signed).
    pub fn key_ids(&self) -> Vec<&str> {
        match &self.auth {
            EsbAuth::Signed(keys) => keys.ids(),
            _ => Vec::new(),
        }
    }

    /// Checks a record's signature header against its value. Returns the signing key id
    /// (`None` when unsigned commands are trusted).
    pub fn authenticate(
        &self,
        header: Option<&[u8]>,
        value: &[u8],
    ) -> Result<Option<String>, Refusal> {
        match &self.auth {
            EsbAuth::Signed(keys) => keys
                .verify(header, value)
                .map(Some)
                .map_err(Refusal::Unauthenticated),
            EsbAuth::TrustUnsigned => Ok(None),
            EsbAuth::Disabled => Err(Refusal::Unauthenticated(SignatureError::UnknownKey(
                String::new(),
            ))),
        }
    }

    /// Checks a command's `timestamp` at `now`. Signed commands must have one (RFC 3339);
    /// unsigned ones (trust mode) are checked only when they have one.
    pub fn check_freshness(
        &self,
        timestamp: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let required = matches!(self.auth, EsbAuth::Signed(_));
        let Some(text) = timestamp else {
            return if required {
                Err(Refusal::Invalid(
                    "\"timestamp\" is required in signed commands (RFC 3339, e.g. 2026-01-29T10:30:45.123456Z)".to_string(),
                ))
            } else {
                Ok(())
            };
        };
        let at = match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(at) => at.with_timezone(&Utc),
            Err(_) if !required => return Ok(()),
            Err(error) => {
                return Err(Refusal::Invalid(format!(
                    "\"timestamp\" {text:?} is not RFC 3339 ({error}); e.g. 2026-01-29T10:30:45.123456Z"
                )));
            }
        };
        let age = now.signed_duration_since(at);
        let max_age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        let skew = chrono::Duration::from_std(MAX_FUTURE_SKEW).unwrap_or(chrono::Duration::MAX);
        if age > max_age {
            return Err(Refusal::Expired(format!(
                "the command's timestamp {text} is {} s old; KAFKA_ESB_MAX_AGE_SECONDS allows {}",
                age.num_seconds(),
                self.max_age.as_secs()
            )));
        }
        if -age > skew {
            return Err(Refusal::Expired(format!(
                "the command's timestamp {text} is {} s in the future; at most {} s are allowed",
                (-age).num_seconds(),
                MAX_FUTURE_SKEW.as_secs()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_A: &str = "0123456789abcdef0123456789abcdef";
    const SECRET_B: &str = "fedcba9876543210fedcba9876543210fedcba98";

    fn keys() -> SigningKeys {
        SigningKeys::parse(&format!("a:{SECRET_A}, b : {SECRET_B}")).unwrap()
    }

    #[test]
    fn signs_like_the_rfc_4231_test_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("k", b"Jefe", b"what do ya want for nothing?"),
            "k:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_every_configured_key() {
        let keys = keys();
        assert_eq!(keys.ids(), ["a", "b"]);
        let value = br#"{"id":"1"}"#;
        let by_a = sign("a", SECRET_A.as_bytes(), value);
        let by_b = sign("b", SECRET_B.as_bytes(), value);
        assert_eq!(keys.verify(Some(by_a.as_bytes()), value).unwrap(), "a");
        assert_eq!(keys.verify(Some(by_b.as_bytes()), value).unwrap(), "b");
        // Upper-case hex is read too.
        let upper = format!("a:{}", by_a[2..].to_ascii_uppercase());
        assert_eq!(keys.verify(Some(upper.as_bytes()), value).unwrap(), "a");
    }

    #[test]
    fn refuses_missing_malformed_unknown_and_wrong_signatures() {
        let keys = keys();
        let value = br#"{"id":"1"}"#;
        let good = sign("a", SECRET_A.as_bytes(), value);
        assert_eq!(keys.verify(None, value), Err(SignatureError::Missing));
        for (header, expected) in [
            (b"".as_slice(), "no ':'"),
            (b"nocolon", "no ':'"),
            (b":abcd", "key id"),
            (b"a:", "64 hex digits"),
            (b"a:zz", "64 hex digits"),
            (b"a:abc", "64 hex digits"),
            (&[0xff, 0xfe], "UTF-8"),
        ] {
            match keys.verify(Some(header), value) {
                Err(SignatureError::Malformed(reason)) => {
                    assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
                }
                other => panic!("{header:?}: {other:?}"),
            }
        }
        let too_short = &good[..good.len() - 2];
        assert!(matches!(
            keys.verify(Some(too_short.as_bytes()), value),
            Err(SignatureError::Malformed(_))
        ));
        let unknown = sign("c", SECRET_A.as_bytes(), value);
        assert_eq!(
            keys.verify(Some(unknown.as_bytes()), value),
            Err(SignatureError::UnknownKey("c".into()))
        );
        // Right key id, signed with another secret; and a value changed after signing.
        let forged = sign("a", SECRET_B.as_bytes(), value);
        assert_eq!(
            keys.verify(Some(forged.as_bytes()), value),
            Err(SignatureError::Mismatch("a".into()))
        );
        assert_eq!(
            keys.verify(Some(good.as_bytes()), br#"{"id":"2"}"#),
            Err(SignatureError::Mismatch("a".into()))
        );
    }

    #[test]
    fn key_list_problems_are_one_line_each_and_never_show_secrets() {
        let problems = SigningKeys::parse(&format!(
            "a:short,,noseparator,bad id:{SECRET_A},b:{SECRET_B},b:{SECRET_B}"
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("\"a\"") && problems[0].contains("at least 32"));
        assert!(problems[1].contains("entry 2 is empty"));
        assert!(problems[2].contains("entry 3 has no ':'"));
        assert!(problems[3].contains("invalid key id"));
        assert!(problems[4].contains("more than once"));
        for problem in &problems {
            assert!(problem.starts_with("KAFKA_ESB_SIGNING_KEYS"), "{problem}");
            assert!(!problem.contains("short") || problem.contains("\"a\""));
            assert!(!problem.contains(SECRET_A) && !problem.contains(SECRET_B));
            assert!(!problem.contains("noseparator"), "{problem}");
        }
        let debug = format!("{:?}", keys());
        assert!(
            !debug.contains(SECRET_A) && !debug.contains(SECRET_B),
            "{debug}"
        );
        assert!(debug.contains("redacted"));
    }

    fn lookup(vars: &[(&str, &str)]) -> Result<EsbSecurity, Vec<String>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EsbSecurity::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn settings_choose_signed_trusted_or_disabled() {
        let none = lookup(&[]).unwrap();
        assert!(!none.enabled());
        assert!(
            none.disabled_reason()
                .unwrap()
                .contains("KAFKA_ESB_SIGNING_KEYS")
        );
        assert_eq!(none.max_age, DEFAULT_MAX_AGE);
        let trusted = lookup(&[("KAFKA_ESB_TRUST_UNSIGNED", "true")]).unwrap();
        assert_eq!(trusted.auth, EsbAuth::TrustUnsigned);
        assert_eq!(trusted.authenticate(None, b"x"), Ok(None));
        let signed = lookup(&[
            ("KAFKA_ESB_SIGNING_KEYS", &format!("a:{SECRET_A}")),
            ("KAFKA_ESB_MAX_AGE_SECONDS", "60"),
        ])
        .unwrap();
        assert_eq!(signed.key_ids(), ["a"]);
        assert_eq!(signed.max_age, Duration::from_secs(60));
        assert!(matches!(
            signed.authenticate(None, b"x"),
            Err(Refusal::Unauthenticated(SignatureError::Missing))
        ));
        let problems = lookup(&[
            ("KAFKA_ESB_SIGNING_KEYS", &format!("a:{SECRET_A}")),
            ("KAFKA_ESB_TRUST_UNSIGNED", "yes please"),
            ("KAFKA_ESB_MAX_AGE_SECONDS", "0"),
        ])
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("KAFKA_ESB_TRUST_UNSIGNED"));
        assert!(problems[1].contains("KAFKA_ESB_MAX_AGE_SECONDS"));
        let both = lookup(&[
            ("KAFKA_ESB_SIGNING_KEYS", &format!("a:{SECRET_A}")),
            ("KAFKA_ESB_TRUST_UNSIGNED", "true"),
        ])
        .unwrap_err();
        assert!(both[0].contains("choose one"), "{both:?}");
    }

    #[test]
    fn signed_commands_need_a_fresh_timestamp() {
        let signed = EsbSecurity::signed(keys(), Duration::from_secs(300));
        let now = DateTime::parse_from_rfc3339("2026-01-29T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            signed.check_freshness(Some("2026-01-29T10:26:00.5Z"), now),
            Ok(())
        );
        assert_eq!(
            signed.check_freshness(Some("2026-01-29T16:00:30+05:30"), now),
            Ok(())
        );
        let Err(Refusal::Expired(reason)) =
            signed.check_freshness(Some("2026-01-29T10:24:59Z"), now)
        else {
            panic!("a 301 s old command must expire");
        };
        assert!(reason.contains("301 s old"), "{reason}");
        let Err(Refusal::Expired(reason)) =
            signed.check_freshness(Some("2026-01-29T10:31:01Z"), now)
        else {
            panic!("a command from the future must be refused");
        };
        assert!(reason.contains("in the future"), "{reason}");
        assert!(matches!(
            signed.check_freshness(None, now),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            signed.check_freshness(Some("yesterday"), now),
            Err(Refusal::Invalid(_))
        ));
        // Trusted unsigned commands: optional, checked when readable.
        let trusted = EsbSecurity::trust_unsigned();
        assert_eq!(trusted.check_freshness(None, now), Ok(()));
        assert_eq!(trusted.check_freshness(Some("t"), now), Ok(()));
        assert!(matches!(
            trusted.check_freshness(Some("2020-01-01T00:00:00Z"), now),
            Err(Refusal::Expired(_))
        ));
    }
}
