//! Offer curves: the one representation of an agent's response to a price.
//!
//! Every market agent (the smart grid with its generator fleet and network, the microgrid
//! with its units, battery plan and load) is reduced, per hour, to a monotone
//! piecewise-linear curve `export(price)` with the agent's internal operating cost known at
//! every breakpoint. Flat arrays of `f64` are all a consumer needs, so the same curve is
//! evaluated by the CPU reference, the rayon backend and the WGSL kernels.
//!
//! Sign convention (eq. 31-32, Kavousi-Fard 2021): `export > 0` means the agent supplies
//! power to the market, so the trade balance of an hour is `sum_i export_i = 0`.
//!
//! The cost between two breakpoints is exact: the inverse curve `price(export)` is the
//! agent's marginal cost, linear on a segment, so its integral (the cost) is quadratic and
//! the trapezoid rule is exact.

use crate::error::{Error, Result};

/// A monotone piecewise-linear offer curve with its cost function.
///
/// Breakpoints are `(prices[k], exports[k])` with both coordinates non-decreasing. Below
/// the first price the agent exports `exports[0]`, above the last `exports[n-1]`.
/// `costs[k]` is the agent's internal cost, $/h, when it exports `exports[k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferCurve {
    /// Breakpoint prices, $/MWh, non-decreasing.
    pub prices: Vec<f64>,
    /// Breakpoint exports, MW, non-decreasing.
    pub exports: Vec<f64>,
    /// Internal operating cost at each breakpoint, $/h.
    pub costs: Vec<f64>,
}

/// A generating unit with a quadratic cost, as an offer-curve building block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadraticUnit {
    /// Quadratic cost coefficient, $/MW^2h; must be > 0 (erratum 2: see `linear_cost_c2`).
    pub c2: f64,
    /// Linear cost coefficient, $/MWh.
    pub c1: f64,
    /// Constant cost while committed, $/h.
    pub c0: f64,
    /// Minimum output, MW.
    pub pmin: f64,
    /// Maximum output, MW.
    pub pmax: f64,
}

impl QuadraticUnit {
    /// Output that minimizes `cost(p) - price * p` on `[pmin, pmax]` (the inverse marginal
    /// cost of eq. 37-38 with erratum 1: `(price - c1) / (2 c2)`, clamped).
    ///
    /// The unit must have `pmin <= pmax` (as [`OfferCurve::from_units`] checks); the clamp
    /// is then `f64::clamp`'s, NaN included, without its check, which would cost a branch
    /// per unit and breakpoint in every batch curve rebuilt.
    #[inline(always)]
    pub fn output_at(&self, price: f64) -> f64 {
        debug_assert!(self.pmin <= self.pmax, "unit pmin above pmax");
        let mut p = (price - self.c1) / (2.0 * self.c2);
        if p < self.pmin {
            p = self.pmin;
        }
        if p > self.pmax {
            p = self.pmax;
        }
        p
    }

    /// Cost of producing `p`, $/h.
    pub fn cost(&self, p: f64) -> f64 {
        (self.c2 * p + self.c1) * p + self.c0
    }
}

impl OfferCurve {
    /// A curve that exports `export` at every price with cost `cost`.
    pub fn fixed(export: f64, cost: f64) -> Self {
        OfferCurve {
            prices: vec![0.0],
            exports: vec![export],
            costs: vec![cost],
        }
    }

    /// Builds a curve from breakpoints and checks its invariants.
    pub fn new(prices: Vec<f64>, exports: Vec<f64>, costs: Vec<f64>) -> Result<Self> {
        let curve = OfferCurve {
            prices,
            exports,
            costs,
        };
        curve.check()?;
        Ok(curve)
    }

    /// The exact aggregate curve of quadratic units plus a fixed export and cost (for a
    /// microgrid: the battery plan minus the load). Breakpoints sit where a unit reaches
    /// its minimum or maximum, so linear interpolation between them is exact.
    pub fn from_units(units: &[QuadraticUnit], fixed_export: f64, fixed_cost: f64) -> Result<Self> {
        let mut curve = OfferCurve {
            prices: Vec::with_capacity(2 * units.len()),
            exports: Vec::new(),
            costs: Vec::new(),
        };
        curve.rebuild_from_units(units, fixed_export, fixed_cost)?;
        Ok(curve)
    }

    /// Makes this curve [`OfferCurve::from_units`]`(units, fixed_export, fixed_cost)` in
    /// place, reusing its storage: a batch backend rebuilds a unit agent's curve for every
    /// (run, hour) in one scratch curve per thread, without allocating. After an error
    /// the curve's contents are unspecified.
    pub fn rebuild_from_units(
        &mut self,
        units: &[QuadraticUnit],
        fixed_export: f64,
        fixed_cost: f64,
    ) -> Result<()> {
        for (i, u) in units.iter().enumerate() {
            // For a positive c2, `< INFINITY` is `is_finite`; NaN fails both compares.
            if !(u.c2 > 0.0 && u.c2 < f64::INFINITY) {
                return Err(Error::invalid(
                    format!("unit[{i}].c2"),
                    u.c2,
                    "> 0 (apply the linear-cost floor first)",
                ));
            }
            if !(u.pmin <= u.pmax) {
                return Err(Error::invalid(
                    format!("unit[{i}].pmin"),
                    u.pmin,
                    format!("<= pmax = {}", u.pmax),
                ));
            }
        }
        let (prices, exports, costs) = (&mut self.prices, &mut self.exports, &mut self.costs);
        prices.clear();
        exports.clear();
        costs.clear();
        if units.is_empty() {
            // As `OfferCurve::fixed`, which is not checked.
            prices.push(0.0);
            exports.push(fixed_export);
            costs.push(fixed_cost);
            return Ok(());
        }
        // The group sizes a market has, each with its unit loop unrolled and the units'
        // coefficients kept in registers (the values are the same whatever the length).
        let finite = match units.len() {
            1 => fill_small(self, &units[..1], fixed_export, fixed_cost),
            2 => fill_small(self, &units[..2], fixed_export, fixed_cost),
            3 => fill_small(self, &units[..3], fixed_export, fixed_cost),
            4 => fill_small(self, &units[..4], fixed_export, fixed_cost),
            _ => fill_large(self, units, fixed_export, fixed_cost),
        };
        // A curve of checked units with finite values holds every invariant of `check`:
        // the prices are sorted, and each export is `fixed_export` plus the units' outputs
        // added in unit order, where each output (a difference, a quotient by a positive
        // number, a clamp) and each rounded sum is non-decreasing in the price. So only
        // finiteness is tested here, and `check` names the value when it fails.
        debug_assert!(!finite || self.view().holds_invariants());
        if finite { Ok(()) } else { self.check() }
    }

    /// The curve as a borrowed view, which every evaluation goes through.
    pub fn view(&self) -> CurveView<'_> {
        CurveView {
            prices: &self.prices,
            exports: &self.exports,
            costs: &self.costs,
        }
    }

    /// Number of breakpoints.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Always false for a valid curve (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Lowest export the agent can offer, MW.
    pub fn min_export(&self) -> f64 {
        self.view().min_export()
    }

    /// Highest export the agent can offer, MW.
    pub fn max_export(&self) -> f64 {
        self.view().max_export()
    }

    /// Checks the invariants: equal non-zero lengths, finite values, monotone coordinates.
    pub fn check(&self) -> Result<()> {
        self.view().check()
    }

    /// The export at `price`, MW (see [`CurveView::export_at`]).
    pub fn export_at(&self, price: f64) -> f64 {
        self.view().export_at(price)
    }

    /// Slope `d export / d price`, MW per $/MWh (see [`CurveView::slope_at`]).
    pub fn slope_at(&self, price: f64, downward: bool) -> f64 {
        self.view().slope_at(price, downward)
    }

    /// The nearest breakpoint price beyond `price` (see [`CurveView::next_breakpoint`]).
    pub fn next_breakpoint(&self, price: f64, downward: bool) -> Option<f64> {
        self.view().next_breakpoint(price, downward)
    }

    /// The highest price at which the agent exports at most `x`, $/MWh (see
    /// [`CurveView::highest_price_within`]).
    pub fn highest_price_within(&self, x: f64) -> f64 {
        self.view().highest_price_within(x)
    }

    /// The lowest price at which the agent exports at least `x`, $/MWh (see
    /// [`CurveView::lowest_price_reaching`]).
    pub fn lowest_price_reaching(&self, x: f64) -> f64 {
        self.view().lowest_price_reaching(x)
    }

    /// Marginal cost at export `x`, $/MWh (see [`CurveView::price_at_export`]).
    pub fn price_at_export(&self, x: f64) -> f64 {
        self.view().price_at_export(x)
    }

    /// Internal operating cost at export `x`, $/h (see [`CurveView::cost_at_export`]).
    pub fn cost_at_export(&self, x: f64) -> f64 {
        self.view().cost_at_export(x)
    }
}

/// Most units of a group whose breakpoints [`OfferCurve::rebuild_from_units`] builds on
/// the stack before copying them into the curve (a market's groups have at most 4).
const STACK_UNITS: usize = 4;
const _: () = assert!(
    STACK_UNITS == 4,
    "rebuild_from_units has an arm per size 1-4"
);

/// The breakpoints of [`OfferCurve::rebuild_from_units`] for checked, non-empty `units`,
/// written to the front of `prices`, `exports` and `costs` (each at least `2 *
/// units.len()` long); inlined into each length it is called with. Returns the number of
/// breakpoints and whether every price, export and cost is finite.
#[inline(always)]
fn breakpoints_into(
    units: &[QuadraticUnit],
    fixed_export: f64,
    fixed_cost: f64,
    prices: &mut [f64],
    exports: &mut [f64],
    costs: &mut [f64],
) -> (usize, bool) {
    let prices = &mut prices[..2 * units.len()];
    for (u, pair) in units.iter().zip(prices.chunks_exact_mut(2)) {
        pair[0] = u.c1 + 2.0 * u.c2 * u.pmin;
        pair[1] = u.c1 + 2.0 * u.c2 * u.pmax;
    }
    // Values equal under `total_cmp` have equal bits, so the unstable sort (which
    // never allocates) gives the stable sort's order.
    prices.sort_unstable_by(f64::total_cmp);
    // `Vec::dedup`: a price equal to the last one kept is dropped.
    let mut m = 1;
    for k in 1..prices.len() {
        if prices[k] != prices[m - 1] {
            prices[m] = prices[k];
            m += 1;
        }
    }
    // `v * 0.0` is a zero for a finite v and NaN otherwise, so the sum is a zero exactly
    // when all are finite.
    let mut zero = 0.0;
    for ((&price, export), cost) in prices[..m]
        .iter()
        .zip(&mut exports[..m])
        .zip(&mut costs[..m])
    {
        let (mut x, mut c) = (fixed_export, fixed_cost);
        for u in units {
            let p = u.output_at(price);
            x += p;
            c += u.cost(p);
        }
        *export = x;
        *cost = c;
        zero += price * 0.0 + x * 0.0 + c * 0.0;
    }
    (m, zero == 0.0)
}

/// [`breakpoints_into`] for a group of `units.len() <= STACK_UNITS`, on the stack, then
/// copied into `curve`'s (cleared) storage.
#[inline(always)]
fn fill_small(curve: &mut OfferCurve, units: &[QuadraticUnit], fe: f64, fc: f64) -> bool {
    let mut buf = [[0.0; 2 * STACK_UNITS]; 3];
    let [p, x, c] = &mut buf;
    let (m, finite) = breakpoints_into(units, fe, fc, p, x, c);
    curve.prices.extend_from_slice(&p[..m]);
    curve.exports.extend_from_slice(&x[..m]);
    curve.costs.extend_from_slice(&c[..m]);
    finite
}

/// [`breakpoints_into`] for a group of any size, in `curve`'s (cleared) storage.
fn fill_large(curve: &mut OfferCurve, units: &[QuadraticUnit], fe: f64, fc: f64) -> bool {
    let n = 2 * units.len();
    curve.prices.resize(n, 0.0);
    curve.exports.resize(n, 0.0);
    curve.costs.resize(n, 0.0);
    let (m, finite) = breakpoints_into(
        units,
        fe,
        fc,
        &mut curve.prices,
        &mut curve.exports,
        &mut curve.costs,
    );
    curve.prices.truncate(m);
    curve.exports.truncate(m);
    curve.costs.truncate(m);
    finite
}

impl<'a> From<&'a OfferCurve> for CurveView<'a> {
    fn from(curve: &'a OfferCurve) -> Self {
        curve.view()
    }
}

/// An offer curve borrowed from wherever its breakpoints live (an [`OfferCurve`], a batch's
/// shared pool, a thread's scratch curve), with the same invariants. Every evaluation of a
/// curve is defined here, once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveView<'a> {
    /// Breakpoint prices, $/MWh, non-decreasing.
    pub prices: &'a [f64],
    /// Breakpoint exports, MW, non-decreasing.
    pub exports: &'a [f64],
    /// Internal operating cost at each breakpoint, $/h.
    pub costs: &'a [f64],
}

impl CurveView<'_> {
    /// An owned copy of the curve.
    pub fn to_curve(&self) -> OfferCurve {
        OfferCurve {
            prices: self.prices.to_vec(),
            exports: self.exports.to_vec(),
            costs: self.costs.to_vec(),
        }
    }

    /// Number of breakpoints.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Always false for a valid curve (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// Lowest export the agent can offer, MW.
    pub fn min_export(&self) -> f64 {
        self.exports[0]
    }

    /// Highest export the agent can offer, MW.
    pub fn max_export(&self) -> f64 {
        self.exports[self.exports.len() - 1]
    }

    /// Checks the invariants: equal non-zero lengths, finite values, monotone coordinates.
    pub fn check(&self) -> Result<()> {
        if self.holds_invariants() {
            return Ok(());
        }
        self.first_violation()
    }

    /// Whether every invariant of [`CurveView::check`] holds: one branch-free pass, as a
    /// batch rebuilds and checks a curve for every (run, hour).
    fn holds_invariants(&self) -> bool {
        let n = self.prices.len();
        if n == 0 || self.exports.len() != n || self.costs.len() != n {
            return false;
        }
        let (prices, exports, costs) = (self.prices, &self.exports[..n], &self.costs[..n]);
        let mut ok = true;
        let (mut last_price, mut last_export) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for k in 0..n {
            let (p, e, c) = (prices[k], exports[k], costs[k]);
            // Finite values compare as numbers, so `>=` is "not below".
            ok &= p.is_finite() & e.is_finite() & c.is_finite();
            ok &= (p >= last_price) & (e >= last_export);
            (last_price, last_export) = (p, e);
        }
        ok
    }

    /// The error of [`CurveView::check`]: the first invariant that fails, in the order
    /// lengths, then breakpoint by breakpoint finiteness and monotonicity; `Ok` if none.
    fn first_violation(&self) -> Result<()> {
        let n = self.prices.len();
        if n == 0 || self.exports.len() != n || self.costs.len() != n {
            return Err(Error::invalid(
                "offer_curve.len",
                format!("{}/{}/{}", n, self.exports.len(), self.costs.len()),
                "equal, non-zero lengths",
            ));
        }
        for k in 0..n {
            for (name, v) in [
                ("prices", self.prices[k]),
                ("exports", self.exports[k]),
                ("costs", self.costs[k]),
            ] {
                if !v.is_finite() {
                    return Err(Error::invalid(
                        format!("offer_curve.{name}[{k}]"),
                        v,
                        "finite",
                    ));
                }
            }
            if k > 0
                && (self.prices[k] < self.prices[k - 1] || self.exports[k] < self.exports[k - 1])
            {
                return Err(Error::invalid(
                    format!("offer_curve[{k}]"),
                    format!("({}, {})", self.prices[k], self.exports[k]),
                    "prices and exports non-decreasing",
                ));
            }
        }
        Ok(())
    }

    /// The export at `price`, MW: the agent's set point (eq. 37-38 generalized to any
    /// monotone response).
    #[inline(always)]
    pub fn export_at(&self, price: f64) -> f64 {
        self.export_with(price, || self.prices.partition_point(|&p| p <= price))
    }

    /// [`CurveView::export_at`], bitwise, with the segment searched for first at `guess`
    /// (a count of breakpoints at or below the price, as [`CurveView::count_at_or_below`]
    /// returns), which is then set to the count found when the price is strictly inside
    /// the curve's price range. Any guess gives the same export; the RCI loop passes the
    /// count of the agent's last look-up, right when the iterate stays on its segment.
    #[inline(always)]
    pub fn export_at_near(&self, price: f64, guess: &mut usize) -> f64 {
        self.export_with(price, || {
            *guess = self.count_at_or_below_near(price, *guess);
            *guess
        })
    }

    /// The number of breakpoints priced at or below `price`, searched for only in
    /// `within`, which must contain it (`within.start..=within.end`): a bisection over
    /// prices knows it lies between its values at the bracket's ends. 0 for NaN.
    pub fn count_at_or_below(&self, price: f64, within: std::ops::Range<usize>) -> usize {
        within.start + self.prices[within].partition_point(|&p| p <= price)
    }

    /// [`CurveView::export_at`]`(price)`, bitwise, given `count` =
    /// [`CurveView::count_at_or_below`]`(price, ..)`: no search.
    pub fn export_at_count(&self, price: f64, count: usize) -> f64 {
        self.export_with(price, || count)
    }

    /// The export at `price`, with `count()` the number of breakpoints priced at or below
    /// it, asked for only strictly inside the curve's price range (where it is at least 1
    /// and below the length: the segment is `count() - 1`).
    #[inline(always)]
    fn export_with(&self, price: f64, count: impl FnOnce() -> usize) -> f64 {
        if price.is_nan() {
            return f64::NAN;
        }
        let n = self.prices.len();
        if price <= self.prices[0] {
            return self.exports[0];
        }
        if price >= self.prices[n - 1] {
            return self.exports[n - 1];
        }
        let k = count() - 1;
        let dp = self.prices[k + 1] - self.prices[k];
        let t = (price - self.prices[k]) / dp;
        self.exports[k] + t * (self.exports[k + 1] - self.exports[k])
    }

    /// Slope `d export / d price`, MW per $/MWh, on the side of `price` the price is moving
    /// to (`downward` true: the segment left of `price`).
    #[inline(always)]
    pub fn slope_at(&self, price: f64, downward: bool) -> f64 {
        self.slope_near(price, downward, 0)
    }

    /// [`CurveView::slope_at`], bitwise, searching first at `guess` (see
    /// [`CurveView::export_at_near`]): any guess gives the same slope.
    #[inline(always)]
    pub fn slope_near(&self, price: f64, downward: bool, guess: usize) -> f64 {
        let n = self.prices.len();
        if n < 2 {
            return 0.0;
        }
        let k = if downward {
            if !(price > self.prices[0] && price <= self.prices[n - 1]) {
                return 0.0;
            }
            // Last breakpoint strictly below `price`.
            self.count_below_near(price, guess) - 1
        } else {
            // Written so that NaN falls outside every segment.
            if !(price >= self.prices[0] && price < self.prices[n - 1]) {
                return 0.0;
            }
            self.count_at_or_below_near(price, guess) - 1
        };
        let dp = self.prices[k + 1] - self.prices[k];
        if dp > 0.0 {
            (self.exports[k + 1] - self.exports[k]) / dp
        } else {
            0.0
        }
    }

    /// The number of breakpoints priced at or below `price` (`partition_point(p <=
    /// price)`), checked first at `guess`: when `guess` is that number the search is two
    /// compares whose outcome the processor predicts (an iterate that stays on its
    /// segment), where the bisection is a chain of dependent loads and selects. The
    /// result does not depend on `guess`.
    #[inline(always)]
    fn count_at_or_below_near(&self, price: f64, guess: usize) -> usize {
        let p = self.prices;
        if guess > 0 && guess < p.len() && p[guess - 1] <= price && price < p[guess] {
            return guess;
        }
        p.partition_point(|&q| q <= price)
    }

    /// The number of breakpoints priced strictly below `price`, checked first at `guess`
    /// (as [`CurveView::count_at_or_below_near`]).
    #[inline(always)]
    fn count_below_near(&self, price: f64, guess: usize) -> usize {
        let p = self.prices;
        if guess > 0 && guess < p.len() && p[guess - 1] < price && price <= p[guess] {
            return guess;
        }
        p.partition_point(|&q| q < price)
    }

    /// The nearest breakpoint price strictly below (`downward`) or above `price`: where a
    /// flat stretch of the curve ends in that direction. `None` past the last breakpoint.
    pub fn next_breakpoint(&self, price: f64, downward: bool) -> Option<f64> {
        if downward {
            self.prices.iter().rev().find(|&&p| p < price).copied()
        } else {
            self.prices.iter().find(|&&p| p > price).copied()
        }
    }

    /// The highest price at which the agent exports at most `x`, $/MWh: above it the
    /// export exceeds `x`. `+inf` when the export never exceeds `x`; the lowest breakpoint
    /// price when it always does (the agent cannot keep within `x` at any price).
    pub fn highest_price_within(&self, x: f64) -> f64 {
        let n = self.exports.len();
        if self.exports[n - 1] <= x {
            return f64::INFINITY;
        }
        if self.exports[0] > x {
            return self.prices[0];
        }
        // Last breakpoint with export <= x; the next one exports more.
        let k = self.exports.partition_point(|&e| e <= x) - 1;
        let t = (x - self.exports[k]) / (self.exports[k + 1] - self.exports[k]);
        self.prices[k] + t * (self.prices[k + 1] - self.prices[k])
    }

    /// The lowest price at which the agent exports at least `x`, $/MWh: below it the
    /// export falls short of `x`. `-inf` when the export always reaches `x`; the highest
    /// breakpoint price when it never does.
    pub fn lowest_price_reaching(&self, x: f64) -> f64 {
        let n = self.exports.len();
        if self.exports[0] >= x {
            return f64::NEG_INFINITY;
        }
        if self.exports[n - 1] < x {
            return self.prices[n - 1];
        }
        // First breakpoint with export >= x; the previous one exports less.
        let k = self.exports.partition_point(|&e| e < x);
        let t = (x - self.exports[k - 1]) / (self.exports[k] - self.exports[k - 1]);
        self.prices[k - 1] + t * (self.prices[k] - self.prices[k - 1])
    }

    /// Marginal cost at export `x`, $/MWh (the inverse curve). Outside the curve's export
    /// range the end price is returned.
    pub fn price_at_export(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        let n = self.exports.len();
        if x <= self.exports[0] {
            return self.prices[0];
        }
        if x >= self.exports[n - 1] {
            return self.prices[n - 1];
        }
        self.price_in_segment(x, self.exports.partition_point(|&e| e <= x) - 1)
    }

    /// The marginal cost at export `x` strictly inside the export range, on the segment
    /// `k` that holds it (`exports[k] <= x < exports[k + 1]`).
    fn price_in_segment(&self, x: f64, k: usize) -> f64 {
        let dx = self.exports[k + 1] - self.exports[k];
        let t = (x - self.exports[k]) / dx;
        self.prices[k] + t * (self.prices[k + 1] - self.prices[k])
    }

    /// Internal operating cost at export `x`, $/h: exact integral of the marginal cost.
    /// Outside the export range the cost is extended with the end price (a linear
    /// extrapolation), which only a relaxed, not-yet-converged iterate can reach.
    pub fn cost_at_export(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        let n = self.exports.len();
        if x <= self.exports[0] {
            return self.costs[0] + (x - self.exports[0]) * self.prices[0];
        }
        if x >= self.exports[n - 1] {
            return self.costs[n - 1] + (x - self.exports[n - 1]) * self.prices[n - 1];
        }
        let k = self.exports.partition_point(|&e| e <= x) - 1;
        let p = self.price_in_segment(x, k);
        // Trapezoid rule: exact, because the marginal cost is linear on the segment.
        self.costs[k] + (x - self.exports[k]) * 0.5 * (self.prices[k] + p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_check_agrees_with_the_detailed_one() {
        use rand::{RngExt, SeedableRng};
        // Values that break an invariant (non-finite, decreasing) or sit on its edge
        // (equal neighbours, signed zeros, extremes).
        let pool = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.5,
            f64::MAX,
            f64::MIN,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..20_000 {
            let n = rng.random_range(0..6usize);
            let len = |rng: &mut rand_chacha::ChaCha8Rng| {
                if rng.random_range(0..20) == 0 {
                    rng.random_range(0..6usize)
                } else {
                    n
                }
            };
            let column = |rng: &mut rand_chacha::ChaCha8Rng, len: usize| -> Vec<f64> {
                let mut v: Vec<f64> = (0..len)
                    .map(|_| pool[rng.random_range(0..pool.len())])
                    .collect();
                // Mostly sorted, so that valid curves are common.
                if rng.random_range(0..4) != 0 {
                    v.sort_by(f64::total_cmp);
                }
                v
            };
            let (lp, le, lc) = (n, len(&mut rng), len(&mut rng));
            let prices = column(&mut rng, lp);
            let exports = column(&mut rng, le);
            let costs = column(&mut rng, lc);
            let view = CurveView {
                prices: &prices,
                exports: &exports,
                costs: &costs,
            };
            let detailed = view.first_violation();
            assert_eq!(
                view.holds_invariants(),
                detailed.is_ok(),
                "{prices:?} {exports:?} {costs:?}: {detailed:?}"
            );
            if detailed.is_ok() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(
            valid > 1_000 && invalid > 1_000,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn export_at_count_is_export_at_without_the_search() {
        // Jumps (equal prices), flat stretches (equal exports), and prices exactly on,
        // between, below and above the breakpoints.
        let c = OfferCurve::new(
            vec![-5.0, 0.0, 10.0, 10.0, 25.0, 40.0, 40.0, 70.0],
            vec![-3.0, -3.0, 1.0, 6.0, 6.0, 20.0, 35.0, 50.0],
            vec![0.0, 0.0, 20.0, 70.0, 70.0, 400.0, 900.0, 1900.0],
        )
        .unwrap();
        let v = c.view();
        let n = v.len();
        let mut prices: Vec<f64> = v.prices.to_vec();
        prices.extend([
            -1e9, -5.1, -2.5, 3.0, 9.999, 10.001, 17.0, 33.3, 55.0, 69.9, 71.0, 1e9,
        ]);
        prices.extend(v.prices.iter().map(|&p| p.next_up()));
        prices.extend(v.prices.iter().map(|&p| p.next_down()));
        for &p in &prices {
            let full = v.count_at_or_below(p, 0..n);
            assert_eq!(full, v.prices.partition_point(|&q| q <= p), "{p}");
            // Any range that holds the count gives the same count.
            for lo in 0..=full {
                for hi in full..=n {
                    assert_eq!(v.count_at_or_below(p, lo..hi), full, "{p} in {lo}..{hi}");
                }
            }
            assert_eq!(
                v.export_at_count(p, full).to_bits(),
                v.export_at(p).to_bits(),
                "{p}"
            );
        }
        assert!(
            v.export_at_count(f64::NAN, v.count_at_or_below(f64::NAN, 0..n))
                .is_nan()
        );
    }

    #[test]
    fn searches_started_anywhere_find_the_same_segment() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // The hand-made curve with jumps and flat stretches, then random ones with repeated
        // prices (jumps) and exports (flat stretches).
        let mut curves = vec![
            OfferCurve::new(
                vec![-5.0, 0.0, 10.0, 10.0, 25.0, 40.0, 40.0, 70.0],
                vec![-3.0, -3.0, 1.0, 6.0, 6.0, 20.0, 35.0, 50.0],
                vec![0.0, 0.0, 20.0, 70.0, 70.0, 400.0, 900.0, 1900.0],
            )
            .unwrap(),
            OfferCurve::fixed(4.0, 1.0),
        ];
        for _ in 0..200 {
            let n = rng.random_range(2..12);
            let (mut p, mut e) = (rng.random_range(-50.0..50.0), rng.random_range(-50.0..50.0));
            let (mut prices, mut exports) = (Vec::new(), Vec::new());
            for _ in 0..n {
                prices.push(p);
                exports.push(e);
                p += [0.0, rng.random_range(0.0..30.0)][rng.random_range(0..2usize)];
                e += [0.0, rng.random_range(0.0..30.0)][rng.random_range(0..2usize)];
            }
            curves.push(OfferCurve::new(prices, exports, vec![0.0; n]).unwrap());
        }
        let mut inside = 0;
        for c in &curves {
            let v = c.view();
            let n = v.len();
            let mut prices = vec![-1e300, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
            for &p in v.prices {
                prices.extend([p, p.next_up(), p.next_down(), p + 0.37, p - 0.37]);
            }
            for &p in &prices {
                let count = v.prices.partition_point(|&q| q <= p);
                let (export, up, down) =
                    (v.export_at(p), v.slope_at(p, false), v.slope_at(p, true));
                // The slopes by plain bisection: the segment right of `p` (left of it when
                // moving down), 0 outside the curve or on a jump.
                let slope = |k: usize| {
                    let dp = v.prices[k + 1] - v.prices[k];
                    if dp > 0.0 {
                        (v.exports[k + 1] - v.exports[k]) / dp
                    } else {
                        0.0
                    }
                };
                let right = if n > 1 && p >= v.prices[0] && p < v.prices[n - 1] {
                    slope(count - 1)
                } else {
                    0.0
                };
                let left = if n > 1 && p > v.prices[0] && p <= v.prices[n - 1] {
                    slope(v.prices.partition_point(|&q| q < p) - 1)
                } else {
                    0.0
                };
                assert_eq!(
                    (up.to_bits(), down.to_bits()),
                    (right.to_bits(), left.to_bits()),
                    "{p}"
                );
                for start in (0..=n + 1).chain([usize::MAX]) {
                    let mut guess = start;
                    let got = v.export_at_near(p, &mut guess);
                    assert_eq!(got.to_bits(), export.to_bits(), "{p} from {start} on {v:?}");
                    // The guess becomes the count wherever the search ran.
                    if p > v.prices[0] && p < v.prices[n - 1] {
                        assert_eq!(guess, count, "{p} from {start}");
                        inside += 1;
                    } else {
                        assert_eq!(guess, start, "{p} from {start}");
                    }
                    assert_eq!(v.slope_near(p, false, start).to_bits(), up.to_bits());
                    assert_eq!(v.slope_near(p, true, start).to_bits(), down.to_bits());
                }
            }
        }
        assert!(inside > 10_000, "{inside} searches inside a curve");
    }

    fn unit(c2: f64, c1: f64, pmin: f64, pmax: f64) -> QuadraticUnit {
        QuadraticUnit {
            c2,
            c1,
            c0: 10.0,
            pmin,
            pmax,
        }
    }

    #[test]
    fn two_units_hand_computed() {
        // Unit A: c2 0.5, c1 10, 0..10 MW -> marginal 10..20 $/MWh.
        // Unit B: c2 0.25, c1 15, 2..12 MW -> marginal 16..21 $/MWh.
        let a = unit(0.5, 10.0, 0.0, 10.0);
        let b = unit(0.25, 15.0, 2.0, 12.0);
        let c = OfferCurve::from_units(&[a, b], -5.0, 1.0).unwrap();
        assert_eq!(c.prices, vec![10.0, 16.0, 20.0, 21.0]);
        // At 10: A 0, B 2 -> 2 - 5 = -3. At 16: A 6, B 2 -> 3. At 20: A 10, B 10 -> 15.
        // At 21: A 10, B 12 -> 17.
        assert_eq!(c.exports, vec![-3.0, 3.0, 15.0, 17.0]);
        // At price 18: A 8, B 6 -> 9.
        assert!((c.export_at(18.0) - 9.0).abs() < 1e-12);
        // Slope between 16 and 20: 1/(2*0.5) + 1/(2*0.25) = 3 MW per $/MWh.
        assert!((c.slope_at(18.0, true) - 3.0).abs() < 1e-12);
        assert!((c.slope_at(16.0, false) - 3.0).abs() < 1e-12);
        assert!((c.slope_at(16.0, true) - 1.0).abs() < 1e-12);
        assert_eq!(c.export_at(0.0), -3.0);
        assert_eq!(c.export_at(100.0), 17.0);
        assert_eq!(c.slope_at(100.0, false), 0.0);
        // Cost at export 9 (A 8, B 6): 0.5*64 + 80 + 10 + 0.25*36 + 90 + 10 + 1 = 232.
        assert!((c.cost_at_export(9.0) - 232.0).abs() < 1e-9);
        assert!((c.price_at_export(9.0) - 18.0).abs() < 1e-12);
    }

    #[test]
    fn cost_matches_direct_evaluation_everywhere() {
        let units = [
            unit(0.01, 20.0, 10.0, 100.0),
            unit(0.2, 18.0, 0.0, 30.0),
            unit(0.05, 40.0, 5.0, 50.0),
        ];
        let c = OfferCurve::from_units(&units, -60.0, 0.0).unwrap();
        for i in 0..=400 {
            let price = i as f64 * 0.2;
            let x = c.export_at(price);
            let direct: f64 = units.iter().map(|u| u.cost(u.output_at(price))).sum();
            assert!(
                (c.cost_at_export(x) - direct).abs() < 1e-9 * direct.abs().max(1.0),
                "price {price}"
            );
        }
    }

    #[test]
    fn rejects_non_monotone_and_nan() {
        assert!(OfferCurve::new(vec![1.0, 0.5], vec![0.0, 1.0], vec![0.0, 0.0]).is_err());
        assert!(OfferCurve::new(vec![0.0, 1.0], vec![1.0, 0.0], vec![0.0, 0.0]).is_err());
        let e = OfferCurve::new(vec![0.0, f64::NAN], vec![0.0, 1.0], vec![0.0, 0.0]).unwrap_err();
        assert!(e.to_string().contains("prices[1]"), "{e}");
        assert!(OfferCurve::from_units(&[unit(0.0, 1.0, 0.0, 1.0)], 0.0, 0.0).is_err());
    }

    #[test]
    fn prices_where_a_curve_meets_a_limit() {
        // Exports -3 at 10, 3 at 16, 15 at 20, a flat stretch to 21, then 17 at 22.
        let c = OfferCurve::new(
            vec![10.0, 16.0, 20.0, 21.0, 22.0],
            vec![-3.0, 3.0, 15.0, 15.0, 17.0],
            vec![0.0; 5],
        )
        .unwrap();
        // Within 9 MW up to 18 $/MWh (interpolated on the 16..20 segment).
        assert!((c.highest_price_within(9.0) - 18.0).abs() < 1e-12);
        // On the flat stretch the export stays at 15 up to 21 $/MWh: the highest price.
        assert_eq!(c.highest_price_within(15.0), 21.0);
        // And it first reaches 15 at 20 $/MWh: the lowest.
        assert_eq!(c.lowest_price_reaching(15.0), 20.0);
        assert!((c.lowest_price_reaching(0.0) - 13.0).abs() < 1e-12);
        // Limits beyond the curve: never exceeded / always reached.
        assert_eq!(c.highest_price_within(17.0), f64::INFINITY);
        assert_eq!(c.lowest_price_reaching(-3.0), f64::NEG_INFINITY);
        // Limits the curve cannot meet at any price: the end prices.
        assert_eq!(c.highest_price_within(-5.0), 10.0);
        assert_eq!(c.lowest_price_reaching(20.0), 22.0);
        // Consistency with export_at on both sides of each limit price.
        for x in [-2.0, 0.0, 5.0, 14.0, 16.0] {
            let (lo, hi) = (c.lowest_price_reaching(x), c.highest_price_within(x));
            assert!(
                c.export_at(lo - 1e-9) < x && c.export_at(lo) >= x - 1e-9,
                "{x}"
            );
            assert!(
                c.export_at(hi) <= x + 1e-9 && c.export_at(hi + 1e-9) > x,
                "{x}"
            );
        }
    }

    #[test]
    fn next_breakpoint_in_both_directions() {
        let c = OfferCurve::new(vec![1.0, 2.0, 5.0], vec![0.0, 3.0, 3.0], vec![0.0; 3]).unwrap();
        assert_eq!(c.next_breakpoint(3.0, true), Some(2.0));
        assert_eq!(c.next_breakpoint(3.0, false), Some(5.0));
        assert_eq!(c.next_breakpoint(2.0, true), Some(1.0));
        assert_eq!(c.next_breakpoint(2.0, false), Some(5.0));
        assert_eq!(c.next_breakpoint(1.0, true), None);
        assert_eq!(c.next_breakpoint(5.0, false), None);
        assert_eq!(c.next_breakpoint(f64::NAN, true), None);
    }

    #[test]
    fn nan_never_panics() {
        let c = OfferCurve::from_units(&[unit(0.5, 10.0, 0.0, 10.0)], 0.0, 0.0).unwrap();
        assert!(c.export_at(f64::NAN).is_nan());
        assert_eq!(c.slope_at(f64::NAN, true), 0.0);
        assert_eq!(c.slope_at(f64::NAN, false), 0.0);
        assert!(c.cost_at_export(f64::NAN).is_nan());
        assert!(c.price_at_export(f64::NAN).is_nan());
    }

    #[test]
    fn a_curve_rebuilt_in_place_is_the_fresh_one() {
        let big = [
            unit(0.01, 20.0, 10.0, 100.0),
            unit(0.2, 18.0, 0.0, 30.0),
            unit(0.05, 40.0, 5.0, 50.0),
        ];
        let small = [unit(0.5, 10.0, 0.0, 10.0)];
        let mut c = OfferCurve::from_units(&big, -60.0, 0.0).unwrap();
        for (units, fixed) in [(&small[..], -5.0), (&[][..], 7.0), (&big[..], 2.0)] {
            c.rebuild_from_units(units, fixed, 1.0).unwrap();
            assert_eq!(c, OfferCurve::from_units(units, fixed, 1.0).unwrap());
        }
        assert_eq!(c.view().to_curve(), c);
        assert!(
            c.rebuild_from_units(&[unit(0.0, 1.0, 0.0, 1.0)], 0.0, 0.0)
                .is_err()
        );
    }

    /// `OfferCurve::from_units` as first written: pushes, the library's sort and dedup,
    /// `f64::clamp`, and the full `check`.
    fn plain_from_units(units: &[QuadraticUnit], fe: f64, fc: f64) -> Result<OfferCurve> {
        for (i, u) in units.iter().enumerate() {
            if !(u.c2 > 0.0 && u.c2.is_finite()) {
                let allowed = "> 0 (apply the linear-cost floor first)";
                return Err(Error::invalid(format!("unit[{i}].c2"), u.c2, allowed));
            }
            if !(u.pmin <= u.pmax) {
                let allowed = format!("<= pmax = {}", u.pmax);
                return Err(Error::invalid(format!("unit[{i}].pmin"), u.pmin, allowed));
            }
        }
        if units.is_empty() {
            return Ok(OfferCurve::fixed(fe, fc));
        }
        let mut prices = Vec::new();
        for u in units {
            prices.push(u.c1 + 2.0 * u.c2 * u.pmin);
            prices.push(u.c1 + 2.0 * u.c2 * u.pmax);
        }
        prices.sort_by(f64::total_cmp);
        prices.dedup();
        let (mut exports, mut costs) = (Vec::new(), Vec::new());
        for &price in &prices {
            let (mut x, mut c) = (fe, fc);
            for u in units {
                let p = ((price - u.c1) / (2.0 * u.c2)).clamp(u.pmin, u.pmax);
                x += p;
                c += (u.c2 * p + u.c1) * p + u.c0;
            }
            exports.push(x);
            costs.push(c);
        }
        OfferCurve::new(prices, exports, costs)
    }

    #[test]
    fn unit_curves_are_the_plain_build_bit_for_bit() {
        use rand::{RngExt, SeedableRng};
        let bits = |c: &OfferCurve| -> Vec<u64> {
            [&c.prices, &c.exports, &c.costs]
                .iter()
                .flat_map(|v| v.iter().map(|x| x.to_bits()))
                .collect()
        };
        // Common coefficients tie breakpoints (repeated values) and sign zeros; one draw
        // in 30 is an extreme that overflows (huge c2 or c1, infinite limits), is
        // subnormal, or breaks a unit's checks.
        let c2s = (
            [1e-3, 0.05, 0.05, 2.0],
            [1e300, 5e-324, f64::MAX, 0.0, f64::NAN],
        );
        let c1s = ([0.0, -0.0, 10.0, 10.0, 35.5], [-1e308, 1e308, f64::NAN]);
        let limits = (
            [0.0, -0.0, 5.0, 10.0, 10.0],
            [1e308, f64::INFINITY, f64::NEG_INFINITY],
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let pick = |rng: &mut rand_chacha::ChaCha8Rng, (common, rare): (&[f64], &[f64])| {
            if rng.random_range(0..30) == 0 {
                rare[rng.random_range(0..rare.len())]
            } else {
                common[rng.random_range(0..common.len())]
            }
        };
        let (c2s, c1s, limits) = (
            (&c2s.0[..], &c2s.1[..]),
            (&c1s.0[..], &c1s.1[..]),
            (&limits.0[..], &limits.1[..]),
        );
        let (mut valid, mut invalid) = (0, 0);
        let mut reused = OfferCurve::fixed(0.0, 0.0);
        for _ in 0..20_000 {
            let units: Vec<QuadraticUnit> = (0..rng.random_range(1..=7usize))
                .map(|_| {
                    let (a, b) = (pick(&mut rng, limits), pick(&mut rng, limits));
                    QuadraticUnit {
                        c2: pick(&mut rng, c2s),
                        c1: pick(&mut rng, c1s),
                        c0: pick(&mut rng, c1s),
                        pmin: a.min(b),
                        pmax: a.max(b),
                    }
                })
                .collect();
            let fe = pick(&mut rng, c1s);
            let want = plain_from_units(&units, fe, 1.5);
            let got = reused.rebuild_from_units(&units, fe, 1.5);
            match (&want, &got) {
                (Ok(w), Ok(())) => {
                    assert_eq!(bits(&reused), bits(w), "{units:?} {fe}");
                    valid += 1;
                }
                (Err(w), Err(g)) => {
                    // A NaN's sign and payload depend on which operand of a commutative
                    // operation the compiler puts first (x86 returns the first NaN), and
                    // `total_cmp` sorts NaNs by sign: which value is named first may then
                    // differ between two builds of the same sum.
                    let (w, g) = (w.to_string(), g.to_string());
                    if !w.contains("NaN") && !g.contains("NaN") {
                        assert_eq!(w, g, "{units:?} {fe}");
                    }
                    invalid += 1;
                }
                _ => panic!("{units:?} {fe}: plain {want:?}, rebuilt {got:?}"),
            }
            // The stack path and the general one build the same breakpoints.
            if units.len() <= STACK_UNITS && got.is_ok() {
                let mut small = OfferCurve::fixed(0.0, 0.0);
                let mut large = OfferCurve::fixed(0.0, 0.0);
                for c in [&mut small, &mut large] {
                    c.prices.clear();
                    c.exports.clear();
                    c.costs.clear();
                }
                let fs = fill_small(&mut small, &units, fe, 1.5);
                let fl = fill_large(&mut large, &units, fe, 1.5);
                assert_eq!((fs, bits(&small)), (fl, bits(&large)), "{units:?}");
            }
        }
        assert!(
            valid > 5_000 && invalid > 1_000,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn fixed_curve_is_flat() {
        let c = OfferCurve::fixed(-7.0, 3.0);
        assert_eq!(c.export_at(-100.0), -7.0);
        assert_eq!(c.export_at(100.0), -7.0);
        assert_eq!(c.slope_at(5.0, true), 0.0);
        assert_eq!(c.cost_at_export(-7.0), 3.0);
    }
}
