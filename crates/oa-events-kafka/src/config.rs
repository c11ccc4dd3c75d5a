//! [`KafkaConfig`]: every Kafka setting of docs/kafka.md, plus topic creation and
//! the relay's retry settings. A plain struct: the server fills it from its own CLI/env layer,
//! or calls [`KafkaConfig::from_lookup`] / [`KafkaConfig::from_env`] which read the
//! OpenAlgo variable names and reject bad values with the variable and the allowed values.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use oa_events_core::{EnvReader, EnvVar};

use crate::error::ConfigError;
use crate::security::SecurityConfig;

/// Default of `KAFKA_BOOTSTRAP_SERVERS`.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "localhost:9092";
/// Default of `KAFKA_ORDER_EVENTS_TOPIC`.
pub const DEFAULT_ORDER_EVENTS_TOPIC: &str = "from_openalgo_order_events";
/// Default of `KAFKA_ESB_EVENTS_TOPIC`.
pub const DEFAULT_ESB_EVENTS_TOPIC: &str = "from_esb_order_events";
/// Default of `KAFKA_CONSUMER_GROUP`.
pub const DEFAULT_CONSUMER_GROUP: &str = "openalgo-order-consumer";

oa_events_core::spelled_enum! {
    /// Record-batch compression (`KAFKA_PRODUCER_COMPRESSION`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Compression {
        /// `none`.
        None = "none",
        /// `gzip`.
        Gzip = "gzip",
        /// `snappy` (upstream OpenAlgo's default; tansu 0.6 stores snappy batches it then
        /// cannot serve, see docs/kafka.md).
        Snappy = "snappy",
        /// `lz4` (the default: fast, and read by every Kafka client and broker oa is tested with).
        #[default]
        Lz4 = "lz4",
        /// `zstd`.
        Zstd = "zstd",
    }
}

impl Compression {
    /// The default of `KAFKA_PRODUCER_COMPRESSION`, as its setting name.
    pub const DEFAULT_NAME: &'static str = "lz4";

    pub(crate) fn to_rskafka(self) -> rskafka::client::partition::Compression {
        use rskafka::client::partition::Compression as C;
        match self {
            Compression::None => C::NoCompression,
            Compression::Gzip => C::Gzip,
            Compression::Snappy => C::Snappy,
            Compression::Lz4 => C::Lz4,
            Compression::Zstd => C::Zstd,
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    /// An empty value means `none`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.trim().is_empty() {
            return Ok(Compression::None);
        }
        Compression::from_spelling(value)
            .ok_or_else(|| format!("allowed values: {}", Compression::ALLOWED))
    }
}

/// Producer acknowledgements (`KAFKA_PRODUCER_ACKS`).
///
/// Only `all` (`-1`) is supported: the outbox marks an event delivered when the broker
/// acknowledges it, and anything weaker than all in-sync replicas could lose an event that
/// was already removed from the outbox. rskafka always sends `acks=-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `all` / `-1`: the leader waits for every in-sync replica.
    #[default]
    All,
}

impl Acks {
    /// Every accepted spelling, for error messages.
    pub const ALLOWED: &'static str = "all, -1";
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("all")
    }
}

impl FromStr for Acks {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "all" | "-1" => Ok(Acks::All),
            "0" | "1" => Err(format!(
                "acks={value} could lose events the outbox already counts as delivered; allowed values: {}",
                Acks::ALLOWED
            )),
            _ => Err(format!("allowed values: {}", Acks::ALLOWED)),
        }
    }
}

oa_events_core::spelled_enum! {
    /// Where a consumer starts when it has no stored offset (`KAFKA_CONSUMER_AUTO_OFFSET_RESET`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum AutoOffsetReset {
        /// The oldest record still kept.
        Earliest = "earliest",
        /// Only records produced from now on (the default, as upstream).
        #[default]
        Latest = "latest",
    }
}

impl FromStr for AutoOffsetReset {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        AutoOffsetReset::from_spelling(value)
            .ok_or_else(|| format!("allowed values: {}", AutoOffsetReset::ALLOWED))
    }
}

/// What to do at start-up when a topic does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCreation {
    /// Create missing topics (`KAFKA_CREATE_TOPICS`, default false: production topics are
    /// created by their operators with their retention and replication settings).
    pub create_missing: bool,
    /// Partitions of a created topic (`KAFKA_TOPIC_PARTITIONS`, default 3).
    pub partitions: i32,
    /// Replication factor of a created topic (`KAFKA_TOPIC_REPLICATION_FACTOR`, default 1,
    /// which a single dev broker supports; use 3 on a real cluster).
    pub replication_factor: i16,
}

impl Default for TopicCreation {
    fn default() -> Self {
        TopicCreation {
            create_missing: false,
            partitions: 3,
            replication_factor: 1,
        }
    }
}

/// Every Kafka setting oa uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: `host:port` of brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// `KAFKA_ORDER_EVENTS_TOPIC`: the outbound topic.
    pub order_events_topic: String,
    /// `KAFKA_ESB_EVENTS_TOPIC`: the inbound ESB command topic.
    pub esb_events_topic: String,
    /// `KAFKA_PRODUCER_COMPRESSION`.
    pub compression: Compression,
    /// `KAFKA_PRODUCER_BATCH_SIZE`: most bytes (keys, values and headers, uncompressed) in
    /// one produce request to one partition; a larger single record goes alone.
    pub batch_size: usize,
    /// `KAFKA_PRODUCER_LINGER_MS`: how long the relay waits for more events after a wake-up
    /// before sending a batch that is not full.
    pub linger: Duration,
    /// `KAFKA_PRODUCER_ACKS`.
    pub acks: Acks,
    /// `KAFKA_CONSUMER_GROUP`: name under which the ESB consumer stores its offsets.
    pub consumer_group: String,
    /// `KAFKA_CONSUMER_AUTO_OFFSET_RESET`.
    pub auto_offset_reset: AutoOffsetReset,
    /// Client id sent to brokers (`KAFKA_CLIENT_ID`, default `oa`).
    pub client_id: String,
    /// Topic creation at start-up.
    pub topic_creation: TopicCreation,
    /// How long one broker request may take before it is abandoned and retried
    /// (`KAFKA_REQUEST_TIMEOUT_MS`, default 30000). Bounds the start-up check too.
    pub request_timeout: Duration,
    /// First wait after a failed delivery (`KAFKA_RETRY_BACKOFF_MS`, default 100).
    pub retry_backoff: Duration,
    /// Longest wait between retries (`KAFKA_RETRY_BACKOFF_MAX_MS`, default 5000); the relay
    /// retries until delivered or shut down.
    pub retry_backoff_max: Duration,
    /// Most outbox rows the relay reads per round (`KAFKA_RELAY_MAX_ROWS`, default 10000).
    pub relay_max_rows: usize,
    /// How often the idle relay looks at the outbox without being woken, to pick up rows
    /// written before a restart or whose wake-up was dropped (`KAFKA_RELAY_POLL_MS`,
    /// default 1000).
    pub relay_poll_interval: Duration,
    /// How often a running consumer checks that the brokers of its topic answer; a check
    /// not answered within the same time marks the consumer disconnected until one is
    /// (`KAFKA_CONSUMER_LIVENESS_MS`, default 2000).
    pub consumer_liveness: Duration,
    /// How long one fetch of an edge's order-events consumer waits for new records
    /// (`KAFKA_EDGE_FETCH_MAX_WAIT_MS`, default 20). Brokers such as tansu hold every fetch
    /// for this whole time, so a record waits for the fetch in flight and then a whole next
    /// one: up to twice this, added to every event an edge delivers. Kafka answers as soon as
    /// a record is there.
    pub edge_fetch_max_wait: Duration,
    /// TLS and SASL of every connection (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`,
    /// `KAFKA_SSL_*`; see [`crate::security`]).
    pub security: SecurityConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: vec![DEFAULT_BOOTSTRAP_SERVERS.to_string()],
            order_events_topic: DEFAULT_ORDER_EVENTS_TOPIC.to_string(),
            esb_events_topic: DEFAULT_ESB_EVENTS_TOPIC.to_string(),
            compression: Compression::default(),
            batch_size: 16_384,
            linger: Duration::from_millis(10),
            acks: Acks::All,
            consumer_group: DEFAULT_CONSUMER_GROUP.to_string(),
            auto_offset_reset: AutoOffsetReset::Latest,
            client_id: "oa".to_string(),
            topic_creation: TopicCreation::default(),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(5),
            relay_max_rows: 10_000,
            relay_poll_interval: Duration::from_secs(1),
            consumer_liveness: Duration::from_secs(2),
            edge_fetch_max_wait: Duration::from_millis(20),
            security: SecurityConfig::default(),
        }
    }
}

/// Every general variable [`KafkaConfig::from_lookup`] reads, with its default and help (the
/// security ones are [`crate::security::ENV_VARS`]). `KafkaConfig::default()` is what these
/// defaults parse to (a test checks it); `oa-server` builds its flags from this table.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::new(
        "KAFKA_BOOTSTRAP_SERVERS",
        DEFAULT_BOOTSTRAP_SERVERS,
        "Kafka brokers, comma separated host:port (oa-server requires it in KAFKA and BOTH modes)",
    ),
    EnvVar::new(
        "KAFKA_ORDER_EVENTS_TOPIC",
        DEFAULT_ORDER_EVENTS_TOPIC,
        "outbound topic of order events",
    ),
    EnvVar::new(
        "KAFKA_ESB_EVENTS_TOPIC",
        DEFAULT_ESB_EVENTS_TOPIC,
        "inbound topic of ESB commands",
    ),
    EnvVar::new(
        "KAFKA_PRODUCER_COMPRESSION",
        Compression::DEFAULT_NAME,
        "producer compression: none, gzip, snappy, lz4, zstd",
    ),
    EnvVar::new(
        "KAFKA_PRODUCER_BATCH_SIZE",
        "16384",
        "producer batch size in bytes",
    ),
    EnvVar::new(
        "KAFKA_PRODUCER_LINGER_MS",
        "10",
        "milliseconds the producer waits to fill a batch",
    ),
    EnvVar::new(
        "KAFKA_PRODUCER_ACKS",
        "all",
        "producer acknowledgements: all (-1); weaker acks could lose events",
    ),
    EnvVar::new(
        "KAFKA_CONSUMER_GROUP",
        DEFAULT_CONSUMER_GROUP,
        "consumer group name of the ESB consumer",
    ),
    EnvVar::new(
        "KAFKA_CONSUMER_AUTO_OFFSET_RESET",
        "latest",
        "where a consumer starts without a stored offset: earliest, latest",
    ),
    EnvVar::new("KAFKA_CLIENT_ID", "oa", "client id sent to the brokers"),
    EnvVar::new(
        "KAFKA_CREATE_TOPICS",
        "false",
        "create missing topics at start-up: true or false",
    ),
    EnvVar::new(
        "KAFKA_TOPIC_PARTITIONS",
        "3",
        "partitions of topics oa creates",
    ),
    EnvVar::new(
        "KAFKA_TOPIC_REPLICATION_FACTOR",
        "1",
        "replication factor of topics oa creates",
    ),
    EnvVar::new(
        "KAFKA_REQUEST_TIMEOUT_MS",
        "30000",
        "timeout of one Kafka request, milliseconds",
    ),
    EnvVar::new(
        "KAFKA_RETRY_BACKOFF_MS",
        "100",
        "first retry delay after a failed send, milliseconds",
    ),
    EnvVar::new(
        "KAFKA_RETRY_BACKOFF_MAX_MS",
        "5000",
        "longest retry delay, milliseconds",
    ),
    EnvVar::new(
        "KAFKA_RELAY_MAX_ROWS",
        "10000",
        "outbox rows the relay sends per round",
    ),
    EnvVar::new(
        "KAFKA_RELAY_POLL_MS",
        "1000",
        "how often the relay looks at the outbox when not woken, milliseconds",
    ),
    EnvVar::new(
        "KAFKA_CONSUMER_LIVENESS_MS",
        "2000",
        "how often a consumer checks that the broker answers; no answer within this time marks it disconnected (an edge's /health: 503), milliseconds",
    ),
    EnvVar::new(
        "KAFKA_EDGE_FETCH_MAX_WAIT_MS",
        "20",
        "how long one fetch of an edge's order-events consumer waits for new records (tansu holds each fetch this long: up to twice this is added to each event), milliseconds",
    ),
];

impl KafkaConfig {
    /// Settings for one local development broker (such as `cargo xtask kafka up`'s) and its
    /// `topic`: the topic is created with `partitions` when missing (replication 1), batches
    /// wait 1 ms, and failures are retried quickly (5 s requests, 50-500 ms backoff). For
    /// tests, benchmarks and examples; a deployment reads [`KafkaConfig::from_lookup`].
    pub fn for_local_broker(bootstrap: &str, topic: &str, partitions: i32) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: vec![bootstrap.to_string()],
            order_events_topic: topic.to_string(),
            linger: Duration::from_millis(1),
            topic_creation: TopicCreation {
                create_missing: true,
                partitions,
                replication_factor: 1,
            },
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(50),
            retry_backoff_max: Duration::from_millis(500),
            ..KafkaConfig::default()
        }
    }

    /// Reads the settings from the process environment (see [`KafkaConfig::from_lookup`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (variable name -> value); unset or empty
    /// variables keep their defaults. The first bad value is reported with its variable and
    /// the allowed values; [`KafkaConfig::from_lookup_all`] reports every one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_lookup_all(lookup).map_err(|mut problems| problems.remove(0))
    }

    /// [`KafkaConfig::from_lookup`], reporting every problem: the first bad general setting
    /// and every security problem ([`SecurityConfig::from_lookup`]), one per line. The
    /// returned list is never empty.
    pub fn from_lookup_all(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<ConfigError>> {
        let general = Self::general_from_lookup(&lookup);
        let security = SecurityConfig::from_lookup(&lookup);
        match (general, security) {
            (Ok(mut config), Ok(security)) => {
                config.security = security;
                Ok(config)
            }
            (general, security) => {
                let mut problems: Vec<ConfigError> = general.err().into_iter().collect();
                problems.extend(security.err().unwrap_or_default());
                Err(problems)
            }
        }
    }

    fn general_from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = EnvReader::new(lookup);
        let mut config = KafkaConfig::default();
        env.set(
            &mut config.bootstrap_servers,
            "KAFKA_BOOTSTRAP_SERVERS",
            |variable, value| {
                parse_bootstrap_servers(value)
                    .map_err(|reason| ConfigError::new(variable, value, reason))
            },
        )?;
        env.set(
            &mut config.order_events_topic,
            "KAFKA_ORDER_EVENTS_TOPIC",
            parse_topic,
        )?;
        env.set(
            &mut config.esb_events_topic,
            "KAFKA_ESB_EVENTS_TOPIC",
            parse_topic,
        )?;
        env.set(&mut config.compression, "KAFKA_PRODUCER_COMPRESSION", parse)?;
        env.set(
            &mut config.batch_size,
            "KAFKA_PRODUCER_BATCH_SIZE",
            number(1, 64 << 20),
        )?;
        env.set(&mut config.linger, "KAFKA_PRODUCER_LINGER_MS", millis(0))?;
        env.set(&mut config.acks, "KAFKA_PRODUCER_ACKS", parse)?;
        env.set(&mut config.consumer_group, "KAFKA_CONSUMER_GROUP", trimmed)?;
        env.set(
            &mut config.auto_offset_reset,
            "KAFKA_CONSUMER_AUTO_OFFSET_RESET",
            parse,
        )?;
        env.set(&mut config.client_id, "KAFKA_CLIENT_ID", trimmed)?;
        let creation = &mut config.topic_creation;
        env.set(
            &mut creation.create_missing,
            "KAFKA_CREATE_TOPICS",
            parse_bool,
        )?;
        env.set(
            &mut creation.partitions,
            "KAFKA_TOPIC_PARTITIONS",
            |variable, value| Ok(parse_number(variable, value, 1, 10_000)? as i32),
        )?;
        env.set(
            &mut creation.replication_factor,
            "KAFKA_TOPIC_REPLICATION_FACTOR",
            |variable, value| Ok(parse_number(variable, value, 1, i16::MAX as usize)? as i16),
        )?;
        env.set(
            &mut config.request_timeout,
            "KAFKA_REQUEST_TIMEOUT_MS",
            millis(1),
        )?;
        env.set(
            &mut config.retry_backoff,
            "KAFKA_RETRY_BACKOFF_MS",
            millis(1),
        )?;
        env.set(
            &mut config.retry_backoff_max,
            "KAFKA_RETRY_BACKOFF_MAX_MS",
            millis(1),
        )?;
        env.set(
            &mut config.relay_max_rows,
            "KAFKA_RELAY_MAX_ROWS",
            number(1, 1_000_000),
        )?;
        env.set(
            &mut config.relay_poll_interval,
            "KAFKA_RELAY_POLL_MS",
            millis(1),
        )?;
        env.set(
            &mut config.consumer_liveness,
            "KAFKA_CONSUMER_LIVENESS_MS",
            millis(100),
        )?;
        env.set(
            &mut config.edge_fetch_max_wait,
            "KAFKA_EDGE_FETCH_MAX_WAIT_MS",
            millis(1),
        )?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that a hand-built config could get wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::new(
                "KAFKA_BOOTSTRAP_SERVERS",
                "",
                "at least one host:port is required".to_string(),
            ));
        }
        for server in &self.bootstrap_servers {
            check_server(server)
                .map_err(|reason| ConfigError::new("KAFKA_BOOTSTRAP_SERVERS", server, reason))?;
        }
        parse_topic("KAFKA_ORDER_EVENTS_TOPIC", &self.order_events_topic)?;
        parse_topic("KAFKA_ESB_EVENTS_TOPIC", &self.esb_events_topic)?;
        if self.batch_size == 0 {
            return Err(ConfigError::new(
                "KAFKA_PRODUCER_BATCH_SIZE",
                "0",
                "must be at least 1".to_string(),
            ));
        }
        if self.retry_backoff_max < self.retry_backoff {
            return Err(ConfigError::new(
                "KAFKA_RETRY_BACKOFF_MAX_MS",
                &self.retry_backoff_max.as_millis().to_string(),
                "must be at least KAFKA_RETRY_BACKOFF_MS".to_string(),
            ));
        }
        Ok(())
    }

    /// The bootstrap servers as one comma list, for messages.
    pub fn bootstrap_list(&self) -> String {
        self.bootstrap_servers.join(",")
    }
}

fn parse<T: FromStr<Err = String>>(variable: &'static str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|reason| ConfigError::new(variable, value, reason))
}

fn parse_number(
    variable: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(ConfigError::new(
            variable,
            value,
            format!("allowed values: a whole number from {min} to {max}"),
        )),
    }
}

/// Reads a whole number from `min` to `max`.
fn number(min: usize, max: usize) -> impl Fn(&'static str, &str) -> Result<usize, ConfigError> {
    move |variable, value| parse_number(variable, value, min, max)
}

/// Reads milliseconds from `min` to a day.
fn millis(min: u64) -> impl Fn(&'static str, &str) -> Result<Duration, ConfigError> {
    move |variable, value| parse_millis(variable, value, min)
}

/// Reads text, trimmed.
fn trimmed(_: &'static str, value: &str) -> Result<String, ConfigError> {
    Ok(value.trim().to_string())
}

fn parse_millis(variable: &'static str, value: &str, min: u64) -> Result<Duration, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(millis) if millis >= min && millis <= 86_400_000 => Ok(Duration::from_millis(millis)),
        _ => Err(ConfigError::new(
            variable,
            value,
            format!("allowed values: milliseconds from {min} to 86400000"),
        )),
    }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            variable,
            value,
            "allowed values: true, false".to_string(),
        )),
    }
}

/// Kafka topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn parse_topic(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    let topic = value.trim();
    let valid = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(topic.to_string())
    } else {
        Err(ConfigError::new(
            variable,
            value,
            "a topic name is 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'".to_string(),
        ))
    }
}

fn parse_bootstrap_servers(value: &str) -> Result<Vec<String>, String> {
    let servers: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .map(str::to_string)
        .collect();
    if servers.is_empty() {
        return Err("allowed values: a comma list of host:port".to_string());
    }
    for server in &servers {
        check_server(server)?;
    }
    Ok(servers)
}

fn check_server(server: &str) -> Result<(), String> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "{server:?} is not host:port; allowed values: a comma list of host:port such as localhost:9092"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_defaults_are_what_the_env_var_tables_say() {
        let table_default = |name: &str| {
            ENV_VARS
                .iter()
                .chain(crate::security::ENV_VARS)
                .find(|var| var.name == name)
                .and_then(|var| var.default_value())
                .map(str::to_string)
        };
        assert_eq!(
            KafkaConfig::from_lookup(table_default).unwrap(),
            KafkaConfig::default()
        );
        let esb_default = |name: &str| {
            oa_events_core::env_var::default_of(crate::esb_auth::ENV_VARS, name).map(str::to_string)
        };
        assert_eq!(
            crate::EsbSecurity::from_lookup(esb_default).unwrap(),
            crate::EsbSecurity::default()
        );
    }

    fn config(vars: &[(&str, &str)]) -> Result<KafkaConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KafkaConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_protocols() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bootstrap_servers, vec!["localhost:9092"]);
        assert_eq!(config.order_events_topic, "from_openalgo_order_events");
        assert_eq!(config.esb_events_topic, "from_esb_order_events");
        assert_eq!(config.compression, Compression::Lz4);
        assert_eq!(config.batch_size, 16384);
        assert_eq!(config.linger, Duration::from_millis(10));
        assert_eq!(config.acks, Acks::All);
        assert_eq!(config.consumer_group, "openalgo-order-consumer");
        assert_eq!(config.auto_offset_reset, AutoOffsetReset::Latest);
        assert!(!config.topic_creation.create_missing);
        assert_eq!(config, KafkaConfig::default());
    }

    #[test]
    fn reads_every_variable() {
        let config = config(&[
            ("KAFKA_BOOTSTRAP_SERVERS", " a:1, b:2 ,"),
            ("KAFKA_ORDER_EVENTS_TOPIC", "out"),
            ("KAFKA_ESB_EVENTS_TOPIC", "in"),
            ("KAFKA_PRODUCER_COMPRESSION", "ZSTD"),
            ("KAFKA_PRODUCER_BATCH_SIZE", "1000"),
            ("KAFKA_PRODUCER_LINGER_MS", "0"),
            ("KAFKA_PRODUCER_ACKS", "-1"),
            ("KAFKA_CONSUMER_GROUP", "g"),
            ("KAFKA_CONSUMER_AUTO_OFFSET_RESET", "earliest"),
            ("KAFKA_CREATE_TOPICS", "true"),
            ("KAFKA_TOPIC_PARTITIONS", "6"),
            ("KAFKA_TOPIC_REPLICATION_FACTOR", "3"),
        ])
        .unwrap();
        assert_eq!(config.bootstrap_servers, vec!["a:1", "b:2"]);
        assert_eq!(config.order_events_topic, "out");
        assert_eq!(config.esb_events_topic, "in");
        assert_eq!(config.compression, Compression::Zstd);
        assert_eq!(config.batch_size, 1000);
        assert_eq!(config.linger, Duration::ZERO);
        assert_eq!(config.consumer_group, "g");
        assert_eq!(config.auto_offset_reset, AutoOffsetReset::Earliest);
        assert_eq!(
            config.topic_creation,
            TopicCreation {
                create_missing: true,
                partitions: 6,
                replication_factor: 3
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_allowed_values() {
        let cases = [
            (
                "KAFKA_PRODUCER_COMPRESSION",
                "brotli",
                "none, gzip, snappy, lz4, zstd",
            ),
            ("KAFKA_PRODUCER_ACKS", "1", "all, -1"),
            ("KAFKA_PRODUCER_ACKS", "some", "all, -1"),
            (
                "KAFKA_CONSUMER_AUTO_OFFSET_RESET",
                "none",
                "earliest, latest",
            ),
            ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
            ("KAFKA_BOOTSTRAP_SERVERS", "h:99999", "host:port"),
            ("KAFKA_PRODUCER_BATCH_SIZE", "-5", "whole number"),
            ("KAFKA_PRODUCER_LINGER_MS", "ten", "milliseconds"),
            ("KAFKA_ORDER_EVENTS_TOPIC", "a topic", "topic name"),
            ("KAFKA_CREATE_TOPICS", "maybe", "true, false"),
        ];
        for (variable, value, allowed) in cases {
            let error = config(&[(variable, value)]).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(variable), "{message}");
            assert!(message.contains(value), "{message}");
            assert!(message.contains(allowed), "{message}");
        }
    }
}
