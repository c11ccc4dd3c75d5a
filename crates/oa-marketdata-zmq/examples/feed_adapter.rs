//! A feed process: publishes ticks to a running oa server's market-data bus, where the
//! WebSocket proxy fans them out to subscribed clients and the price cache keeps the latest.
//!
//! A real adapter would read a broker's or an exchange's feed; this one walks prices in
//! deterministic steps so that what a client receives can be checked: the n-th tick
//! (n = 1, 2, ...) of an instrument with base price B has `volume` n and
//! `ltp` B + 0.05 × ((n − 1) mod 100). Only `Publisher` and `Tick` are used, so the crate
//! builds without its `ws` feature (no axum, no hyper).
//!
//! Run with (the server listening on its default bus endpoint, `ZMQ_HOST:ZMQ_PORT`; start it
//! with `OA_FEED=none` to see only these ticks):
//!
//! ```not_rust
//! cargo run -p oa-marketdata-zmq --example feed_adapter -- --endpoint tcp://127.0.0.1:5555 NSE:SBIN@812.5 NSE:INFY@1500
//! ```
//!
//! Options: `--endpoint` (default `tcp://127.0.0.1:5555`; give it once per bus to feed several,
//! such as every edge of a cluster, docs/scaling.md), `--interval-ms` between rounds
//! (default 100), `--count` rounds before exiting (default 0: until killed), then
//! `EXCHANGE:SYMBOL[@BASE]` instruments (default `NSE:SBIN@812.5`; base price default 100).
//! Instruments must be in the server's symbol master to reach WebSocket clients.

use std::process::ExitCode;
use std::time::Duration;

use oa_marketdata_zmq::{Publisher, PublisherOptions, Quote, Tick, TickMode};

/// Price step of the walk (the usual NSE tick size).
const STEP: f64 = 0.05;
/// How long to wait for the bus to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One instrument this feed publishes.
#[derive(Debug)]
struct Instrument {
    exchange: String,
    symbol: String,
    base: f64,
}

/// The command line.
#[derive(Debug)]
struct Options {
    /// The buses to publish to (every tick goes to each).
    endpoints: Vec<String>,
    interval: Duration,
    /// Rounds to publish; 0 = until killed.
    count: u64,
    instruments: Vec<Instrument>,
}

fn parse_instrument(text: &str) -> Result<Instrument, String> {
    let (name, base) = match text.split_once('@') {
        Some((name, base)) => {
            let base: f64 = base
                .parse()
                .ok()
                .filter(|base: &f64| base.is_finite() && *base > 0.0)
                .ok_or_else(|| {
                    format!(
                        "instrument {text:?}: the base price after '@' must be a positive number"
                    )
                })?;
            (name, base)
        }
        None => (text, 100.0),
    };
    let (exchange, symbol) = name
        .split_once(':')
        .filter(|(exchange, symbol)| !exchange.is_empty() && !symbol.is_empty())
        .ok_or_else(|| {
            format!("instrument {text:?}: expected EXCHANGE:SYMBOL[@BASE], e.g. NSE:SBIN@812.5")
        })?;
    Ok(Instrument {
        exchange: exchange.to_ascii_uppercase(),
        symbol: symbol.to_string(),
        base,
    })
}

fn parse_options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        endpoints: Vec::new(),
        interval: Duration::from_millis(100),
        count: 0,
        instruments: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--endpoint" => options.endpoints.push(value("--endpoint")?),
            "--interval-ms" => {
                let text = value("--interval-ms")?;
                let millis: u64 = text.parse().map_err(|_| {
                    format!("--interval-ms must be a whole number of milliseconds, got {text:?}")
                })?;
                options.interval = Duration::from_millis(millis);
            }
            "--count" => {
                let text = value("--count")?;
                options.count = text.parse().map_err(|_| {
                    format!(
                        "--count must be a whole number of rounds (0 = until killed), got {text:?}"
                    )
                })?;
            }
            flag if flag.starts_with("--") => {
                return Err(format!(
                    "unknown option {flag}: expected --endpoint, --interval-ms or --count"
                ));
            }
            instrument => options.instruments.push(parse_instrument(instrument)?),
        }
    }
    if options.endpoints.is_empty() {
        options.endpoints.push("tcp://127.0.0.1:5555".to_string());
    }
    if options.instruments.is_empty() {
        options
            .instruments
            .push(parse_instrument("NSE:SBIN@812.5")?);
    }
    Ok(options)
}

/// The `round`-th tick (1-based) of `instrument`: a Quote tick, so LTP and Quote
/// subscribers both receive it.
fn tick(instrument: &Instrument, round: u64) -> Tick {
    let ltp = instrument.base + STEP * ((round - 1) % 100) as f64;
    let mut tick = Tick::ltp(&instrument.exchange, &instrument.symbol, ltp);
    tick.mode = TickMode::Quote;
    tick.quote = Some(Quote {
        open: instrument.base,
        high: instrument.base + STEP * 99.0,
        low: instrument.base,
        close: instrument.base,
        volume: round as f64,
        average_price: ltp,
        last_quantity: 1.0,
        ..Quote::default()
    });
    tick
}

fn run(options: &Options) -> Result<(), oa_marketdata_zmq::BusError> {
    // Waits for the bus's subscription: no tick is lost to ZeroMQ's slow-joiner window.
    let endpoints: Vec<&str> = options.endpoints.iter().map(String::as_str).collect();
    let mut publisher =
        Publisher::connect_all_and_wait(&endpoints, PublisherOptions::default(), CONNECT_TIMEOUT)?;
    println!(
        "publishing {} instrument(s) to {} every {:?}",
        options.instruments.len(),
        options.endpoints.join(", "),
        options.interval
    );
    let mut round = 0u64;
    while options.count == 0 || round < options.count {
        round += 1;
        for instrument in &options.instruments {
            publisher.publish(&tick(instrument, round))?;
        }
        std::thread::sleep(options.interval);
    }
    println!("published {round} round(s)");
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("feed_adapter: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("feed_adapter: {error}");
            ExitCode::FAILURE
        }
    }
}
