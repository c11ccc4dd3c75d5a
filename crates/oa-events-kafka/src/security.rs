//! Transport security of every Kafka connection oa opens: TLS (rustls, ring) and SASL
//! (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), configured with the librdkafka / Java client names
//! as environment variables (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`).
//!
//! [`client_builder`] is the one place an rskafka [`ClientBuilder`] is made: every producer,
//! consumer, topic check and tool goes through it, so none can forget the security settings.
//! [`explain_refusal`] turns rskafka's nested connection errors into one line that names the
//! cause (a refused login, an unknown certificate authority) for logs and `/health`.
//!
//! The default trust store is the operating system's (rustls-native-certs): a cluster whose
//! certificate a company CA signed works once that CA is installed system-wide, exactly as for
//! librdkafka, kcat and the Java client; a lab cluster's own CA goes in
//! `KAFKA_SSL_CA_LOCATION`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use oa_events_core::EnvVar;

use crate::error::ConfigError;

oa_events_core::spelled_enum! {
    /// `KAFKA_SECURITY_PROTOCOL`: how connections to the brokers are made.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum SecurityProtocol {
        /// `PLAINTEXT`: no encryption, no login (the default; local and trusted networks only).
        #[default]
        Plaintext = "PLAINTEXT",
        /// `SSL`: TLS, optionally with a client certificate (mutual TLS).
        Ssl = "SSL",
        /// `SASL_PLAINTEXT`: a SASL login over an unencrypted connection.
        SaslPlaintext = "SASL_PLAINTEXT",
        /// `SASL_SSL`: a SASL login over TLS (Confluent Cloud, MSK, Aiven, ...).
        SaslSsl = "SASL_SSL",
    }
}

impl SecurityProtocol {
    /// True for `SSL` and `SASL_SSL`.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// True for `SASL_PLAINTEXT` and `SASL_SSL`.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        SecurityProtocol::from_spelling(value)
            .ok_or_else(|| format!("allowed values: {}", SecurityProtocol::ALLOWED))
    }
}

oa_events_core::spelled_enum! {
    /// `KAFKA_SASL_MECHANISM`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SaslMechanism {
        /// `PLAIN`: the password travels as is (use it over TLS only).
        Plain = "PLAIN",
        /// `SCRAM-SHA-256`.
        ScramSha256 = "SCRAM-SHA-256",
        /// `SCRAM-SHA-512`.
        ScramSha512 = "SCRAM-SHA-512",
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    /// Also accepts `_` for `-` (`SCRAM_SHA_256`), as some clients spell it.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        SaslMechanism::from_spelling(&value.replace('_', "-"))
            .ok_or_else(|| format!("allowed values: {}", SaslMechanism::ALLOWED))
    }
}

/// A secret setting (`KAFKA_SASL_PASSWORD`): never shown by `Debug`, has no `Display`, so it
/// cannot end up in a log line, an error message or `/health` by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A SASL login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslLogin {
    /// `KAFKA_SASL_MECHANISM`.
    pub mechanism: SaslMechanism,
    /// `KAFKA_SASL_USERNAME`.
    pub username: String,
    /// `KAFKA_SASL_PASSWORD`.
    pub password: Secret,
}

/// `KAFKA_SSL_ENDPOINT_IDENTIFICATION`: whether the broker certificate must name the host
/// oa connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointIdentification {
    /// `https` (the default): the certificate must be valid for the broker's host name or IP.
    #[default]
    Https,
    /// `none`: the chain is still verified against the CA, the host name is not (self-signed
    /// lab clusters whose certificates do not name the address clients use).
    None,
}

impl EndpointIdentification {
    /// Every accepted spelling, for error messages.
    pub const ALLOWED: &'static str = "https, none";
}

impl FromStr for EndpointIdentification {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "https" => Ok(EndpointIdentification::Https),
            "none" => Ok(EndpointIdentification::None),
            _ => Err(format!(
                "allowed values: {}",
                EndpointIdentification::ALLOWED
            )),
        }
    }
}

/// TLS settings, with the rustls client configuration built from them once, at start-up.
#[derive(Clone)]
pub struct TlsSettings {
    /// `KAFKA_SSL_CA_LOCATION`: PEM file of the CA certificates to trust; `None` = the
    /// operating system's trust store.
    pub ca_location: Option<PathBuf>,
    /// `KAFKA_SSL_CERTIFICATE_LOCATION` and `KAFKA_SSL_KEY_LOCATION`: the client certificate
    /// chain and its private key (PEM), for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// `KAFKA_SSL_ENDPOINT_IDENTIFICATION`.
    pub endpoint_identification: EndpointIdentification,
    client_config: Arc<rustls::ClientConfig>,
}

impl TlsSettings {
    /// Reads the PEM files and builds the rustls configuration; each problem names its
    /// variable.
    pub fn new(
        ca_location: Option<PathBuf>,
        client_identity: Option<(PathBuf, PathBuf)>,
        endpoint_identification: EndpointIdentification,
    ) -> Result<TlsSettings, Vec<ConfigError>> {
        let mut problems = Vec::new();
        let roots = match &ca_location {
            Some(path) => read_ca_file(path),
            None => system_roots(),
        }
        .map_err(|problem| problems.push(problem))
        .ok();
        let identity = client_identity.as_ref().and_then(|(certificate, key)| {
            let chain = read_certificates(certificate, "KAFKA_SSL_CERTIFICATE_LOCATION")
                .map_err(|problem| problems.push(problem))
                .ok();
            let key = read_private_key(key)
                .map_err(|problem| problems.push(problem))
                .ok();
            Some((chain?, key?))
        });
        let Some(roots) = roots else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        match build_client_config(roots, identity, endpoint_identification) {
            Ok(client_config) => Ok(TlsSettings {
                ca_location,
                client_identity,
                endpoint_identification,
                client_config: Arc::new(client_config),
            }),
            Err(problem) => Err(vec![problem]),
        }
    }

    /// The rustls configuration every connection uses.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.client_config)
    }
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.ca_location == other.ca_location
            && self.client_identity == other.client_identity
            && self.endpoint_identification == other.endpoint_identification
    }
}

impl Eq for TlsSettings {}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca_location", &self.ca_location)
            .field("client_identity", &self.client_identity)
            .field("endpoint_identification", &self.endpoint_identification)
            .finish_non_exhaustive()
    }
}

/// Every transport-security setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityConfig {
    /// `KAFKA_SECURITY_PROTOCOL`.
    pub protocol: SecurityProtocol,
    /// The login, present exactly when the protocol uses SASL.
    pub sasl: Option<SaslLogin>,
    /// The TLS settings, present exactly when the protocol uses TLS.
    pub tls: Option<TlsSettings>,
}

/// The security variables [`SecurityConfig::from_lookup`] reads, with their defaults and help
/// (librdkafka's names).
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::new(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
    ),
    EnvVar::new(
        "KAFKA_SASL_MECHANISM",
        "",
        "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (required with SASL_*)",
    ),
    EnvVar::new(
        "KAFKA_SASL_USERNAME",
        "",
        "SASL user name (required with SASL_*)",
    ),
    EnvVar::secret(
        "KAFKA_SASL_PASSWORD",
        "SASL password (required with SASL_*; never logged; prefer the environment to the flag)",
    ),
    EnvVar::new(
        "KAFKA_SSL_CA_LOCATION",
        "",
        "PEM file of the CA certificates to trust with SSL/SASL_SSL (unset: the system's trust store)",
    ),
    EnvVar::new(
        "KAFKA_SSL_CERTIFICATE_LOCATION",
        "",
        "PEM client certificate (chain) for mutual TLS; needs KAFKA_SSL_KEY_LOCATION",
    ),
    EnvVar::new(
        "KAFKA_SSL_KEY_LOCATION",
        "",
        "PEM private key (unencrypted) of the client certificate; needs KAFKA_SSL_CERTIFICATE_LOCATION",
    ),
    // Unset by default: it is refused without TLS; with TLS, unset means https.
    EnvVar::new(
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
        "",
        "with SSL/SASL_SSL, check that the broker certificate names the broker host: https (when unset) or none",
    ),
];

fn problem(variable: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(variable, value, reason.into())
}

impl SecurityConfig {
    /// Reads the security variables through `lookup` (unset or empty = not given) and checks
    /// them together. Returns every problem, one per variable and cause: a mechanism or login
    /// with a protocol that does not use SASL, a SASL protocol without mechanism, user name or
    /// password, TLS files with a protocol that does not use TLS, a key without a certificate
    /// (or the reverse), and unreadable or invalid PEM files. The password never appears in
    /// a message.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SecurityConfig, Vec<ConfigError>> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut problems = Vec::new();

        let protocol = match get("KAFKA_SECURITY_PROTOCOL") {
            None => SecurityProtocol::Plaintext,
            Some(value) => match value.parse() {
                Ok(protocol) => protocol,
                Err(reason) => {
                    problems.push(problem("KAFKA_SECURITY_PROTOCOL", &value, reason));
                    // Judge the rest as the most demanding protocol would not: stop here.
                    return Err(problems);
                }
            },
        };

        let mechanism = get("KAFKA_SASL_MECHANISM");
        let username = get("KAFKA_SASL_USERNAME");
        // Only the presence of the password is ever reported, never its value.
        let password = lookup("KAFKA_SASL_PASSWORD").filter(|value| !value.is_empty());
        let sasl = if protocol.uses_sasl() {
            let mechanism = match &mechanism {
                None => {
                    problems.push(problem(
                        "KAFKA_SASL_MECHANISM",
                        "",
                        format!(
                            "required with KAFKA_SECURITY_PROTOCOL={protocol}; allowed values: {}",
                            SaslMechanism::ALLOWED
                        ),
                    ));
                    None
                }
                Some(value) => value
                    .parse::<SaslMechanism>()
                    .map_err(|reason| problems.push(problem("KAFKA_SASL_MECHANISM", value, reason)))
                    .ok(),
            };
            if username.is_none() {
                problems.push(problem(
                    "KAFKA_SASL_USERNAME",
                    "",
                    format!("required with KAFKA_SECURITY_PROTOCOL={protocol}"),
                ));
            }
            if password.is_none() {
                problems.push(problem(
                    "KAFKA_SASL_PASSWORD",
                    "",
                    format!("required with KAFKA_SECURITY_PROTOCOL={protocol}"),
                ));
            }
            match (mechanism, &username, password) {
                (Some(mechanism), Some(username), Some(password)) => Some(SaslLogin {
                    mechanism,
                    username: username.trim().to_string(),
                    password: Secret(password),
                }),
                _ => None,
            }
        } else {
            let needs_sasl = format!(
                "only used with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL (it is {protocol})"
            );
            if let Some(value) = &mechanism {
                problems.push(problem("KAFKA_SASL_MECHANISM", value, needs_sasl.clone()));
            }
            if let Some(value) = &username {
                problems.push(problem("KAFKA_SASL_USERNAME", value, needs_sasl.clone()));
            }
            if password.is_some() {
                problems.push(problem("KAFKA_SASL_PASSWORD", "<redacted>", needs_sasl));
            }
            None
        };

        let ca = get("KAFKA_SSL_CA_LOCATION");
        let certificate = get("KAFKA_SSL_CERTIFICATE_LOCATION");
        let key = get("KAFKA_SSL_KEY_LOCATION");
        let endpoint = get("KAFKA_SSL_ENDPOINT_IDENTIFICATION");
        let tls = if protocol.uses_tls() {
            let endpoint_identification = match &endpoint {
                None => Some(EndpointIdentification::Https),
                Some(value) => value
                    .parse()
                    .map_err(|reason| {
                        problems.push(problem("KAFKA_SSL_ENDPOINT_IDENTIFICATION", value, reason))
                    })
                    .ok(),
            };
            let identity = match (&certificate, &key) {
                (Some(certificate), Some(key)) => Some(Some((
                    PathBuf::from(certificate.trim()),
                    PathBuf::from(key.trim()),
                ))),
                (None, None) => Some(None),
                (Some(certificate), None) => {
                    problems.push(problem(
                        "KAFKA_SSL_KEY_LOCATION",
                        "",
                        format!(
                            "required with KAFKA_SSL_CERTIFICATE_LOCATION={certificate:?}: a client certificate needs its private key"
                        ),
                    ));
                    None
                }
                (None, Some(key)) => {
                    problems.push(problem(
                        "KAFKA_SSL_CERTIFICATE_LOCATION",
                        "",
                        format!(
                            "required with KAFKA_SSL_KEY_LOCATION={key:?}: a private key needs its client certificate"
                        ),
                    ));
                    None
                }
            };
            match (identity, endpoint_identification) {
                (Some(identity), Some(endpoint_identification)) => match TlsSettings::new(
                    ca.map(|path| PathBuf::from(path.trim())),
                    identity,
                    endpoint_identification,
                ) {
                    Ok(settings) => Some(settings),
                    Err(found) => {
                        problems.extend(found);
                        None
                    }
                },
                _ => None,
            }
        } else {
            let needs_tls = format!(
                "only used with KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (it is {protocol})"
            );
            for (variable, value) in [
                ("KAFKA_SSL_CA_LOCATION", &ca),
                ("KAFKA_SSL_CERTIFICATE_LOCATION", &certificate),
                ("KAFKA_SSL_KEY_LOCATION", &key),
                ("KAFKA_SSL_ENDPOINT_IDENTIFICATION", &endpoint),
            ] {
                if let Some(value) = value {
                    problems.push(problem(variable, value, needs_tls.clone()));
                }
            }
            None
        };

        if problems.is_empty() {
            Ok(SecurityConfig {
                protocol,
                sasl,
                tls,
            })
        } else {
            Err(problems)
        }
    }

    /// One line for logs and `/health`: the protocol, the mechanism and user, the CA. Never
    /// the password.
    pub fn describe(&self) -> String {
        let mut text = self.protocol.to_string();
        if let Some(login) = &self.sasl {
            text.push_str(&format!(" ({} as {:?})", login.mechanism, login.username));
        }
        if let Some(tls) = &self.tls {
            match &tls.ca_location {
                Some(path) => text.push_str(&format!(", CA {}", path.display())),
                None => text.push_str(", system CAs"),
            }
            if tls.client_identity.is_some() {
                text.push_str(", client certificate");
            }
            if tls.endpoint_identification == EndpointIdentification::None {
                text.push_str(", host name not checked");
            }
        }
        text
    }

    /// Adds the TLS and SASL settings to an rskafka client builder.
    pub fn apply(&self, mut builder: ClientBuilder) -> ClientBuilder {
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.client_config());
        }
        if let Some(login) = &self.sasl {
            let credentials =
                Credentials::new(login.username.clone(), login.password.expose().to_string());
            builder = builder.sasl_config(match login.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        builder
    }
}

/// The rskafka client builder for `config`: bootstrap servers, client id and the TLS/SASL
/// settings. Every Kafka client of oa (producer, relay, ESB consumer, topic check, tools)
/// is built from it; callers add only their retry policy.
pub fn client_builder(config: &crate::KafkaConfig) -> ClientBuilder {
    let builder = ClientBuilder::new(config.bootstrap_servers.clone())
        .client_id(config.client_id.as_str())
        .max_message_size(MAX_RESPONSE_BYTES);
    config.security.apply(builder)
}

/// The largest response rskafka accepts (its own default, kept explicit).
const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

/// When `error` (the text of a failed connection) shows that the brokers refused the
/// security settings, one line naming the cause and the variable to look at; `None` for
/// other failures (an unreachable broker, a timeout).
pub fn explain_refusal(security: &SecurityConfig, error: &str) -> Option<String> {
    let tls_hint = || match security
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_location.as_ref())
    {
        Some(path) => format!("KAFKA_SSL_CA_LOCATION={}", path.display()),
        None => "the system trust store; set KAFKA_SSL_CA_LOCATION to the cluster's CA".to_string(),
    };
    if let Some((_, detail)) = error.split_once("invalid peer certificate: ") {
        let detail = detail.split(['"', ')']).next().unwrap_or("").trim();
        return Some(if detail.starts_with("UnknownIssuer") {
            format!(
                "TLS: certificate signed by unknown authority (trusted CAs: {})",
                tls_hint()
            )
        } else if detail.starts_with("NotValidForName")
            || detail.starts_with("certificate not valid for name")
        {
            format!(
                "TLS: the broker's certificate is not valid for the host oa connected to ({detail}); KAFKA_SSL_ENDPOINT_IDENTIFICATION=none skips this check for lab clusters"
            )
        } else if detail.starts_with("Expired") || detail.starts_with("certificate expired") {
            format!("TLS: the broker's certificate has expired ({detail})")
        } else {
            format!("TLS: the broker's certificate was refused: {detail}")
        });
    }
    if error.contains("received fatal alert") {
        let alert = error
            .split("received fatal alert: ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
            .unwrap_or("?");
        return Some(
            if security
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_identity.is_some())
            {
                format!(
                    "TLS: the broker refused the handshake ({alert}): it did not accept the client certificate in KAFKA_SSL_CERTIFICATE_LOCATION"
                )
            } else {
                format!(
                    "TLS: the broker refused the handshake ({alert}): it may require a client certificate (KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION)"
                )
            },
        );
    }
    if security.protocol.uses_tls()
        && (error.contains("InvalidContentType")
            || error.contains("corrupt message")
            || error.contains("InvalidMessage"))
    {
        return Some(format!(
            "TLS: the broker did not answer with TLS: does this listener use KAFKA_SECURITY_PROTOCOL={}?",
            if security.protocol.uses_sasl() {
                "SASL_PLAINTEXT"
            } else {
                "PLAINTEXT"
            }
        ));
    }
    if let Some(login) = &security.sasl {
        if error.contains("unsupported sasl mechanism") {
            return Some(format!(
                "SASL: the broker does not offer {} (KAFKA_SASL_MECHANISM)",
                login.mechanism
            ));
        }
        if error.contains("Sasl handshake failed") || error.contains("SaslAuthenticationFailed") {
            return Some(format!(
                "SASL authentication failed for user '{}' ({}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
                login.username, login.mechanism
            ));
        }
    }
    None
}

fn read_pem(path: &Path, variable: &'static str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| {
        problem(
            variable,
            &path.display().to_string(),
            format!("cannot read the file: {error}"),
        )
    })
}

fn read_certificates(
    path: &Path,
    variable: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_pem(path, variable)?;
    let shown = path.display().to_string();
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(variable, &shown, format!("not a valid PEM file: {error}")))?;
    if certificates.is_empty() {
        return Err(problem(
            variable,
            &shown,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    const VARIABLE: &str = "KAFKA_SSL_KEY_LOCATION";
    let pem = read_pem(path, VARIABLE)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        problem(
            VARIABLE,
            &path.display().to_string(),
            format!(
                "holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1, unencrypted): {error}"
            ),
        )
    })
}

fn read_ca_file(path: &Path) -> Result<RootCertStore, ConfigError> {
    const VARIABLE: &str = "KAFKA_SSL_CA_LOCATION";
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, VARIABLE)? {
        roots.add(certificate).map_err(|error| {
            problem(
                VARIABLE,
                &path.display().to_string(),
                format!("holds a certificate that is not a usable CA: {error}"),
            )
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(problem(
            "KAFKA_SSL_CA_LOCATION",
            "",
            format!(
                "not set, and the system trust store has no usable CA certificate ({}); set it to the cluster's CA file (PEM)",
                if errors.is_empty() {
                    "empty".to_string()
                } else {
                    errors.join("; ")
                }
            ),
        ));
    }
    Ok(roots)
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build_client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    endpoint_identification: EndpointIdentification,
) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| problem("KAFKA_SECURITY_PROTOCOL", "", error.to_string()))?;
    let builder = match endpoint_identification {
        EndpointIdentification::Https => builder.with_root_certificates(roots),
        EndpointIdentification::None => {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| problem("KAFKA_SSL_CA_LOCATION", "", error.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnlyVerifier(verifier)))
        }
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|error| {
            problem(
                "KAFKA_SSL_KEY_LOCATION",
                "",
                format!("does not fit the certificate in KAFKA_SSL_CERTIFICATE_LOCATION: {error}"),
            )
        }),
    }
}

/// `KAFKA_SSL_ENDPOINT_IDENTIFICATION=none`: the full webpki chain verification, except that
/// a certificate valid for another name is accepted.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KafkaConfig;
    use oa_e2e::pki::Pki;
    use std::collections::HashMap;

    fn security(vars: &[(&str, &str)]) -> Result<SecurityConfig, Vec<ConfigError>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SecurityConfig::from_lookup(|name| map.get(name).cloned())
    }

    /// The variables named by the problems, in order.
    fn named(problems: &[ConfigError]) -> Vec<&'static str> {
        problems.iter().map(|problem| problem.variable).collect()
    }

    fn pki() -> (tempfile::TempDir, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), "unit").unwrap();
        (dir, pki)
    }

    #[test]
    fn plaintext_is_the_default() {
        let config = security(&[]).unwrap();
        assert_eq!(config, SecurityConfig::default());
        assert_eq!(config.protocol, SecurityProtocol::Plaintext);
        assert!(config.sasl.is_none() && config.tls.is_none());
    }

    #[test]
    fn sasl_ssl_with_five_variables() {
        let (_dir, pki) = pki();
        let ca = pki.ca.display().to_string();
        let config = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "oa"),
            ("KAFKA_SASL_PASSWORD", "pw"),
            ("KAFKA_SSL_CA_LOCATION", &ca),
        ])
        .unwrap();
        assert_eq!(config.protocol, SecurityProtocol::SaslSsl);
        let login = config.sasl.as_ref().unwrap();
        assert_eq!(login.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(login.password.expose(), "pw");
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.endpoint_identification, EndpointIdentification::Https);
        assert_eq!(tls.ca_location.as_deref(), Some(pki.ca.as_path()));
        assert_eq!(
            config.describe(),
            format!("SASL_SSL (SCRAM-SHA-512 as \"oa\"), CA {ca}")
        );
    }

    #[test]
    fn mutual_tls_and_no_endpoint_identification() {
        let (_dir, pki) = pki();
        let (ca, cert, key) = (
            pki.ca.display().to_string(),
            pki.client_cert.display().to_string(),
            pki.client_key.display().to_string(),
        );
        let config = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", &ca),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &cert),
            ("KAFKA_SSL_KEY_LOCATION", &key),
            ("KAFKA_SSL_ENDPOINT_IDENTIFICATION", "none"),
        ])
        .unwrap();
        let tls = config.tls.unwrap();
        assert!(tls.client_identity.is_some());
        assert_eq!(tls.endpoint_identification, EndpointIdentification::None);
    }

    #[test]
    fn every_inconsistent_combination_is_one_problem_naming_its_variable() {
        let (_dir, pki) = pki();
        let (ca, cert, key) = (
            pki.ca.display().to_string(),
            pki.client_cert.display().to_string(),
            pki.client_key.display().to_string(),
        );
        let not_pem = pki.ca.with_file_name("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let not_pem = not_pem.display().to_string();
        let missing = "/nonexistent/oa-ca.pem";
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "TLS")],
                vec!["KAFKA_SECURITY_PROTOCOL"],
            ),
            // SASL settings without a SASL protocol.
            (
                vec![("KAFKA_SASL_MECHANISM", "PLAIN")],
                vec!["KAFKA_SASL_MECHANISM"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
                    ("KAFKA_SASL_USERNAME", "oa"),
                    ("KAFKA_SASL_PASSWORD", "pw"),
                ],
                vec![
                    "KAFKA_SASL_MECHANISM",
                    "KAFKA_SASL_USERNAME",
                    "KAFKA_SASL_PASSWORD",
                ],
            ),
            // A SASL protocol without its login.
            (
                vec![("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")],
                vec![
                    "KAFKA_SASL_MECHANISM",
                    "KAFKA_SASL_USERNAME",
                    "KAFKA_SASL_PASSWORD",
                ],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("KAFKA_SASL_MECHANISM", "GSSAPI"),
                    ("KAFKA_SASL_USERNAME", "oa"),
                    ("KAFKA_SASL_PASSWORD", "pw"),
                ],
                vec!["KAFKA_SASL_MECHANISM"],
            ),
            // TLS settings without a TLS protocol.
            (
                vec![("KAFKA_SSL_CA_LOCATION", &ca)],
                vec!["KAFKA_SSL_CA_LOCATION"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                    ("KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KAFKA_SASL_USERNAME", "oa"),
                    ("KAFKA_SASL_PASSWORD", "pw"),
                    ("KAFKA_SSL_ENDPOINT_IDENTIFICATION", "none"),
                ],
                vec!["KAFKA_SSL_ENDPOINT_IDENTIFICATION"],
            ),
            // A key without a certificate, and the reverse.
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", &ca),
                    ("KAFKA_SSL_KEY_LOCATION", &key),
                ],
                vec!["KAFKA_SSL_CERTIFICATE_LOCATION"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", &ca),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", &cert),
                ],
                vec!["KAFKA_SSL_KEY_LOCATION"],
            ),
            // Unreadable and invalid PEM files.
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", missing),
                ],
                vec!["KAFKA_SSL_CA_LOCATION"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", &not_pem),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", &not_pem),
                    ("KAFKA_SSL_KEY_LOCATION", &not_pem),
                ],
                vec![
                    "KAFKA_SSL_CA_LOCATION",
                    "KAFKA_SSL_CERTIFICATE_LOCATION",
                    "KAFKA_SSL_KEY_LOCATION",
                ],
            ),
            // A key that belongs to another certificate.
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", &ca),
                    ("KAFKA_SSL_CERTIFICATE_LOCATION", &cert),
                    ("KAFKA_SSL_KEY_LOCATION", pki.server_key.to_str().unwrap()),
                ],
                vec!["KAFKA_SSL_KEY_LOCATION"],
            ),
            (
                vec![
                    ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                    ("KAFKA_SSL_CA_LOCATION", &ca),
                    ("KAFKA_SSL_ENDPOINT_IDENTIFICATION", "sometimes"),
                ],
                vec!["KAFKA_SSL_ENDPOINT_IDENTIFICATION"],
            ),
        ];
        for (vars, expected) in cases {
            let problems = security(&vars).unwrap_err();
            assert_eq!(named(&problems), expected, "{vars:?} -> {problems:#?}");
            for problem in &problems {
                let line = problem.to_string();
                assert!(line.contains(problem.variable), "{line}");
                assert!(
                    !line.contains("\"pw\""),
                    "a message shows the password: {line}"
                );
            }
        }
    }

    #[test]
    fn kafka_config_reports_general_and_security_problems_together() {
        let map: HashMap<&str, &str> = [
            ("KAFKA_PRODUCER_COMPRESSION", "brotli"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ]
        .into_iter()
        .collect();
        let problems =
            KafkaConfig::from_lookup_all(|name| map.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(
            named(&problems),
            [
                "KAFKA_PRODUCER_COMPRESSION",
                "KAFKA_SASL_MECHANISM",
                "KAFKA_SASL_USERNAME",
                "KAFKA_SASL_PASSWORD"
            ]
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let map: HashMap<&str, &str> = [
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "oa"),
            ("KAFKA_SASL_PASSWORD", "correct-horse-battery"),
        ]
        .into_iter()
        .collect();
        let config = KafkaConfig::from_lookup(|name| map.get(name).map(|v| v.to_string())).unwrap();
        for text in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{:?}", config.security),
            config.security.describe(),
        ] {
            assert!(!text.contains("correct-horse-battery"), "{text}");
        }
        assert!(format!("{config:?}").contains("<redacted>"));
    }

    #[test]
    fn refusals_are_explained_by_name() {
        let map: HashMap<&str, &str> = [
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "oa"),
            ("KAFKA_SASL_PASSWORD", "pw"),
        ]
        .into_iter()
        .collect();
        let config =
            SecurityConfig::from_lookup(|name| map.get(name).map(|v| v.to_string())).unwrap();
        let sasl = "Connection error: all retries failed: Retry exceeded deadline. Source: Sasl handshake failed: API error: SaslAuthenticationFailed";
        assert_eq!(
            explain_refusal(&config, sasl).unwrap(),
            "SASL authentication failed for user 'oa' (SCRAM-SHA-512): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        );
        let tls = "error connecting to broker \"127.0.0.1:1\": IO Error: invalid peer certificate: UnknownIssuer";
        assert!(
            explain_refusal(&config, tls)
                .unwrap()
                .starts_with("TLS: certificate signed by unknown authority")
        );
        assert_eq!(
            explain_refusal(&config, "IO Error: Connection refused (os error 111)"),
            None
        );
    }
}
