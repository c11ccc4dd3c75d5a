//! Option pricing for index and stock options on futures-style underlyings: Black-76 prices,
//! greeks in traders' units (as OpenAlgo reports them from `opengreeks`), implied volatility,
//! and the volatility smile the simulated feed prices its option universe with.
//!
//! Units: `years` to expiry (days / 365), `rate` and `volatility` as decimals (0.07 = 7%).
//! Greeks: `delta` and `gamma` per unit of the forward, `theta` per calendar day, `vega` per
//! 1 volatility point, `rho` per 1 rate point.

/// Call or put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionKind {
    /// Right to buy (OpenAlgo `CE`).
    Call,
    /// Right to sell (OpenAlgo `PE`).
    Put,
}

impl OptionKind {
    /// `CE` or `PE`, as in OpenAlgo symbols.
    pub fn code(self) -> &'static str {
        match self {
            OptionKind::Call => "CE",
            OptionKind::Put => "PE",
        }
    }

    /// Parses `CE`/`PE` (any case).
    pub fn parse(code: &str) -> Option<OptionKind> {
        match code.to_ascii_uppercase().as_str() {
            "CE" => Some(OptionKind::Call),
            "PE" => Some(OptionKind::Put),
            _ => None,
        }
    }
}

/// What an option's price depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptionInputs {
    /// Call or put.
    pub kind: OptionKind,
    /// Forward (futures) price of the underlying.
    pub forward: f64,
    /// Strike.
    pub strike: f64,
    /// Time to expiry in years (> 0).
    pub years: f64,
    /// Risk-free rate, decimal.
    pub rate: f64,
    /// Volatility, decimal (> 0).
    pub volatility: f64,
}

/// Sensitivities, in the units of the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greeks {
    /// d price / d forward.
    pub delta: f64,
    /// d delta / d forward.
    pub gamma: f64,
    /// Price change over one calendar day (negative for a long option, usually).
    pub theta: f64,
    /// Price change for +1 volatility point.
    pub vega: f64,
    /// Price change for +1 rate point.
    pub rho: f64,
}

/// Standard normal cumulative distribution, exact to double precision.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

impl OptionInputs {
    fn d1_d2(&self) -> (f64, f64) {
        let spread = self.volatility * self.years.sqrt();
        let d1 = ((self.forward / self.strike).ln()
            + 0.5 * self.volatility * self.volatility * self.years)
            / spread;
        (d1, d1 - spread)
    }

    fn discount(&self) -> f64 {
        (-self.rate * self.years).exp()
    }

    /// The Black-76 price.
    pub fn price(&self) -> f64 {
        let (d1, d2) = self.d1_d2();
        let discount = self.discount();
        match self.kind {
            OptionKind::Call => {
                discount * (self.forward * normal_cdf(d1) - self.strike * normal_cdf(d2))
            }
            OptionKind::Put => {
                discount * (self.strike * normal_cdf(-d2) - self.forward * normal_cdf(-d1))
            }
        }
    }

    /// Value at expiry for the current forward (`max(F - K, 0)` or `max(K - F, 0)`).
    pub fn intrinsic(&self) -> f64 {
        match self.kind {
            OptionKind::Call => (self.forward - self.strike).max(0.0),
            OptionKind::Put => (self.strike - self.forward).max(0.0),
        }
    }

    /// The greeks.
    pub fn greeks(&self) -> Greeks {
        let (d1, _) = self.d1_d2();
        let discount = self.discount();
        let sqrt_years = self.years.sqrt();
        let price = self.price();
        let density = normal_pdf(d1);
        let delta = match self.kind {
            OptionKind::Call => discount * normal_cdf(d1),
            OptionKind::Put => -discount * normal_cdf(-d1),
        };
        let gamma = discount * density / (self.forward * self.volatility * sqrt_years);
        let vega_per_unit = discount * self.forward * density * sqrt_years;
        // d price / d years = -r * price + discount * F * pdf(d1) * sigma / (2 sqrt(T)), the
        // same for calls and puts; theta is the change as one day passes (years shrink).
        let decay = -self.rate * price
            + discount * self.forward * density * self.volatility / (2.0 * sqrt_years);
        Greeks {
            delta,
            gamma,
            theta: -decay / 365.0,
            vega: vega_per_unit / 100.0,
            rho: -self.years * price / 100.0,
        }
    }

    /// The volatility at which the Black-76 price equals `price`, or `None` when no
    /// volatility in (0.01%, 500%] gives it (a price below the discounted intrinsic value or
    /// above the discounted forward/strike bound).
    pub fn implied_volatility(&self, price: f64) -> Option<f64> {
        let at = |volatility: f64| {
            OptionInputs {
                volatility,
                ..*self
            }
            .price()
        };
        let (mut low, mut high) = (1e-4, 5.0);
        // Prices within rounding of the bounds (deep in the money: the floor is the
        // discounted intrinsic value) belong to the bound.
        let rounding = 1e-9 * self.forward.abs().max(1.0);
        if !price.is_finite() || price < at(low) - rounding || price > at(high) + rounding {
            return None;
        }
        // Bisection: the price rises strictly with volatility, so it always converges.
        for _ in 0..200 {
            let middle = 0.5 * (low + high);
            if at(middle) < price {
                low = middle;
            } else {
                high = middle;
            }
            if high - low < 1e-10 {
                break;
            }
        }
        Some(0.5 * (low + high))
    }
}

/// The volatility of a strike on a smile: `atm * (1 + skew * m + curvature * m^2)` with
/// moneyness `m = ln(strike / forward)`, floored at 1%. A negative `skew` makes low strikes
/// (puts) dearer, as index options trade.
pub fn smile_volatility(forward: f64, strike: f64, atm: f64, skew: f64, curvature: f64) -> f64 {
    let moneyness = (strike / forward).ln();
    (atm * (1.0 + skew * moneyness + curvature * moneyness * moneyness)).max(0.01)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs() -> impl Strategy<Value = OptionInputs> {
        (
            prop_oneof![Just(OptionKind::Call), Just(OptionKind::Put)],
            1_000.0f64..60_000.0,
            0.7f64..1.3,
            (1.0f64..400.0).prop_map(|days| days / 365.0),
            0.0f64..0.12,
            0.05f64..0.9,
        )
            .prop_map(
                |(kind, forward, ratio, years, rate, volatility)| OptionInputs {
                    kind,
                    forward,
                    strike: (forward * ratio).round(),
                    years,
                    rate,
                    volatility,
                },
            )
    }

    #[test]
    fn a_known_price() {
        // Hull, Options, Futures and Other Derivatives (Black's model for futures options):
        // a 4-month European put on crude-oil futures, F = K = 20, r = 9%, sigma = 25%,
        // is worth 1.12 (1.1166 unrounded); at the money the call is worth the same.
        let put = OptionInputs {
            kind: OptionKind::Put,
            forward: 20.0,
            strike: 20.0,
            years: 4.0 / 12.0,
            rate: 0.09,
            volatility: 0.25,
        };
        assert!(
            (put.price() - 1.116_641_456_6).abs() < 1e-9,
            "{}",
            put.price()
        );
        let call = OptionInputs {
            kind: OptionKind::Call,
            ..put
        };
        assert!((call.price() - put.price()).abs() < 1e-12);
        assert_eq!(put.intrinsic(), 0.0);
    }

    #[test]
    fn the_smile_is_lowest_near_the_money_and_skewed_to_puts() {
        let at = |strike| smile_volatility(24_000.0, strike, 0.14, -0.8, 4.0);
        assert!((at(24_000.0) - 0.14).abs() < 1e-12);
        assert!(at(22_000.0) > at(26_000.0));
        assert!(at(26_000.0) > 0.01);
    }

    proptest! {
        /// Put-call parity: C - P = e^(-rT) (F - K).
        #[test]
        fn put_call_parity_holds(option in inputs()) {
            let call = OptionInputs { kind: OptionKind::Call, ..option }.price();
            let put = OptionInputs { kind: OptionKind::Put, ..option }.price();
            let parity = (-option.rate * option.years).exp() * (option.forward - option.strike);
            prop_assert!((call - put - parity).abs() <= 1e-9 * option.forward, "{call} - {put} vs {parity}");
        }

        /// Each greek equals the finite difference of the price it describes.
        #[test]
        fn greeks_match_finite_differences(option in inputs()) {
            let greeks = option.greeks();
            let price = |changed: OptionInputs| changed.price();
            let h = option.forward * 1e-4;
            let up = OptionInputs { forward: option.forward + h, ..option };
            let down = OptionInputs { forward: option.forward - h, ..option };
            let delta = (price(up) - price(down)) / (2.0 * h);
            let gamma = (price(up) - 2.0 * option.price() + price(down)) / (h * h);
            let dv = 1e-5;
            let vega = (price(OptionInputs { volatility: option.volatility + dv, ..option })
                - price(OptionInputs { volatility: option.volatility - dv, ..option })) / (2.0 * dv) / 100.0;
            let dt = 1e-6;
            let theta = -(price(OptionInputs { years: option.years + dt, ..option })
                - price(OptionInputs { years: option.years - dt, ..option })) / (2.0 * dt) / 365.0;
            let dr = 1e-6;
            let rho = (price(OptionInputs { rate: option.rate + dr, ..option })
                - price(OptionInputs { rate: option.rate - dr, ..option })) / (2.0 * dr) / 100.0;
            let close = |analytic: f64, numeric: f64, scale: f64| (analytic - numeric).abs() <= 1e-5 * scale.max(1.0);
            prop_assert!(close(greeks.delta, delta, 1.0), "delta {} vs {}", greeks.delta, delta);
            // A second difference is the least precise: relative 1e-4.
            prop_assert!((greeks.gamma - gamma).abs() <= 1e-4 * greeks.gamma.abs() + 1e-9, "gamma {} vs {}", greeks.gamma, gamma);
            prop_assert!(close(greeks.vega, vega, vega.abs()), "vega {} vs {}", greeks.vega, vega);
            prop_assert!(close(greeks.theta, theta, theta.abs()), "theta {} vs {}", greeks.theta, theta);
            prop_assert!(close(greeks.rho, rho, rho.abs()), "rho {} vs {}", greeks.rho, rho);
        }

        /// The implied volatility of a model price reprices it exactly, and is the volatility
        /// that made it wherever the price depends on volatility at all (vega of a paisa or
        /// more per point; deep in- or out-of-the-money options near expiry have none).
        #[test]
        fn implied_volatility_recovers_the_volatility(option in inputs()) {
            let price = option.price();
            let implied = option.implied_volatility(price).unwrap();
            let repriced = OptionInputs { volatility: implied, ..option }.price();
            prop_assert!((repriced - price).abs() <= 1e-9 * option.forward, "{repriced} vs {price}");
            if option.greeks().vega >= 0.01 {
                prop_assert!((implied - option.volatility).abs() < 1e-6, "{implied} vs {}", option.volatility);
            }
        }
    }
}
