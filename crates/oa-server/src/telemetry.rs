//! Logs (tracing) and metrics (Prometheus) set-up.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber: `RUST_LOG` filters (default `info`), `OA_LOG_FORMAT`
/// chooses `text` (default) or `json` lines. Logs go to standard error.
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Installing twice (only possible in tests) is harmless: the first one wins.
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the global Prometheus recorder and returns the handle that renders `/metrics`.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe_metrics();
    Ok(handle)
}

/// Registers help texts so `/metrics` is self-describing.
fn describe_metrics() {
    metrics::describe_counter!(
        "oa_events_published_total",
        "Events delivered by a sink, by sink and event type"
    );
    metrics::describe_counter!(
        "oa_events_dropped_total",
        "Events a sink dropped, by sink and reason"
    );
    metrics::describe_counter!(
        "oa_http_requests_total",
        "HTTP requests answered, by status class"
    );
}
