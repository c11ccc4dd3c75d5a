//! Configuration: flags, environment variables and `.env`, validated as a whole.
//!
//! Every layer lists its variables (name, default, help) in one `ENV_VARS` table in its own
//! crate; [`ENV_VAR_TABLES`] gathers them and every entry becomes a flag, so `--help`, the
//! defaults and `.sample.env` (checked by a test) come from one place. Each setting is read as
//! text (so a bad value never dies inside clap with a message that hides the variable's name)
//! and then checked by [`RawConfig::validate`], which reports every bad variable at once, by
//! name, with what was expected.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use oa_api::ApiConfig;
use oa_events_core::{EnvVar, EventMode};
use oa_events_kafka::KafkaConfig;
use oa_events_socketio::SocketIoConfig;
use oa_marketdata_zmq::MarketDataConfig;

mod api;
mod kafka;
mod marketdata;
mod socketio;

/// The pepper used when `API_KEY_PEPPER` is not set: fine for a laptop, logged as a warning.
pub const DEVELOPMENT_PEPPER: &str = "oa-development-pepper-change-me-in-production-0001";
/// Minimum pepper length, as OpenAlgo requires.
pub const MIN_PEPPER_LEN: usize = 32;

/// The server's own variables: its listeners, the event pipeline, shutdown, logs.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::new(
        "OA_ROLE",
        "all",
        "what this process runs: all (one process, the default), core (REST, orders, Kafka relay, ESB; one leader among several, the others stand by) or edge (Socket.IO and the WebSocket proxy fed from the order-events topic); core and edge need a postgres:// DATABASE_URL and ORDER_EVENT_MODE=KAFKA",
    ),
    EnvVar::new(
        "FLASK_HOST_IP",
        "127.0.0.1",
        "address the HTTP server (REST, Socket.IO, /health, /metrics) listens on",
    ),
    EnvVar::new(
        "FLASK_PORT",
        "5000",
        "port of the HTTP server; 0 picks a free one",
    ),
    EnvVar::new(
        "ORDER_EVENT_MODE",
        "SOCKETIO",
        "where order events go: SOCKETIO, KAFKA or BOTH",
    ),
    EnvVar::new(
        "OA_EVENT_QUEUE_CAPACITY",
        "65536",
        "events each sink queues before dropping (Socket.IO drops the oldest)",
    ),
    EnvVar::new(
        "OA_EVENT_QUEUE_MAX_BYTES",
        "67108864",
        "bytes of events each sink queues before dropping, whatever their number",
    ),
    EnvVar::new(
        "OA_HTTP_MAX_CONNECTIONS",
        "4096",
        "open HTTP connections in total (REST, Socket.IO polling, /health); more get 503",
    ),
    EnvVar::new(
        "OA_HTTP_MAX_CONNECTIONS_PER_IP",
        "256",
        "open HTTP connections from one client IP; more get 503",
    ),
    EnvVar::new(
        "OA_HTTP_HEADER_TIMEOUT_SECONDS",
        "10",
        "seconds a client has to send a request head (also the wait for the next request)",
    ),
    EnvVar::new(
        "OA_HTTP_IDLE_TIMEOUT_SECONDS",
        "60",
        "seconds a kept-alive HTTP connection may stay idle before it is closed",
    ),
    EnvVar::new(
        "OA_SHUTDOWN_TIMEOUT_SECONDS",
        "10",
        "seconds shutdown may take in all (HTTP drain, order engine, market data, event sinks, Kafka relay); whatever still runs then is cut off and logged",
    ),
    EnvVar::new(
        "OA_OUTBOX_RETENTION_HOURS",
        "168",
        "hours delivered Kafka outbox rows are kept before they are pruned",
    ),
    EnvVar::new(
        "OA_OUTBOX_WARN_BACKLOG",
        "100000",
        "undelivered Kafka outbox rows above which a warning is logged",
    ),
    EnvVar::new(
        "OA_LOG_FORMAT",
        "text",
        "log format: text or json (filter with RUST_LOG)",
    ),
    EnvVar::new(
        "OA_READY_FILE",
        "",
        "when set, the server writes its bound addresses there as JSON once it is ready",
    ),
    EnvVar::new(
        "OA_DASHBOARD_WEBSOCKET_URL",
        "",
        "market-data WebSocket URL the dashboard page connects to (ws:// or wss://; behind a reverse proxy); unset: ws://<the page's host>:WEBSOCKET_PORT",
    ),
];

/// Every layer's variables, in the order `--help` lists them.
pub const ENV_VAR_TABLES: &[&[EnvVar]] = &[
    ENV_VARS,
    oa_api::ENV_VARS,
    oa_events_socketio::ENV_VARS,
    oa_marketdata_zmq::ENV_VARS,
    oa_events_kafka::config::ENV_VARS,
    oa_events_kafka::esb_auth::ENV_VARS,
    oa_events_kafka::security::ENV_VARS,
];

/// Variables whose library default is not the server's: `KAFKA_BOOTSTRAP_SERVERS` defaults to
/// localhost for a standalone consumer, but the server requires it in KAFKA and BOTH modes so
/// a forgotten setting never silently points at localhost.
const NO_SERVER_DEFAULT: &[&str] = &["KAFKA_BOOTSTRAP_SERVERS"];

/// Flags whose name is not the variable's (lower case, `-` for `_`, without `OA_`); kept as
/// they were when each was declared by hand.
const FLAG_NAMES: &[(&str, &str)] = &[
    ("FLASK_HOST_IP", "http-host"),
    ("FLASK_PORT", "http-port"),
    ("OA_SANDBOX_STARTING_FUNDS", "starting-funds"),
];

/// Every variable of every layer.
fn all_env_vars() -> impl Iterator<Item = &'static EnvVar> {
    ENV_VAR_TABLES.iter().flat_map(|table| table.iter())
}

/// The flag of the variable `name`: `OA_WS_MAX_QUEUE` is `--ws-max-queue`,
/// `OA_SOCKETIO_REPLAY_BUFFER` is `--replay-buffer`, `KAFKA_CLIENT_ID` is `--kafka-client-id`.
fn flag_name(name: &str) -> String {
    if let Some((_, flag)) = FLAG_NAMES.iter().find(|(var, _)| *var == name) {
        return (*flag).to_string();
    }
    let short = name
        .strip_prefix("OA_SOCKETIO_")
        .or_else(|| name.strip_prefix("OA_"))
        .unwrap_or(name);
    short.to_ascii_lowercase().replace('_', "-")
}

/// The clap argument of one variable: a flag, the environment variable, its default and help.
fn argument(var: &'static EnvVar) -> Arg {
    let mut arg = Arg::new(var.name)
        .long(flag_name(var.name))
        .env(var.name)
        .action(ArgAction::Set)
        .help(var.help)
        .hide_env_values(var.secret);
    if let Some(default) = var.default_value()
        && !NO_SERVER_DEFAULT.contains(&var.name)
    {
        arg = arg.default_value(default);
    }
    arg
}

/// Settings as given (flags > environment > `.env` > defaults), by variable name, not yet
/// validated. `.sample.env` documents each one.
#[derive(Clone, Default)]
pub struct RawConfig {
    values: BTreeMap<&'static str, String>,
}

impl RawConfig {
    /// The value of the variable `name` (given or its default); `None` when unset.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// The value of the variable `name`, or "" when unset.
    pub fn text(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |name: &str| all_env_vars().any(|var| var.name == name && var.secret);
        f.debug_map()
            .entries(self.values.iter().map(|(name, value)| {
                let shown = if secret(name) { "<redacted>" } else { value };
                (name, shown)
            }))
            .finish()
    }
}

impl Args for RawConfig {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        all_env_vars().fold(cmd, |cmd, var| cmd.arg(argument(var)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RawConfig {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = all_env_vars()
            .filter_map(|var| {
                let value = matches.try_get_one::<String>(var.name).ok().flatten()?;
                Some((var.name, value.clone()))
            })
            .collect();
        Ok(RawConfig { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// What one `oa-server` process runs (`OA_ROLE`, docs/scaling.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process (the default).
    All,
    /// REST, the order engine, the outbox relay and the ESB consumer; several may run on one
    /// PostgreSQL store, one leads (a PostgreSQL advisory lock) and the others stand by.
    Core,
    /// Socket.IO and the WebSocket market-data proxy, fed from the order-events topic.
    Edge,
}

impl Role {
    /// The `OA_ROLE` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Core => "core",
            Role::Edge => "edge",
        }
    }
}

/// Validated settings the server runs with.
// Layer settings are read as each layer is wired in.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Settings {
    /// `OA_ROLE`.
    pub role: Role,
    pub http_addr: SocketAddr,
    pub websocket_addr: SocketAddr,
    pub zmq_addr: SocketAddr,
    pub api_key_pepper: String,
    pub pepper_is_default: bool,
    pub database_url: String,
    pub event_mode: EventMode,
    pub kafka: Option<KafkaConfig>,
    /// ESB command authentication, in KAFKA and BOTH modes.
    pub esb: Option<oa_events_kafka::EsbSecurity>,
    pub outbox: crate::outbox::Maintenance,
    pub event_queue_capacity: usize,
    pub event_queue_max_bytes: usize,
    pub http: oa_net::ServeOptions,
    pub shutdown_timeout: Duration,
    pub ready_file: Option<String>,
    /// The market-data WebSocket URL the dashboard uses, when not the page's host and port.
    pub dashboard_websocket_url: Option<String>,
    pub api: ApiConfig,
    pub socketio: SocketIoConfig,
    pub marketdata: MarketDataConfig,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<String>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "oa-server: invalid configuration ({} problem(s)); see .sample.env:",
            self.0.len()
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Parses settings by variable name, collecting every problem.
struct Checker<'a> {
    raw: &'a RawConfig,
    problems: Vec<String>,
}

impl Checker<'_> {
    fn number<T: std::str::FromStr>(&mut self, var: &str, expected: &str) -> Option<T> {
        let value = self.raw.text(var);
        match value.trim().parse::<T>() {
            Ok(number) => Some(number),
            Err(_) => {
                self.problems
                    .push(format!("{var}={value:?} is not valid: expected {expected}"));
                None
            }
        }
    }

    fn address(&mut self, host_var: &str, port_var: &str) -> Option<SocketAddr> {
        let host = self.raw.text(host_var);
        let ip = match host.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) if host.trim() == "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
            Err(_) => {
                self.problems.push(format!(
                    "{host_var}={host:?} is not valid: expected an IP address such as 127.0.0.1 or 0.0.0.0"
                ));
                None
            }
        };
        let port = self.number::<u16>(port_var, "a port number from 0 to 65535");
        Some(SocketAddr::new(ip?, port?))
    }

    fn positive(&mut self, var: &str) -> Option<usize> {
        let number = self.number::<usize>(var, "a positive whole number")?;
        if number == 0 {
            self.problems.push(format!(
                "{var}=0 is not valid: expected a positive whole number"
            ));
            return None;
        }
        Some(number)
    }

    /// A listener's connection limits: `total_var` in all and `per_ip_var` per client IP
    /// (both checked, so both are named when bad).
    fn connection_limits(
        &mut self,
        total_var: &str,
        per_ip_var: &str,
    ) -> Option<oa_net::ConnectionLimits> {
        let max_total = self.positive(total_var);
        let max_per_ip = self.positive(per_ip_var);
        Some(oa_net::ConnectionLimits {
            max_total: max_total?,
            max_per_ip: max_per_ip?,
        })
    }

    fn seconds(&mut self, var: &str) -> Option<Duration> {
        self.positive(var)
            .map(|seconds| Duration::from_secs(seconds as u64))
    }

    fn boolean(&mut self, var: &str) -> Option<bool> {
        let value = self.raw.text(var);
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => {
                self.problems.push(format!(
                    "{var}={value:?} is not valid: expected true or false"
                ));
                None
            }
        }
    }

    /// An optional `ws://` or `wss://` URL (unset or empty: `None`).
    fn websocket_url(&mut self, var: &str) -> Option<String> {
        let value = self.raw.text(var);
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if (value.starts_with("ws://") || value.starts_with("wss://"))
            && !value.contains(char::is_whitespace)
        {
            Some(value.to_string())
        } else {
            self.problems.push(format!(
                "{var}={value:?} is not valid: expected a ws:// or wss:// URL such as wss://example.com/oa-ws"
            ));
            None
        }
    }

    fn one_of(&mut self, var: &str, allowed: &[&str]) -> Option<String> {
        let value = self.raw.text(var);
        let lower = value.trim().to_ascii_lowercase();
        if allowed.contains(&lower.as_str()) {
            Some(lower)
        } else {
            self.problems.push(format!(
                "{var}={value:?} is not valid; allowed values: {}",
                allowed.join(", ")
            ));
            None
        }
    }
}

/// Reads `OA_ROLE`; `core` and `edge` share state through PostgreSQL and Kafka only, so
/// they need both (one problem line for each one missing).
fn check_role(
    check: &mut Checker,
    database_url: &str,
    event_mode: Option<EventMode>,
) -> Option<Role> {
    let role = match check.one_of("OA_ROLE", &["all", "core", "edge"])?.as_str() {
        "core" => Role::Core,
        "edge" => Role::Edge,
        _ => Role::All,
    };
    if role == Role::All {
        return Some(role);
    }
    let name = role.as_str();
    let postgres = matches!(
        oa_api::parse_database_url(database_url),
        Ok(oa_api::StoreLocation::Postgres(_))
    );
    let mut fine = true;
    if !postgres {
        check.problems.push(format!(
            "OA_ROLE={name} needs DATABASE_URL=postgres://... (the store every core and edge shares), not {database_url:?}"
        ));
        fine = false;
    }
    if event_mode.is_some_and(|mode| mode != EventMode::Kafka) {
        check.problems.push(format!(
            "OA_ROLE={name} needs ORDER_EVENT_MODE=KAFKA (order events reach edges through the order-events topic), not {:?}",
            check.raw.text("ORDER_EVENT_MODE")
        ));
        fine = false;
    }
    fine.then_some(role)
}

impl RawConfig {
    /// Checks every setting and returns the validated [`Settings`], or every problem found.
    pub fn validate(&self) -> Result<Settings, ConfigProblems> {
        let mut check = Checker {
            raw: self,
            problems: Vec::new(),
        };
        let http_addr = check.address("FLASK_HOST_IP", "FLASK_PORT");
        let websocket_addr = check.address("WEBSOCKET_HOST", "WEBSOCKET_PORT");
        let zmq_addr = check.address("ZMQ_HOST", "ZMQ_PORT");

        let (api_key_pepper, pepper_is_default) = match self.get("API_KEY_PEPPER") {
            Some(pepper) if pepper.chars().count() < MIN_PEPPER_LEN => {
                check.problems.push(format!(
                    "API_KEY_PEPPER is too short ({} characters): it must have at least {MIN_PEPPER_LEN}",
                    pepper.chars().count()
                ));
                (String::new(), false)
            }
            Some(pepper) => (pepper, false),
            None => (DEVELOPMENT_PEPPER.to_string(), true),
        };
        let database_url = self.text("DATABASE_URL").to_string();

        let api = api::validate(&mut check, &database_url, &api_key_pepper);
        let marketdata = marketdata::validate(&mut check, websocket_addr, zmq_addr);
        let login_rate = oa_net::RateSpec::parse(self.text("OA_LOGIN_RATE_LIMIT")).ok();
        let socketio = socketio::validate(&mut check, login_rate);

        let event_mode = match self.text("ORDER_EVENT_MODE").parse::<EventMode>() {
            Ok(mode) => Some(mode),
            Err(error) => {
                check.problems.push(error.to_string());
                None
            }
        };
        let kafka = event_mode.and_then(|mode| kafka::validate(&mut check, mode));
        let esb = event_mode.and_then(|mode| kafka::validate_esb(&mut check, mode));

        let event_queue_capacity = check.positive("OA_EVENT_QUEUE_CAPACITY");
        let event_queue_max_bytes = check.positive("OA_EVENT_QUEUE_MAX_BYTES");
        let http_connections =
            check.connection_limits("OA_HTTP_MAX_CONNECTIONS", "OA_HTTP_MAX_CONNECTIONS_PER_IP");
        let http_header_timeout = check.seconds("OA_HTTP_HEADER_TIMEOUT_SECONDS");
        let http_idle_timeout = check.seconds("OA_HTTP_IDLE_TIMEOUT_SECONDS");
        let shutdown_timeout = check
            .number::<u64>("OA_SHUTDOWN_TIMEOUT_SECONDS", "whole seconds")
            .map(Duration::from_secs);
        check.one_of("OA_LOG_FORMAT", &["text", "json"]);
        let dashboard_websocket_url = check.websocket_url("OA_DASHBOARD_WEBSOCKET_URL");
        let outbox_retention = check
            .positive("OA_OUTBOX_RETENTION_HOURS")
            .map(|hours| Duration::from_secs(hours as u64 * 3600));
        let outbox_warn_backlog = check
            .positive("OA_OUTBOX_WARN_BACKLOG")
            .map(|rows| rows as u64);
        let role = check_role(&mut check, &database_url, event_mode);

        let (
            Some(role),
            Some(http_addr),
            Some(websocket_addr),
            Some(zmq_addr),
            Some(event_mode),
            Some(event_queue_capacity),
            Some(shutdown_timeout),
            Some(api),
            Some(socketio),
            Some(marketdata),
            Some(outbox_retention),
            Some(outbox_warn_backlog),
            Some(event_queue_max_bytes),
            Some(http_connections),
            Some(http_header_timeout),
            Some(http_idle_timeout),
            true,
        ) = (
            role,
            http_addr,
            websocket_addr,
            zmq_addr,
            event_mode,
            event_queue_capacity,
            shutdown_timeout,
            api,
            socketio,
            marketdata,
            outbox_retention,
            outbox_warn_backlog,
            event_queue_max_bytes,
            http_connections,
            http_header_timeout,
            http_idle_timeout,
            check.problems.is_empty(),
        )
        else {
            return Err(ConfigProblems(check.problems));
        };
        Ok(Settings {
            role,
            http_addr,
            websocket_addr,
            zmq_addr,
            api_key_pepper,
            pepper_is_default,
            database_url,
            event_mode,
            kafka,
            esb,
            outbox: crate::outbox::Maintenance {
                retention: outbox_retention,
                warn_backlog: outbox_warn_backlog,
                interval: Duration::from_secs(60),
            },
            event_queue_capacity,
            event_queue_max_bytes,
            http: oa_net::ServeOptions {
                listener: "http",
                connections: http_connections,
                header_timeout: http_header_timeout,
                idle_timeout: http_idle_timeout,
                drain_timeout: shutdown_timeout,
            },
            shutdown_timeout,
            ready_file: self.get("OA_READY_FILE"),
            dashboard_websocket_url,
            api,
            socketio,
            marketdata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        config: RawConfig,
    }

    fn parse(args: &[&str]) -> RawConfig {
        let mut argv = vec!["oa-server"];
        argv.extend_from_slice(args);
        Harness::try_parse_from(argv).unwrap().config
    }

    /// The start-up error `args` get, as printed.
    fn refusal(args: &[&str]) -> String {
        parse(args).validate().unwrap_err().to_string()
    }

    /// The variables of `.sample.env`: (name, value, commented out), in file order.
    fn sample_env() -> Vec<(String, String, bool)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.sample.env");
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .filter_map(|line| {
                let (line, commented) = match line.strip_prefix("# ") {
                    Some(rest) => (rest, true),
                    None => (line, false),
                };
                let (name, value) = line.split_once('=')?;
                let is_name = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                is_name.then(|| {
                    (
                        name.to_string(),
                        value.trim_matches('"').to_string(),
                        commented,
                    )
                })
            })
            .collect()
    }

    /// Read by a library, not by oa's settings: the log filter of `tracing`.
    const READ_ELSEWHERE: &[&str] = &["RUST_LOG"];

    #[test]
    fn the_sample_env_lists_every_table_entry_with_its_default() {
        let sample = sample_env();
        for var in all_env_vars() {
            let Some((_, value, commented)) = sample.iter().find(|(name, ..)| name == var.name)
            else {
                panic!("{} is in a table but not in .sample.env", var.name);
            };
            // A commented-out line shows the variable unset (its value, if any, an example).
            if !commented {
                assert_eq!(
                    value, var.default,
                    "{}: .sample.env and its ENV_VARS table disagree",
                    var.name
                );
            } else {
                assert!(
                    var.default.is_empty() || NO_SERVER_DEFAULT.contains(&var.name),
                    "{} has a default ({}) but .sample.env leaves it unset",
                    var.name,
                    var.default
                );
            }
        }
        for (name, ..) in &sample {
            assert!(
                all_env_vars().any(|var| var.name == name)
                    || READ_ELSEWHERE.contains(&name.as_str()),
                "{name} is in .sample.env but in no ENV_VARS table"
            );
        }
    }

    #[test]
    fn every_variable_has_one_flag_and_secrets_stay_hidden() {
        let command = <Harness as clap::CommandFactory>::command();
        command.clone().debug_assert();
        let mut names: Vec<&str> = all_env_vars().map(|var| var.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a variable is in two tables");
        for var in all_env_vars() {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == var.name)
                .unwrap_or_else(|| panic!("{} has no flag", var.name));
            assert_eq!(arg.get_long(), Some(flag_name(var.name).as_str()));
        }
        assert_eq!(flag_name("FLASK_PORT"), "http-port");
        assert_eq!(flag_name("OA_SOCKETIO_REPLAY_BUFFER"), "replay-buffer");
        assert_eq!(
            flag_name("KAFKA_ESB_MAX_AGE_SECONDS"),
            "kafka-esb-max-age-seconds"
        );
        let raw = parse(&[
            "--api-key-pepper",
            "hunter2-hunter2-hunter2-hunter2-hunter2",
            "--kafka-sasl-password",
            "hunter3",
            "--kafka-esb-signing-keys",
            "k1:a-secret-of-at-least-32-bytes-0000",
        ]);
        let debug = format!("{raw:?}");
        for secret in ["hunter2", "hunter3", "a-secret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn the_table_defaults_give_each_layer_its_library_defaults() {
        let settings = parse(&[]).validate().unwrap();
        assert_eq!(
            settings.api,
            ApiConfig {
                api_key_pepper: DEVELOPMENT_PEPPER.to_string(),
                ..ApiConfig::default()
            }
        );
        assert_eq!(settings.socketio, SocketIoConfig::default());
        assert_eq!(settings.marketdata, MarketDataConfig::default());
        let settings = parse(&[
            "--order-event-mode",
            "KAFKA",
            "--kafka-bootstrap-servers",
            oa_events_kafka::config::DEFAULT_BOOTSTRAP_SERVERS,
        ])
        .validate()
        .unwrap();
        assert_eq!(settings.kafka, Some(KafkaConfig::default()));
        assert_eq!(settings.esb, Some(oa_events_kafka::EsbSecurity::default()));
    }

    #[test]
    fn defaults_are_valid() {
        let settings = parse(&[]).validate().unwrap();
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:5000");
        assert_eq!(settings.websocket_addr.to_string(), "127.0.0.1:8765");
        assert_eq!(settings.zmq_addr.to_string(), "127.0.0.1:5555");
        assert_eq!(settings.event_mode, EventMode::SocketIo);
        assert!(settings.pepper_is_default);
        assert!(settings.kafka.is_none());
    }

    #[test]
    fn store_sync_defaults_to_full_and_names_the_variable_when_wrong() {
        let settings = parse(&[]).validate().unwrap();
        assert_eq!(settings.api.store_sync, oa_api::StoreSync::Full);
        let settings = parse(&["--store-sync", "NORMAL"]).validate().unwrap();
        assert_eq!(settings.api.store_sync, oa_api::StoreSync::Normal);
        let problems = parse(&["--store-sync", "off"]).validate().unwrap_err();
        assert_eq!(
            problems.0,
            ["OA_STORE_SYNC=\"off\" is not valid; allowed values: full, normal"]
        );
        let settings = parse(&["--shutdown-timeout-seconds", "3"])
            .validate()
            .unwrap();
        assert_eq!(settings.shutdown_timeout, Duration::from_secs(3));
    }

    #[test]
    fn the_dashboard_websocket_url_must_be_a_websocket_url() {
        let settings = parse(&["--dashboard-websocket-url", "wss://example.com/oa-ws"])
            .validate()
            .unwrap();
        assert_eq!(
            settings.dashboard_websocket_url.as_deref(),
            Some("wss://example.com/oa-ws")
        );
        assert_eq!(parse(&[]).validate().unwrap().dashboard_websocket_url, None);
        let problems = parse(&["--dashboard-websocket-url", "https://example.com/ws"])
            .validate()
            .unwrap_err();
        assert!(
            problems.to_string().contains("OA_DASHBOARD_WEBSOCKET_URL"),
            "{problems}"
        );
    }

    #[test]
    fn every_problem_is_reported_by_variable_name() {
        let problems = parse(&[
            "--order-event-mode",
            "bogus",
            "--http-port",
            "70000",
            "--api-key-pepper",
            "short",
            "--log-format",
            "xml",
        ])
        .validate()
        .unwrap_err();
        let text = problems.to_string();
        for needle in [
            "ORDER_EVENT_MODE",
            "SOCKETIO, KAFKA, BOTH",
            "FLASK_PORT",
            "API_KEY_PEPPER",
            "OA_LOG_FORMAT",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(problems.0.len(), 4, "{text}");
    }

    #[test]
    fn kafka_mode_requires_bootstrap_servers() {
        let text = refusal(&["--order-event-mode", "kafka"]);
        assert!(text.contains("KAFKA_BOOTSTRAP_SERVERS"), "{text}");
        let settings = parse(&[
            "--order-event-mode",
            "BOTH",
            "--kafka-bootstrap-servers",
            "127.0.0.1:9092, 127.0.0.1:9093",
        ])
        .validate()
        .unwrap();
        let kafka = settings.kafka.unwrap();
        assert_eq!(
            kafka.bootstrap_servers,
            ["127.0.0.1:9092", "127.0.0.1:9093"]
        );
        assert_eq!(kafka.order_events_topic, "from_openalgo_order_events");
        assert_eq!(kafka.compression.as_str(), "lz4");
    }

    #[test]
    fn kafka_settings_are_checked_by_name() {
        for (flag, value, variable) in [
            (
                "--kafka-producer-compression",
                "brotli",
                "KAFKA_PRODUCER_COMPRESSION",
            ),
            (
                "--kafka-order-events-topic",
                "bad topic!",
                "KAFKA_ORDER_EVENTS_TOPIC",
            ),
            (
                "--kafka-consumer-auto-offset-reset",
                "middle",
                "KAFKA_CONSUMER_AUTO_OFFSET_RESET",
            ),
        ] {
            let text = refusal(&[
                "--order-event-mode",
                "KAFKA",
                "--kafka-bootstrap-servers",
                "localhost:9092",
                flag,
                value,
            ]);
            assert!(text.contains(variable), "{variable} missing from:\n{text}");
        }
    }

    #[test]
    fn esb_security_is_read_in_kafka_modes_with_one_line_per_problem() {
        let base = [
            "--order-event-mode",
            "KAFKA",
            "--kafka-bootstrap-servers",
            "localhost:9092",
        ];
        let settings = parse(&base).validate().unwrap();
        assert!(!settings.esb.unwrap().enabled());
        let mut args = base.to_vec();
        args.extend([
            "--kafka-esb-signing-keys",
            "k1:0123456789abcdef0123456789abcdef",
        ]);
        let settings = parse(&args).validate().unwrap();
        assert_eq!(settings.esb.unwrap().key_ids(), ["k1"]);
        let mut args = base.to_vec();
        args.extend([
            "--kafka-esb-signing-keys",
            "k1:tooshortsecret,k2",
            "--kafka-esb-max-age-seconds",
            "never",
        ]);
        let problems = parse(&args).validate().unwrap_err();
        assert_eq!(problems.0.len(), 3, "{problems}");
        assert!(
            !problems.to_string().contains("tooshortsecret"),
            "{problems}"
        );
    }

    #[test]
    fn kafka_settings_are_ignored_in_socketio_mode() {
        let settings = parse(&["--kafka-producer-compression", "brotli"])
            .validate()
            .unwrap();
        assert!(settings.kafka.is_none());
    }

    #[test]
    fn core_and_edge_roles_need_postgres_and_kafka_with_one_line_per_problem() {
        assert_eq!(parse(&[]).validate().unwrap().role, Role::All);
        for role in ["core", "edge"] {
            let problems = parse(&["--role", role]).validate().unwrap_err();
            assert_eq!(problems.0.len(), 2, "{problems}");
            assert!(
                problems.0[0].contains(&format!("OA_ROLE={role} needs DATABASE_URL=postgres://")),
                "{problems}"
            );
            assert!(
                problems.0[1].contains(&format!("OA_ROLE={role} needs ORDER_EVENT_MODE=KAFKA")),
                "{problems}"
            );
            let settings = parse(&[
                "--role",
                role,
                "--database-url",
                "postgres://oa@127.0.0.1:5433/oa",
                "--order-event-mode",
                "KAFKA",
                "--kafka-bootstrap-servers",
                "127.0.0.1:9092",
            ])
            .validate()
            .unwrap();
            assert_eq!(settings.role.as_str(), role);
            let problems = parse(&[
                "--role",
                role,
                "--database-url",
                "postgres://oa@127.0.0.1:5433/oa",
                "--order-event-mode",
                "BOTH",
                "--kafka-bootstrap-servers",
                "127.0.0.1:9092",
            ])
            .validate()
            .unwrap_err();
            assert_eq!(problems.0.len(), 1, "{problems}");
        }
        let problems = parse(&["--role", "leader"]).validate().unwrap_err();
        assert_eq!(
            problems.0,
            ["OA_ROLE=\"leader\" is not valid; allowed values: all, core, edge"]
        );
    }

    #[test]
    fn unsupported_database_url_is_rejected() {
        let text = refusal(&["--database-url", "mysql://x"]);
        assert!(text.contains("DATABASE_URL"), "{text}");
    }
}
