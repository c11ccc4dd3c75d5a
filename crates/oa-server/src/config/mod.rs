//! Configuration: flags, environment variables and `.env`, validated as a whole.
//!
//! Every setting is read as text by clap (so a bad value never dies inside clap with a
//! message that hides the variable's name) and then checked by [`RawConfig::validate`], which
//! reports every bad variable at once, by name, with what was expected.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;
use oa_api::ApiConfig;
use oa_events_core::EventMode;
use oa_events_kafka::KafkaConfig;
use oa_events_socketio::SocketIoConfig;
use oa_marketdata_zmq::MarketDataConfig;

mod api;
mod esb;
mod kafka;
mod kafka_security;
mod marketdata;
mod socketio;

pub use api::RawApiConfig;
pub use esb::RawEsbConfig;
pub use kafka::RawKafkaConfig;
pub use marketdata::RawMarketDataConfig;
pub use socketio::RawSocketIoConfig;

/// The pepper used when `API_KEY_PEPPER` is not set: fine for a laptop, logged as a warning.
pub const DEVELOPMENT_PEPPER: &str = "oa-development-pepper-change-me-in-production-0001";
/// Minimum pepper length, as OpenAlgo requires.
pub const MIN_PEPPER_LEN: usize = 32;

/// Settings as given (flags > environment > `.env` > defaults), not yet validated.
/// `.sample.env` documents each one.
#[derive(Debug, Clone, Args)]
pub struct RawConfig {
    /// Address the HTTP server (REST, Socket.IO, /health, /metrics) listens on.
    #[arg(long, env = "FLASK_HOST_IP", default_value = "127.0.0.1")]
    pub http_host: String,
    /// Port of the HTTP server; 0 picks a free one.
    #[arg(long, env = "FLASK_PORT", default_value = "5000")]
    pub http_port: String,
    /// Address of the WebSocket market-data server.
    #[arg(long, env = "WEBSOCKET_HOST", default_value = "127.0.0.1")]
    pub websocket_host: String,
    /// Port of the WebSocket market-data server; 0 picks a free one.
    #[arg(long, env = "WEBSOCKET_PORT", default_value = "8765")]
    pub websocket_port: String,
    /// Address the ZeroMQ market-data bus binds.
    #[arg(long, env = "ZMQ_HOST", default_value = "127.0.0.1")]
    pub zmq_host: String,
    /// Port the ZeroMQ market-data bus binds; 0 picks a free one.
    #[arg(long, env = "ZMQ_PORT", default_value = "5555")]
    pub zmq_port: String,
    /// Server-side secret mixed into API-key hashes (at least 32 characters).
    #[arg(long, env = "API_KEY_PEPPER", hide_env_values = true)]
    pub api_key_pepper: Option<String>,
    /// Where the store lives: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:///db/oa.db")]
    pub database_url: String,

    /// Where order events go: SOCKETIO, KAFKA or BOTH.
    #[arg(long, env = "ORDER_EVENT_MODE", default_value = "SOCKETIO")]
    pub order_event_mode: String,
    /// Events each sink queues before dropping (Socket.IO drops the oldest).
    #[arg(long, env = "OA_EVENT_QUEUE_CAPACITY", default_value = "65536")]
    pub event_queue_capacity: String,
    /// Bytes of events each sink queues before dropping, whatever their number.
    #[arg(long, env = "OA_EVENT_QUEUE_MAX_BYTES", default_value = "67108864")]
    pub event_queue_max_bytes: String,
    /// Open HTTP connections in total (REST, Socket.IO polling, /health); more get 503.
    #[arg(long, env = "OA_HTTP_MAX_CONNECTIONS", default_value = "4096")]
    pub http_max_connections: String,
    /// Open HTTP connections from one client IP; more get 503.
    #[arg(long, env = "OA_HTTP_MAX_CONNECTIONS_PER_IP", default_value = "256")]
    pub http_max_connections_per_ip: String,
    /// Seconds a client has to send a request head (also the wait for the next request).
    #[arg(long, env = "OA_HTTP_HEADER_TIMEOUT_SECONDS", default_value = "10")]
    pub http_header_timeout_seconds: String,
    /// Seconds a kept-alive HTTP connection may stay idle before it is closed.
    #[arg(long, env = "OA_HTTP_IDLE_TIMEOUT_SECONDS", default_value = "60")]
    pub http_idle_timeout_seconds: String,
    /// Seconds shutdown may take in all (HTTP drain, order engine, market data, event sinks,
    /// Kafka relay); whatever still runs then is cut off and logged.
    #[arg(long, env = "OA_SHUTDOWN_TIMEOUT_SECONDS", default_value = "10")]
    pub shutdown_timeout_seconds: String,
    /// Log format: text or json (filter with RUST_LOG).
    #[arg(long, env = "OA_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// When set, the server writes its bound addresses there as JSON once it is ready.
    #[arg(long, env = "OA_READY_FILE")]
    pub ready_file: Option<String>,

    #[command(flatten)]
    pub api: RawApiConfig,

    #[command(flatten)]
    pub socketio: RawSocketIoConfig,

    #[command(flatten)]
    pub marketdata: RawMarketDataConfig,

    #[command(flatten)]
    pub kafka: RawKafkaConfig,

    #[command(flatten)]
    pub esb: RawEsbConfig,

    /// Hours delivered Kafka outbox rows are kept before they are pruned.
    #[arg(long, env = "OA_OUTBOX_RETENTION_HOURS", default_value = "168")]
    pub outbox_retention_hours: String,
    /// Undelivered Kafka outbox rows above which a warning is logged.
    #[arg(long, env = "OA_OUTBOX_WARN_BACKLOG", default_value = "100000")]
    pub outbox_warn_backlog: String,
}

/// Validated settings the server runs with.
// Layer settings are read as each layer is wired in.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Settings {
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

/// Collects problems while parsing each setting.
#[derive(Default)]
struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn number<T: std::str::FromStr>(
        &mut self,
        var: &str,
        value: &str,
        expected: &str,
    ) -> Option<T> {
        match value.trim().parse::<T>() {
            Ok(number) => Some(number),
            Err(_) => {
                self.problems
                    .push(format!("{var}={value:?} is not valid: expected {expected}"));
                None
            }
        }
    }

    fn address(
        &mut self,
        host_var: &str,
        host: &str,
        port_var: &str,
        port: &str,
    ) -> Option<SocketAddr> {
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
        let port = self.number::<u16>(port_var, port, "a port number from 0 to 65535");
        Some(SocketAddr::new(ip?, port?))
    }

    fn positive(&mut self, var: &str, value: &str) -> Option<usize> {
        let number = self.number::<usize>(var, value, "a positive whole number")?;
        if number == 0 {
            self.problems.push(format!(
                "{var}=0 is not valid: expected a positive whole number"
            ));
            return None;
        }
        Some(number)
    }

    fn boolean(&mut self, var: &str, value: &str) -> Option<bool> {
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

    fn one_of(&mut self, var: &str, value: &str, allowed: &[&str]) -> Option<String> {
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

impl RawConfig {
    /// Checks every setting and returns the validated [`Settings`], or every problem found.
    pub fn validate(&self) -> Result<Settings, ConfigProblems> {
        let mut check = Checker::default();
        let http_addr = check.address(
            "FLASK_HOST_IP",
            &self.http_host,
            "FLASK_PORT",
            &self.http_port,
        );
        let websocket_addr = check.address(
            "WEBSOCKET_HOST",
            &self.websocket_host,
            "WEBSOCKET_PORT",
            &self.websocket_port,
        );
        let zmq_addr = check.address("ZMQ_HOST", &self.zmq_host, "ZMQ_PORT", &self.zmq_port);

        let (api_key_pepper, pepper_is_default) = match &self.api_key_pepper {
            Some(pepper) if pepper.chars().count() < MIN_PEPPER_LEN => {
                check.problems.push(format!(
                    "API_KEY_PEPPER is too short ({} characters): it must have at least {MIN_PEPPER_LEN}",
                    pepper.chars().count()
                ));
                (String::new(), false)
            }
            Some(pepper) => (pepper.clone(), false),
            None => (DEVELOPMENT_PEPPER.to_string(), true),
        };

        let api = self
            .api
            .validate(&mut check, &self.database_url, &api_key_pepper);
        let marketdata = self
            .marketdata
            .validate(&mut check, websocket_addr, zmq_addr);
        let login_rate = match &self.marketdata.login_rate_limit {
            None => Some(oa_marketdata_zmq::MarketDataConfig::default().login_rate_limit),
            Some(value) => oa_net::RateSpec::parse(value).ok(),
        };
        let socketio = self.socketio.validate(&mut check, login_rate);

        let event_mode = match self.order_event_mode.parse::<EventMode>() {
            Ok(mode) => Some(mode),
            Err(error) => {
                check.problems.push(error.to_string());
                None
            }
        };
        let kafka = event_mode.and_then(|mode| self.kafka.validate(&mut check, mode));
        let esb = event_mode.and_then(|mode| self.esb.validate(&mut check, mode));

        let event_queue_capacity = check.number::<usize>(
            "OA_EVENT_QUEUE_CAPACITY",
            &self.event_queue_capacity,
            "a positive whole number",
        );
        if event_queue_capacity == Some(0) {
            check.problems.push(
                "OA_EVENT_QUEUE_CAPACITY=0 is not valid: expected a positive whole number".into(),
            );
        }
        let event_queue_max_bytes =
            check.positive("OA_EVENT_QUEUE_MAX_BYTES", &self.event_queue_max_bytes);
        let http_max_connections =
            check.positive("OA_HTTP_MAX_CONNECTIONS", &self.http_max_connections);
        let http_max_connections_per_ip = check.positive(
            "OA_HTTP_MAX_CONNECTIONS_PER_IP",
            &self.http_max_connections_per_ip,
        );
        let http_header_timeout = check
            .positive(
                "OA_HTTP_HEADER_TIMEOUT_SECONDS",
                &self.http_header_timeout_seconds,
            )
            .map(|seconds| Duration::from_secs(seconds as u64));
        let http_idle_timeout = check
            .positive(
                "OA_HTTP_IDLE_TIMEOUT_SECONDS",
                &self.http_idle_timeout_seconds,
            )
            .map(|seconds| Duration::from_secs(seconds as u64));
        let shutdown_timeout = check
            .number::<u64>(
                "OA_SHUTDOWN_TIMEOUT_SECONDS",
                &self.shutdown_timeout_seconds,
                "whole seconds",
            )
            .map(Duration::from_secs);
        check.one_of("OA_LOG_FORMAT", &self.log_format, &["text", "json"]);
        let outbox_retention = check
            .positive("OA_OUTBOX_RETENTION_HOURS", &self.outbox_retention_hours)
            .map(|hours| Duration::from_secs(hours as u64 * 3600));
        let outbox_warn_backlog = check
            .positive("OA_OUTBOX_WARN_BACKLOG", &self.outbox_warn_backlog)
            .map(|rows| rows as u64);

        let (
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
            Some(http_max_connections),
            Some(http_max_connections_per_ip),
            Some(http_header_timeout),
            Some(http_idle_timeout),
            true,
        ) = (
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
            http_max_connections,
            http_max_connections_per_ip,
            http_header_timeout,
            http_idle_timeout,
            check.problems.is_empty(),
        )
        else {
            return Err(ConfigProblems(check.problems));
        };
        Ok(Settings {
            http_addr,
            websocket_addr,
            zmq_addr,
            api_key_pepper,
            pepper_is_default,
            database_url: self.database_url.clone(),
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
                connections: oa_net::ConnectionLimits {
                    max_total: http_max_connections,
                    max_per_ip: http_max_connections_per_ip,
                },
                header_timeout: http_header_timeout,
                idle_timeout: http_idle_timeout,
                drain_timeout: shutdown_timeout,
            },
            shutdown_timeout,
            ready_file: self.ready_file.clone(),
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
        let text = parse(&["--order-event-mode", "kafka"])
            .validate()
            .unwrap_err()
            .to_string();
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
            let text = parse(&[
                "--order-event-mode",
                "KAFKA",
                "--kafka-bootstrap-servers",
                "localhost:9092",
                flag,
                value,
            ])
            .validate()
            .unwrap_err()
            .to_string();
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
    fn unsupported_database_url_is_rejected() {
        let text = parse(&["--database-url", "postgres://x"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(text.contains("DATABASE_URL"), "{text}");
    }
}
