//! The simulated market: a seeded random walk per instrument with day OHLC, volume, VWAP,
//! open interest for derivatives and a 5-level book around the last price.
//!
//! Futures and options with a listed underlying (the bundled NFO universe) are not walked:
//! they are priced from their underlying's last price at each tick, futures at the index
//! (no carry) and options with Black-76 on a volatility smile (rate 0), so an option chain
//! reads as a consistent market. A third of the ticks go to them, round-robin.
//!
//! [`SimulatedMarket`] is the pure generator (the same seed gives the same prices);
//! [`SimulatedFeed`] runs it on a thread at a fixed total rate and publishes DEPTH ticks on
//! the bus, so subscribers of every mode are served from one tick.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::bus::{Publisher, PublisherOptions};
use crate::feed::{FeedError, FeedThread, ThreadedFeed};
use oa_marketdata_core::options::{OptionInputs, smile_volatility};
use oa_marketdata_core::symbols::{Instrument, round_to_tick};
use oa_marketdata_core::tick::{Depth, DepthLevel, Quote, Tick, TickMode, now_ms};

/// Settings of the simulated market.
#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    /// The instruments to simulate.
    pub instruments: Vec<Instrument>,
    /// Ticks per second across all instruments (round-robin).
    pub ticks_per_second: f64,
    /// Random seed: the same seed gives the same price paths.
    pub seed: u64,
    /// Book levels per side.
    pub depth_levels: usize,
    /// Publisher send high-water mark.
    pub sndhwm: i32,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            instruments: oa_marketdata_core::symbols::SymbolMaster::bundled()
                .iter()
                .cloned()
                .collect(),
            ticks_per_second: 50.0,
            seed: 42,
            depth_levels: 5,
            sndhwm: crate::bus::DEFAULT_HWM,
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    instrument: Instrument,
    ltp: f64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    turnover: f64,
    oi: f64,
    is_index: bool,
}

/// The deterministic price generator.
#[derive(Debug)]
pub struct SimulatedMarket {
    rng: StdRng,
    states: Vec<State>,
    /// Instruments that random-walk, round-robin.
    walking: Vec<usize>,
    /// Instruments priced from their underlying (index into `states` of the underlying).
    derived: Vec<(usize, usize)>,
    walking_cursor: usize,
    derived_cursor: usize,
    ticks: u64,
    depth_levels: usize,
}

/// Skew and curvature of the simulated smile (index options: puts dearer than calls).
const SMILE_SKEW: f64 = -1.2;
const SMILE_CURVATURE: f64 = 6.0;
/// Contracts expire at 15:30 IST, 10:00 UTC.
const EXPIRY_SECONDS_UTC: i64 = 10 * 3600;

/// The model price of a derived instrument for its underlying at `underlying_price`.
fn derived_price(instrument: &Instrument, underlying_price: f64, now_ms: i64) -> f64 {
    let Some(contract) = &instrument.contract else {
        return underlying_price;
    };
    let Some(kind) = contract.kind else {
        return round_to_tick(underlying_price, instrument.tick_size);
    };
    let expiry_ms = (contract
        .expiry
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
        + EXPIRY_SECONDS_UTC)
        * 1000;
    let years = (expiry_ms - now_ms) as f64 / (365.0 * 86_400_000.0);
    let option = OptionInputs {
        kind,
        forward: underlying_price,
        strike: contract.strike,
        years,
        rate: 0.0,
        volatility: smile_volatility(
            underlying_price,
            contract.strike,
            contract.atm_volatility,
            SMILE_SKEW,
            SMILE_CURVATURE,
        ),
    };
    let price = if years > 0.0 {
        option.price()
    } else {
        option.intrinsic()
    };
    round_to_tick(price.max(instrument.tick_size), instrument.tick_size)
}

impl SimulatedMarket {
    /// A market over `instruments`, seeded.
    pub fn new(instruments: &[Instrument], seed: u64, depth_levels: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let states: Vec<State> = instruments
            .iter()
            .map(|instrument| {
                let base = if instrument.base_price > 0.0 {
                    instrument.base_price
                } else {
                    100.0
                };
                let close = round_to_tick(
                    base * (1.0 + rng.random_range(-0.01..0.01)),
                    instrument.tick_size,
                );
                let is_index = instrument.instrument_type.eq_ignore_ascii_case("INDEX");
                let is_derivative = matches!(
                    instrument.instrument_type.to_ascii_uppercase().as_str(),
                    "FUT" | "CE" | "PE"
                );
                State {
                    instrument: instrument.clone(),
                    ltp: round_to_tick(base, instrument.tick_size),
                    open: round_to_tick(base, instrument.tick_size),
                    high: round_to_tick(base, instrument.tick_size),
                    low: round_to_tick(base, instrument.tick_size),
                    close,
                    volume: 0.0,
                    turnover: 0.0,
                    oi: if is_derivative {
                        (instrument.lot_size * rng.random_range(1_000.0..50_000.0)).round()
                    } else {
                        0.0
                    },
                    is_index,
                }
            })
            .collect();
        let position: std::collections::HashMap<(&str, &str), usize> = instruments
            .iter()
            .enumerate()
            .map(|(index, instrument)| {
                (
                    (instrument.exchange.as_str(), instrument.symbol.as_str()),
                    index,
                )
            })
            .collect();
        let mut walking = Vec::new();
        let mut derived = Vec::new();
        for (index, instrument) in instruments.iter().enumerate() {
            let underlying = instrument.contract.as_ref().and_then(|contract| {
                position
                    .get(&(
                        contract.underlying_exchange.as_str(),
                        contract.underlying.as_str(),
                    ))
                    .copied()
            });
            match underlying {
                Some(underlying) => derived.push((index, underlying)),
                None => walking.push(index),
            }
        }
        let mut states = states;
        let now = now_ms();
        for (index, underlying) in &derived {
            let price = derived_price(&states[*index].instrument, states[*underlying].ltp, now);
            let state = &mut states[*index];
            (state.ltp, state.open, state.high, state.low, state.close) =
                (price, price, price, price, price);
        }
        SimulatedMarket {
            rng,
            states,
            walking,
            derived,
            walking_cursor: 0,
            derived_cursor: 0,
            ticks: 0,
            depth_levels,
        }
    }

    /// Number of instruments.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True without instruments.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// How many [`SimulatedMarket::next_tick`] calls tick every instrument at least once.
    pub fn ticks_to_reach_every_instrument(&self) -> usize {
        if self.derived.is_empty() {
            self.walking.len()
        } else if self.walking.is_empty() {
            self.derived.len()
        } else {
            // Two walking ticks for each derived one.
            (self.derived.len() * 3).max(self.walking.len() * 3 / 2 + 1)
        }
    }

    /// Moves the next instrument one step and returns its DEPTH tick: walking instruments
    /// round-robin, and every third tick the next derived one (priced from its underlying).
    /// `None` without instruments.
    pub fn next_tick(&mut self, now_ms: i64) -> Option<Tick> {
        if self.states.is_empty() {
            return None;
        }
        self.ticks = self.ticks.wrapping_add(1);
        let derived_turn =
            !self.derived.is_empty() && (self.walking.is_empty() || self.ticks.is_multiple_of(3));
        let (index, underlying_price) = if derived_turn {
            let (index, underlying) = self.derived[self.derived_cursor % self.derived.len()];
            self.derived_cursor = self.derived_cursor.wrapping_add(1);
            (index, Some(self.states[underlying].ltp))
        } else {
            let index = self.walking[self.walking_cursor % self.walking.len()];
            self.walking_cursor = self.walking_cursor.wrapping_add(1);
            (index, None)
        };
        let depth_levels = self.depth_levels;
        let rng = &mut self.rng;
        let state = &mut self.states[index];
        let tick_size = state.instrument.tick_size.max(0.0001);
        let lot = if state.instrument.lot_size > 0.0 {
            state.instrument.lot_size
        } else {
            1.0
        };
        state.ltp = match underlying_price {
            Some(price) => derived_price(&state.instrument, price, now_ms),
            None => {
                // A random walk of about 5 basis points per step, kept above one tick.
                let step = state.ltp * 0.0005 * rng.random_range(-1.0..1.0);
                round_to_tick((state.ltp + step).max(tick_size), tick_size)
            }
        };
        state.high = state.high.max(state.ltp);
        state.low = state.low.min(state.ltp);
        let last_quantity = if state.is_index {
            0.0
        } else {
            round_to_tick(lot * f64::from(rng.random_range(1u32..=20)), lot.min(1.0))
        };
        state.volume += last_quantity;
        state.turnover += last_quantity * state.ltp;
        if state.oi > 0.0 {
            state.oi = (state.oi + lot * f64::from(rng.random_range(-5i32..=5))).max(lot);
        }
        let average_price = if state.volume > 0.0 {
            round_to_tick(state.turnover / state.volume, 0.01)
        } else {
            state.ltp
        };
        let mut depth = Depth::default();
        let mut total_buy = 0.0;
        let mut total_sell = 0.0;
        if !state.is_index {
            for level in 0..depth_levels {
                let offset = tick_size * (level as f64 + 1.0);
                let buy_quantity =
                    round_to_tick(lot * f64::from(rng.random_range(1u32..=200)), lot.min(1.0));
                let sell_quantity =
                    round_to_tick(lot * f64::from(rng.random_range(1u32..=200)), lot.min(1.0));
                total_buy += buy_quantity;
                total_sell += sell_quantity;
                depth.buy.push(DepthLevel {
                    price: round_to_tick(state.ltp - offset, tick_size),
                    quantity: buy_quantity,
                    orders: rng.random_range(1..=25),
                });
                depth.sell.push(DepthLevel {
                    price: round_to_tick(state.ltp + offset, tick_size),
                    quantity: sell_quantity,
                    orders: rng.random_range(1..=25),
                });
            }
            // Pending quantity beyond the visible book.
            total_buy = round_to_tick(total_buy * 4.0, lot.min(1.0));
            total_sell = round_to_tick(total_sell * 4.0, lot.min(1.0));
        }
        // The keys OpenAlgo adapters send beyond oa's tick model that the official SDK's
        // quote stream reads (openalgo feed.py `get_quotes`): without them it reads 0.
        let change = round_to_tick(state.ltp - state.close, tick_size);
        let change_percent = if state.close > 0.0 {
            round_to_tick(change / state.close * 100.0, 0.01)
        } else {
            0.0
        };
        let extra = format!(
            r#""last_trade_quantity":{},"avg_trade_price":{},"change":{},"change_percent":{}"#,
            finite(last_quantity),
            finite(average_price),
            finite(change),
            finite(change_percent)
        );
        Some(Tick {
            exchange: state.instrument.exchange.clone(),
            symbol: state.instrument.symbol.clone(),
            mode: TickMode::Depth,
            ltp: state.ltp,
            ltt: now_ms,
            timestamp: now_ms,
            quote: Some(Quote {
                open: state.open,
                high: state.high,
                low: state.low,
                close: state.close,
                volume: state.volume,
                average_price,
                total_buy_quantity: total_buy,
                total_sell_quantity: total_sell,
                last_quantity,
                oi: state.oi,
            }),
            depth: Some(depth),
            extra: Some(Arc::from(extra)),
        })
    }
}

/// The number, or 0 when it is not finite (f64's `Display` of a finite number is JSON).
fn finite(value: f64) -> f64 {
    if value.is_finite() { value } else { 0.0 }
}

/// The simulated market as a feed adapter.
#[derive(Debug)]
pub struct SimulatedFeed {
    config: SimulatedConfig,
    thread: FeedThread,
}

impl SimulatedFeed {
    /// A feed that is not started yet.
    pub fn new(config: SimulatedConfig) -> Self {
        SimulatedFeed {
            config,
            thread: FeedThread::new("simulated feed"),
        }
    }
}

impl ThreadedFeed for SimulatedFeed {
    const NAME: &'static str = "simulated";

    fn thread(&self) -> &FeedThread {
        &self.thread
    }

    fn spawn(&mut self, bus_endpoint: &str) -> Result<(), FeedError> {
        if self.config.instruments.is_empty() {
            return Err(FeedError::Empty(Self::NAME));
        }
        let mut publisher = Publisher::connect(
            bus_endpoint,
            PublisherOptions {
                sndhwm: self.config.sndhwm,
                ..PublisherOptions::default()
            },
        )?;
        let mut market = SimulatedMarket::new(
            &self.config.instruments,
            self.config.seed,
            self.config.depth_levels,
        );
        let rate = if self.config.ticks_per_second.is_finite() && self.config.ticks_per_second > 0.0
        {
            self.config.ticks_per_second
        } else {
            1.0
        };
        self.thread.spawn("oa-feed-simulated", move |stop, published| {
            // Every instrument gets a price at once, before the paced ticks begin (with
            // the option universe, paced ticks alone would take minutes to reach each).
            for _ in 0..market.ticks_to_reach_every_instrument() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if let Some(tick) = market.next_tick(now_ms())
                    && publisher.publish(&tick).is_ok()
                {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
            let started = Instant::now();
            let mut sent: u64 = 0;
            let mut errors: u64 = 0;
            while !stop.load(Ordering::Acquire) {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                while sent < due && !stop.load(Ordering::Acquire) {
                    if let Some(tick) = market.next_tick(now_ms()) {
                        match publisher.publish(&tick) {
                            Ok(()) => {
                                published.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                errors += 1;
                                if errors.is_power_of_two() {
                                    tracing::warn!(%error, errors, "simulated feed could not publish");
                                }
                            }
                        }
                    }
                    sent += 1;
                }
                let next_due = Duration::from_secs_f64((sent + 1) as f64 / rate);
                let wait = next_due
                    .saturating_sub(started.elapsed())
                    .min(Duration::from_millis(50));
                std::thread::sleep(wait.max(Duration::from_micros(100)));
            }
        })?;
        tracing::info!(
            instruments = self.config.instruments.len(),
            ticks_per_second = rate,
            seed = self.config.seed,
            "simulated feed started"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_marketdata_core::symbols::SymbolMaster;

    fn instruments() -> Vec<Instrument> {
        SymbolMaster::bundled().iter().cloned().collect()
    }

    #[test]
    fn same_seed_same_prices() {
        let mut a = SimulatedMarket::new(&instruments(), 7, 5);
        let mut b = SimulatedMarket::new(&instruments(), 7, 5);
        let mut c = SimulatedMarket::new(&instruments(), 8, 5);
        let mut differs = false;
        for _ in 0..500 {
            let (x, y, z) = (
                a.next_tick(1).unwrap(),
                b.next_tick(1).unwrap(),
                c.next_tick(1).unwrap(),
            );
            assert_eq!(x, y);
            differs |= x != z;
        }
        assert!(differs);
    }

    #[test]
    fn ticks_are_consistent() {
        let mut market = SimulatedMarket::new(&instruments(), 1, 5);
        for _ in 0..1000 {
            let tick = market.next_tick(1).unwrap();
            let quote = tick.quote.unwrap();
            assert!(tick.ltp > 0.0);
            assert!(quote.low <= tick.ltp && tick.ltp <= quote.high, "{tick:?}");
            let depth = tick.depth.unwrap();
            if tick.exchange.ends_with("INDEX") {
                assert!(depth.buy.is_empty());
            } else {
                assert_eq!(depth.buy.len(), 5);
                assert_eq!(depth.sell.len(), 5);
                assert!(depth.buy[0].price < tick.ltp && tick.ltp < depth.sell[0].price);
                assert!(depth.buy.windows(2).all(|w| w[0].price > w[1].price));
                assert!(depth.sell.windows(2).all(|w| w[0].price < w[1].price));
            }
        }
    }

    #[test]
    fn rounding_trims_binary_noise() {
        assert_eq!(round_to_tick(24350.050000000003, 0.05), 24350.05);
        assert_eq!(round_to_tick(84.61249, 0.0025), 84.6125);
        assert_eq!(round_to_tick(101.3, 1.0), 101.0);
    }

    #[test]
    fn options_and_futures_are_priced_from_their_underlying() {
        let mut master = SymbolMaster::bundled();
        let today =
            oa_marketdata_core::option_universe::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        master.add_option_universe(today);
        let instruments: Vec<Instrument> = master.iter().cloned().collect();
        let mut market = SimulatedMarket::new(&instruments, 3, 5);
        // 2 December 2026 12:00 IST.
        let now = 1_796_108_400_000;
        let nifty = market
            .states
            .iter()
            .position(|state| {
                state.instrument.symbol == "NIFTY" && state.instrument.exchange == "NSE_INDEX"
            })
            .unwrap();
        let mut derived_ticks = 0;
        for _ in 0..6_000 {
            let tick = market.next_tick(now).unwrap();
            let instrument = master.lookup(&tick.exchange, &tick.symbol).unwrap();
            let on_nifty = instrument
                .contract
                .as_ref()
                .is_some_and(|contract| contract.underlying == "NIFTY");
            if !on_nifty {
                continue;
            }
            derived_ticks += 1;
            let expected = derived_price(instrument, market.states[nifty].ltp, now);
            assert_eq!(tick.ltp, expected, "{}", tick.symbol);
        }
        assert!(derived_ticks > 1_000, "{derived_ticks} derived ticks");

        // A consistent chain: put-call parity within rounding, calls cheaper as strikes rise.
        let spot = 24_000.0;
        let price = |symbol: &str| derived_price(master.lookup("NFO", symbol).unwrap(), spot, now);
        let (call, put) = (price("NIFTY29DEC2624000CE"), price("NIFTY29DEC2624000PE"));
        assert!((call - put).abs() <= 0.1, "{call} vs {put} at the money");
        assert!(price("NIFTY29DEC2624500CE") < call);
        assert!(price("NIFTY29DEC2623500PE") < put);
        assert!(call > 100.0 && call < 1_000.0, "{call}");
        assert_eq!(price("NIFTY29DEC26FUT"), spot);
    }

    #[test]
    fn the_priming_ticks_reach_every_instrument() {
        let mut master = SymbolMaster::bundled();
        master.add_option_universe(
            oa_marketdata_core::option_universe::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        );
        let instruments: Vec<Instrument> = master.iter().cloned().collect();
        let mut market = SimulatedMarket::new(&instruments, 5, 5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..market.ticks_to_reach_every_instrument() {
            let tick = market.next_tick(1).unwrap();
            seen.insert((tick.exchange, tick.symbol));
        }
        assert_eq!(seen.len(), instruments.len());
    }
}
