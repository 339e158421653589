//! The smart grid's offer curves over a continuous range of system loads (issue 7).
//!
//! An uncertainty study draws the system load of every (run, hour) from a continuous
//! distribution, and a network-exact curve ([`crate::grid::curve`], `Market::curves`, about
//! 4 ms on RTS-24) is far too costly to rebuild per sample. A [`LoadTable`] holds, per hour,
//! the exact curves at a few system loads (levels) and answers a load between two levels
//! from them, exactly wherever it can.
//!
//! **Why blending breakpoints is exact between vertices.** The smart grid's dispatch is a
//! parametric QP in (price, load): price in the objective, load in the constraints. Its
//! solution is piecewise affine in (price, load) jointly over convex critical regions (one
//! per active set of unit limits and line ratings, the export range's edges included). A
//! curve's breakpoints are the prices where the active set changes, i.e. where the line
//! `load = L` crosses a region boundary; between two loads with no vertex of that partition
//! in between, the line crosses the same boundaries in the same order, so every breakpoint's
//! price *and* export (and the cost, quadratically) move affinely with the load. Blending
//! two such levels entry by entry, prices included (`a + w * (b - a)`), therefore
//! reproduces the exact curve at any load in between (measured to about 1e-11 MW on
//! RTS-24). Blending at a fixed price instead (the previous representation, on a common
//! price grid) is only first-order accurate: the kinks move in price with the load, and the
//! blend missed the exact curve by about a quarter of the load step times the slope change
//! (7.5 MW at random loads on RTS-24 with levels 0.04 apart).
//!
//! **What happens at vertices.** Where a breakpoint appears or disappears (a unit reaches a
//! limit at the curve's end, a line saturates), the curves on either side have different
//! breakpoint sequences and no entry-by-entry blend is exact. Such an interval is bisected
//! until its two ends are close enough that answering any load inside with the *nearest
//! level* (weight 0) is within `tol_mw`: the bound used is the largest export difference of
//! the two end curves over all prices, `max_p |x_a(p) - x_b(p)|`, exact over prices because
//! both are piecewise linear in price (the largest difference sits on a breakpoint of one of
//! them). It bounds the nearest level's error at any load inside on the assumption that the
//! export at a fixed price is monotone in load over the interval (a higher load leaves less
//! to export at any price), so the exact export lies between the two ends'; the sampled
//! checks in `tests/integration/load_table.rs` confirm it on every case.
//!
//! **The build**, per hour independently (in parallel over hours): levels start
//! [`INITIAL_SPACING`] apart in load scale over the range, ends included, at loads
//! `base_load * scale` (a scale of 1 keeps the base load bit for bit). An interval whose end
//! curves have the same number of breakpoints is accepted as a *blend interval* when the
//! exact curve at its midpoint has that number too and each of its breakpoints (price and
//! export) matches the blend within [`MATCH_TOL`] (relative to `max(1, |value|)`); its cost
//! error there (costs are quadratic in load, so the midpoint holds the largest) is recorded.
//! Any other interval is bisected (the midpoint curve, already built, becomes a level) until
//! it blends or its nearest-level bound is within `tol_mw`. A build that would need more
//! than `max_levels_per_hour` levels fails with the figures it reached; it never returns a
//! table worse than asked for. Both the blend's match of the midpoint and the
//! nearest-level bounds are reported ([`LoadTable::export_error_mw`]).
//!
//! **Seeded curves.** Each exact curve is a walk over certified pieces from a seed
//! (`grid::curve`), which `Market::curves` finds by an interior-point solve. A level's
//! neighbours (the interval's ends, or the previous initial level) were built at nearby
//! loads, so the walk first tries the active sets they used at the same export
//! ([`crate::grid::curve::CurveSeeds`]) and solves only when none certifies: on RTS-24 over
//! 0.88..1.12, 93 of 4 421 seeds needed a solve. What remains is mostly the two LPs of
//! each curve's export range. A seed is used only where its piece certifies, so the curve
//! is exact either way, and bitwise the solve-seeded one except where the solve's guesses
//! fail at the walk's first export (the unseeded walk then starts elsewhere and the
//! breakpoints may differ in their last bits: 1 curve of 7 379 over the five cases of
//! `tests/integration/load_table.rs`, which builds each table both ways,
//! [`LoadTable::build_counted`]).
//!
//! Measured (`tests/integration/load_table.rs`, `tol_mw = 0.01`, release, 2 cores, one
//! test at a time, seeded build against unseeded): RTS-24 over scales 0.88..1.12 takes 30/76/115 levels
//! per hour (min/mean/max) and 2.4 s (3.6 s unseeded); over 0.8..1.2, 57/115/203 and 4.6 s
//! (5.4 s); case118 derated over 0.95..1.05, 3/61/194 and 2.4 s (3.7 s).
//! Random loads (almost all inside blend intervals) are within about 1e-10 MW of exact
//! rebuilds at every price; loads inside non-blend intervals within 4.1e-3 MW (build bound
//! 9.9e-3 MW). Most levels sit around vertices: with an export slope of about 1 MW per MW
//! of load at a fixed price, the nearest level needs intervals about `tol_mw` wide there,
//! some 14 bisections from the initial spacing. Costs blended linearly are quadratic in
//! load: up to 22 $/h (3.8e-4 relative) off at blend midpoints.
//!
//! **Reuse.** A table is plain data (`Clone`, no references to the market). A batch lays out
//! each hour's level curves consecutively and per (run, hour) stores only `(level, weight)`
//! from [`LoadTable::locate`]; a pair `(k, k+1)` is read blended entry by entry only where
//! [`HourLevels::blends`] says so, and such pairs have equal lengths.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::grid::curve::CurveSeeds;
use crate::market::Market;
use crate::microgrid::HOURS;
use crate::offer::OfferCurve;

/// Spacing of the levels a build starts from, as a load scale (5 % of the base load).
pub const INITIAL_SPACING: f64 = 0.05;

/// Largest mismatch, relative to `max(1, |value|)`, of a midpoint's exact breakpoints
/// (price, export) from the blend of the interval's ends for the interval to blend.
pub const MATCH_TOL: f64 = 1e-9;

/// One hour of a [`LoadTable`]: the exact curves at ascending system loads, and per
/// interval between neighbouring levels whether their entry-by-entry blend is exact.
#[derive(Debug, Clone, PartialEq)]
pub struct HourLevels {
    /// System loads of the levels, MW, strictly ascending.
    loads_mw: Vec<f64>,
    /// `Market::curves(hour)[0]` at each level's load, unmodified.
    curves: Vec<OfferCurve>,
    /// Per interval `k..k+1`: true when the entry-by-entry blend is exact there (equal
    /// lengths), false when a load inside is answered by the nearest level.
    blend: Vec<bool>,
}

impl HourLevels {
    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.loads_mw.len()
    }

    /// System load of level `k`, MW. Panics if `k >= self.levels()`.
    pub fn load_mw(&self, k: usize) -> f64 {
        self.loads_mw[k]
    }

    /// The exact curve of level `k`. Panics if `k >= self.levels()`.
    pub fn curve(&self, k: usize) -> &OfferCurve {
        &self.curves[k]
    }

    /// Whether levels `k` and `k+1` blend entry by entry (false for the top level).
    pub fn blends(&self, k: usize) -> bool {
        self.blend.get(k).copied().unwrap_or(false)
    }
}

/// The smart grid's offer curves per hour at ascending system loads, blended entry by
/// entry between levels where that is exact (module doc), with the build's errors.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTable {
    /// The base market's system load per hour, MW.
    base_load_mw: [f64; HOURS],
    /// The load scales the table covers, (lo, hi), factors on the base loads.
    scale_range: (f64, f64),
    /// One set of levels per hour.
    hours: Vec<HourLevels>,
    /// The tolerance the build was asked for and met, MW.
    tol_mw: f64,
    /// Largest export error bound: nearest-level bounds of non-blend intervals and the
    /// blend intervals' midpoint mismatch, MW.
    export_error_mw: f64,
    /// Largest cost error of the blend at the blend intervals' midpoints, $/h.
    cost_error: f64,
    /// Largest cost error relative to `max(1, |exact cost|)`.
    cost_error_rel: f64,
}

/// The largest errors an hour's build reached.
#[derive(Debug, Clone, Copy, Default)]
struct Reached {
    export_mw: f64,
    cost: f64,
    cost_rel: f64,
}

impl Reached {
    fn max(self, o: Reached) -> Reached {
        Reached {
            export_mw: self.export_mw.max(o.export_mw),
            cost: self.cost.max(o.cost),
            cost_rel: self.cost_rel.max(o.cost_rel),
        }
    }
}

impl LoadTable {
    /// Builds a table over load scales `scale_range = (lo, hi)` (factors on every hour's
    /// base system load, `0 < lo < hi`) that answers every load inside within `tol_mw` MW
    /// (> 0) of the exact curve, with at most `max_levels_per_hour` levels in any hour
    /// (module doc). Hours are built in parallel.
    ///
    /// Errors: [`Error::InvalidInput`] naming `scale_range`, `tol_mw` or `max_levels` for
    /// bad values, naming `scale_range` with the scale, hour and load when the smart grid
    /// cannot serve a load, and naming `max_levels` (with the figures reached) when the
    /// tolerance needs more levels.
    pub fn build(
        market: &Market,
        scale_range: (f64, f64),
        tol_mw: f64,
        max_levels_per_hour: usize,
    ) -> Result<LoadTable> {
        Ok(Self::build_counted(market, scale_range, tol_mw, max_levels_per_hour, true)?.0)
    }

    /// [`LoadTable::build`], and how its exact curves were seeded. With `seeded` false
    /// every curve's walk starts from an interior-point solve, as [`Market::curves`] builds
    /// a curve; with `seeded` true (what `build` does) it first tries the active sets the
    /// neighbouring levels' curves used at the same export (`grid::curve::CurveSeeds`),
    /// which spares most solves. The tables have the same levels and blend flags either
    /// way, and their curves are bitwise equal except where the solve's guesses fail at a
    /// walk's first export (module doc: last bits, 1 curve of 7 379 in
    /// `tests/integration/load_table.rs`, which builds each case both ways).
    pub fn build_counted(
        market: &Market,
        scale_range: (f64, f64),
        tol_mw: f64,
        max_levels_per_hour: usize,
        seeded: bool,
    ) -> Result<(LoadTable, SeedCounts)> {
        let (lo, hi) = scale_range;
        let range_text = format!("({lo}, {hi})");
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo) {
            return Err(Error::invalid(
                "scale_range",
                &range_text,
                "finite load scales (lo, hi) with 0 < lo < hi",
            ));
        }
        if !(tol_mw.is_finite() && tol_mw > 0.0) {
            return Err(Error::invalid("tol_mw", tol_mw, "a finite number > 0 MW"));
        }
        let intervals = ((hi - lo) / INITIAL_SPACING - 1e-9).ceil().max(1.0) as usize;
        if max_levels_per_hour < intervals + 1 {
            return Err(Error::invalid(
                "max_levels",
                max_levels_per_hour,
                format!(
                    ">= {}, the levels {INITIAL_SPACING} apart that a build over {range_text} \
                     starts from",
                    intervals + 1
                ),
            ));
        }
        check_scales(market, lo, hi, &range_text)?;
        let scales: Vec<f64> = (0..=intervals)
            .map(|i| {
                if i == intervals {
                    hi
                } else {
                    lo + (hi - lo) * i as f64 / intervals as f64
                }
            })
            .collect();
        let ctx = Ctx {
            market,
            range_text: &range_text,
            tol_mw,
            max_levels: max_levels_per_hour,
            seeded,
        };
        let built: Vec<Result<Building>> = (0..HOURS)
            .into_par_iter()
            .map(|hour| ctx.build_hour(hour, &scales))
            .collect::<Vec<_>>();
        let built = crate::error::in_order(built)?;
        let mut reached = Reached::default();
        let mut seeds = SeedCounts::default();
        let mut hours = Vec::with_capacity(HOURS);
        for b in built {
            reached = reached.max(b.reached);
            seeds.add(b.seeds);
            hours.push(b.levels);
        }
        let table = LoadTable {
            base_load_mw: market.system_load_mw,
            scale_range,
            hours,
            tol_mw,
            export_error_mw: reached.export_mw,
            cost_error: reached.cost,
            cost_error_rel: reached.cost_rel,
        };
        Ok((table, seeds))
    }

    /// The levels of one hour. Panics if `hour >= self.hours()`.
    pub fn hour(&self, hour: usize) -> &HourLevels {
        &self.hours[hour]
    }

    /// Number of hours (24).
    pub fn hours(&self) -> usize {
        self.hours.len()
    }

    /// The base market's system load per hour, MW (scale 1).
    pub fn base_load_mw(&self) -> &[f64; HOURS] {
        &self.base_load_mw
    }

    /// The load scales the table covers, `(lo, hi)`, as built.
    pub fn scale_range(&self) -> (f64, f64) {
        self.scale_range
    }

    /// Levels over all hours.
    pub fn levels_total(&self) -> usize {
        self.hours.iter().map(HourLevels::levels).sum()
    }

    /// Most levels of any hour.
    pub fn levels_max(&self) -> usize {
        self.hours.iter().map(HourLevels::levels).max().unwrap_or(0)
    }

    /// The tolerance the build was asked for and met, MW.
    pub fn tol_mw(&self) -> f64 {
        self.tol_mw
    }

    /// Largest export error bound of the build, MW (at most `tol_mw`): the nearest-level
    /// bound of every non-blend interval and the blend intervals' mismatch at their
    /// midpoints (module doc).
    pub fn export_error_mw(&self) -> f64 {
        self.export_error_mw
    }

    /// Largest error of the blended costs at the blend intervals' midpoints, $/h,
    /// breakpoint by breakpoint against the exact curve there.
    pub fn cost_error(&self) -> f64 {
        self.cost_error
    }

    /// [`LoadTable::cost_error`] relative to `max(1, |exact cost|)`.
    pub fn cost_error_rel(&self) -> f64 {
        self.cost_error_rel
    }

    /// The level `k` and weight `w` that answer a system load of `load_mw` MW at `hour`.
    /// In a blend interval `w = (load - L_k) / (L_{k+1} - L_k)` in `[0, 1]` (exactly
    /// `(k, 0.0)` at a level); in a non-blend interval the nearest level with `w = 0.0`; the
    /// top level gives `(last, 0.0)`. `None` outside the tabulated loads (never
    /// extrapolated), for a non-finite load and for an hour out of range.
    pub fn locate(&self, hour: usize, load_mw: f64) -> Option<(usize, f64)> {
        let h = self.hours.get(hour)?;
        let loads = &h.loads_mw;
        let last = loads.len() - 1;
        if !(load_mw >= loads[0] && load_mw <= loads[last]) {
            return None;
        }
        let k = loads.partition_point(|&l| l <= load_mw) - 1;
        if k == last {
            return Some((k, 0.0));
        }
        let (a, b) = (loads[k], loads[k + 1]);
        if h.blend[k] {
            Some((k, ((load_mw - a) / (b - a)).clamp(0.0, 1.0)))
        } else if load_mw - a <= b - load_mw {
            Some((k, 0.0))
        } else {
            Some((k + 1, 0.0))
        }
    }

    /// Writes the curve of `hour` at level `k` blended `w` of the way to level `k+1` into
    /// `out`, entry by entry (prices, exports and costs each `a + w * (b - a)`), reusing its
    /// storage. `w = 0` copies level `k` (the top level included).
    ///
    /// Errors: [`Error::InvalidInput`] naming `hour`, `level` or `weight` out of range
    /// (`w` in `[0, 1]`, and `w > 0` only where [`HourLevels::blends`]`(k)`); `out` is left
    /// unchanged.
    pub fn blend_into(&self, hour: usize, k: usize, w: f64, out: &mut OfferCurve) -> Result<()> {
        self.check_blend(hour, k, w)?;
        let h = &self.hours[hour];
        let a = &h.curves[k];
        if w == 0.0 {
            for (to, from) in [
                (&mut out.prices, &a.prices),
                (&mut out.exports, &a.exports),
                (&mut out.costs, &a.costs),
            ] {
                to.clear();
                to.extend_from_slice(from);
            }
            return Ok(());
        }
        let b = &h.curves[k + 1];
        blend_rows(a, b, w, out);
        Ok(())
    }

    /// The curve of `hour` at level `k` blended `w` of the way to `k+1` (see
    /// [`LoadTable::blend_into`]).
    pub fn curve(&self, hour: usize, k: usize, w: f64) -> Result<OfferCurve> {
        self.check_blend(hour, k, w)?;
        let n = self.hours[hour].curves[k].len();
        let mut out = OfferCurve {
            prices: Vec::with_capacity(n),
            exports: Vec::with_capacity(n),
            costs: Vec::with_capacity(n),
        };
        self.blend_into(hour, k, w, &mut out)?;
        Ok(out)
    }

    fn check_blend(&self, hour: usize, k: usize, w: f64) -> Result<()> {
        let Some(h) = self.hours.get(hour) else {
            return Err(Error::invalid(
                "hour",
                hour,
                format!("< {}", self.hours.len()),
            ));
        };
        if !(0.0..=1.0).contains(&w) {
            return Err(Error::invalid("weight", w, "a number in [0, 1]"));
        }
        let last = h.levels() - 1;
        if k > last {
            return Err(Error::invalid(
                "level",
                k,
                format!("<= {last} at hour {hour}"),
            ));
        }
        if w > 0.0 && !h.blends(k) {
            return Err(Error::invalid(
                "weight",
                w,
                format!(
                    "0 at level {k} of hour {hour}: levels {k} and {} do not blend",
                    k + 1
                ),
            ));
        }
        Ok(())
    }
}

/// Entry-by-entry blend of two curves of equal length into `out`, reusing its storage.
/// `a + w * (b - a)`, the form the engine uses, so both give the same bits.
fn blend_rows(a: &OfferCurve, b: &OfferCurve, w: f64, out: &mut OfferCurve) {
    for (to, x, y) in [
        (&mut out.prices, &a.prices, &b.prices),
        (&mut out.exports, &a.exports, &b.exports),
        (&mut out.costs, &a.costs, &b.costs),
    ] {
        to.clear();
        to.extend(x.iter().zip(y).map(|(&u, &v)| u + w * (v - u)));
    }
}

/// A base load times a scale, as a scaled market computes it (scale 1 keeps it bit for
/// bit, which `x * 1.0` does).
fn scaled(base: f64, scale: f64) -> f64 {
    base * scale
}

/// What every hour's build shares.
struct Ctx<'a> {
    market: &'a Market,
    range_text: &'a str,
    tol_mw: f64,
    max_levels: usize,
    /// Whether each curve's walk is seeded from its neighbouring levels' active sets
    /// (false: an interior-point solve seeds every curve, as `Market::curves`).
    seeded: bool,
}

/// A level's exact curve and the active sets of its pieces.
type Level = (OfferCurve, CurveSeeds);

/// How a build's exact curves were seeded ([`LoadTable::build_counted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedCounts {
    /// Exact curves built (levels, and midpoints that only tested a blend).
    pub curves: usize,
    /// Seeds of their walks taken from a neighbouring level's active sets.
    pub reused: usize,
    /// Seeds of their walks that needed an interior-point solve.
    pub solved: usize,
}

impl SeedCounts {
    fn add(&mut self, o: SeedCounts) {
        self.curves += o.curves;
        self.reused += o.reused;
        self.solved += o.solved;
    }
}

/// An hour's levels while they are built.
struct Building {
    /// How its curves were seeded.
    seeds: SeedCounts,
    levels: HourLevels,
    reached: Reached,
}

impl Ctx<'_> {
    /// The exact curve at `hour` with that hour's system load `load_mw` (a market clone).
    /// A failure names the scale, hour and load under `scale_range`.
    /// The walk is seeded from `seeds` (the curves of neighbouring levels) when the build
    /// is (`Ctx::seeded`).
    fn curve_at(
        &self,
        market: &mut Market,
        hour: usize,
        load_mw: f64,
        seeds: &[&CurveSeeds],
        counts: &mut SeedCounts,
    ) -> Result<Level> {
        market.system_load_mw[hour] = load_mw;
        let seeds = if self.seeded { seeds } else { &[] };
        let level = market.smart_grid_curve(hour, seeds).map_err(|e| match e {
            Error::InvalidInput { .. } | Error::Solver { .. } => Error::invalid(
                "scale_range",
                self.range_text,
                format!(
                    "load scales at which the smart grid can build its curve: at scale {} \
                     (hour {hour}, system load {load_mw:.3} MW): {e}",
                    load_mw / self.market.system_load_mw[hour]
                ),
            ),
            other => other,
        })?;
        counts.add(SeedCounts {
            curves: 1,
            reused: level.1.reused,
            solved: level.1.solved,
        });
        Ok(level)
    }

    /// One hour's levels: the initial scales, each interval refined (module doc).
    fn build_hour(&self, hour: usize, scales: &[f64]) -> Result<Building> {
        let mut market = self.market.clone();
        let base = self.market.system_load_mw[hour];
        let loads: Vec<f64> = scales.iter().map(|&s| scaled(base, s)).collect();
        let mut curves: Vec<Level> = Vec::with_capacity(loads.len());
        let mut counts = SeedCounts::default();
        for &l in &loads {
            let seeds: Vec<&CurveSeeds> = curves.last().map(|c| &c.1).into_iter().collect();
            let level = self.curve_at(&mut market, hour, l, &seeds, &mut counts)?;
            curves.push(level);
        }
        let mut b = Building {
            seeds: counts,
            levels: HourLevels {
                loads_mw: vec![loads[0]],
                curves: vec![curves[0].0.clone()],
                blend: Vec::new(),
            },
            reached: Reached::default(),
        };
        let mut curves = curves.into_iter();
        let mut lower = curves.next().expect("two levels at least");
        for (i, upper) in curves.enumerate() {
            // Levels the initial intervals above this one still need.
            let reserve = loads.len() - 2 - i;
            self.refine(
                &mut market,
                hour,
                (loads[i], &lower),
                (loads[i + 1], &upper),
                reserve,
                &mut b,
            )?;
            lower = upper;
        }
        Ok(b)
    }

    /// Appends the levels inside `(a, b]` (the interval's end `a` is already the last
    /// level) and the flags of the intervals between them, bisecting where needed.
    fn refine(
        &self,
        market: &mut Market,
        hour: usize,
        a: (f64, &Level),
        b: (f64, &Level),
        reserve: usize,
        out: &mut Building,
    ) -> Result<()> {
        let mid = 0.5 * (a.0 + b.0);
        let same_len = a.1.0.len() == b.1.0.len();
        let mut mid_curve = None;
        let seeds = [&a.1.1, &b.1.1];
        if same_len {
            let m = self.curve_at(market, hour, mid, &seeds, &mut out.seeds)?;
            let w = (mid - a.0) / (b.0 - a.0);
            if let Some(r) = blend_match(&a.1.0, &b.1.0, w, &m.0) {
                out.reached = out.reached.max(r);
                return push(out, b, true);
            }
            mid_curve = Some(m);
        }
        let nearest = nearest_bound(&a.1.0, &b.1.0);
        if nearest <= self.tol_mw {
            out.reached.export_mw = out.reached.export_mw.max(nearest);
            return push(out, b, false);
        }
        let levels = out.levels.levels() + 1 + reserve;
        if levels + 1 > self.max_levels || !(a.0 < mid && mid < b.0) {
            return Err(Error::invalid(
                "max_levels",
                self.max_levels,
                format!(
                    "enough levels per hour for tol_mw = {} MW over scales {}: hour {hour} \
                     needs more than {levels} levels; between loads {:.6} and {:.6} MW \
                     (breakpoints {} and {}) the nearest level is still up to {nearest:.4} MW \
                     from the exact curve",
                    crate::error::compact(self.tol_mw),
                    self.range_text,
                    a.0,
                    b.0,
                    a.1.0.len(),
                    b.1.0.len()
                ),
            ));
        }
        let m = match mid_curve {
            Some(m) => m,
            None => self.curve_at(market, hour, mid, &seeds, &mut out.seeds)?,
        };
        // The upper half's levels are still to come: reserve one for the midpoint's
        // interval partner, the upper end.
        self.refine(market, hour, a, (mid, &m), reserve + 1, out)?;
        self.refine(market, hour, (mid, &m), b, reserve, out)
    }
}

/// Appends level `b` after an interval with blend flag `blend`.
fn push(out: &mut Building, b: (f64, &Level), blend: bool) -> Result<()> {
    out.levels.loads_mw.push(b.0);
    out.levels.curves.push(b.1.0.clone());
    out.levels.blend.push(blend);
    Ok(())
}

/// When `exact` (the curve at weight `w` between `a` and `b`, all of one length) matches
/// the entry-by-entry blend within [`MATCH_TOL`]: its largest export mismatch and cost
/// errors. `None` when it does not.
fn blend_match(a: &OfferCurve, b: &OfferCurve, w: f64, exact: &OfferCurve) -> Option<Reached> {
    if exact.len() != a.len() {
        return None;
    }
    let mut blend = OfferCurve::fixed(0.0, 0.0);
    blend_rows(a, b, w, &mut blend);
    let mut r = Reached::default();
    for i in 0..exact.len() {
        for (x, y) in [
            (blend.prices[i], exact.prices[i]),
            (blend.exports[i], exact.exports[i]),
        ] {
            if (x - y).abs() > MATCH_TOL * y.abs().max(1.0) {
                return None;
            }
        }
        r.export_mw = r.export_mw.max((blend.exports[i] - exact.exports[i]).abs());
        let c = exact.costs[i];
        let err = (blend.costs[i] - c).abs();
        r.cost = r.cost.max(err);
        r.cost_rel = r.cost_rel.max(err / c.abs().max(1.0));
    }
    Some(r)
}

/// `max_p |x_a(p) - x_b(p)|` over all prices: at the breakpoint prices of both, since both
/// are linear between their breakpoints and flat beyond their ends. Where the export at a
/// fixed price is monotone in load, it bounds the error of either end at any load inside.
/// At a price where a curve jumps (several breakpoints at one price) both one-sided limits
/// are compared.
fn nearest_bound(a: &OfferCurve, b: &OfferCurve) -> f64 {
    a.prices
        .iter()
        .chain(&b.prices)
        .map(|&p| {
            let ((al, ar), (bl, br)) = (one_sided(a, p), one_sided(b, p));
            (al - bl).abs().max((ar - br).abs())
        })
        .fold(0.0, f64::max)
}

/// A curve's export just below and just above `price` (equal unless it jumps there).
fn one_sided(c: &OfferCurve, price: f64) -> (f64, f64) {
    let (p, x) = (&c.prices, &c.exports);
    let n = p.len();
    let at = |i: usize, j: usize| {
        // Between breakpoints i < j with p[i] < price < p[j].
        x[i] + (x[j] - x[i]) * (price - p[i]) / (p[j] - p[i])
    };
    let first = p.partition_point(|&q| q < price);
    let after = p.partition_point(|&q| q <= price);
    let left = if first == 0 {
        x[0]
    } else if first == n {
        x[n - 1]
    } else if p[first] == price {
        x[first]
    } else {
        at(first - 1, first)
    };
    let right = if after == n {
        x[n - 1]
    } else if after == 0 {
        x[0]
    } else if p[after - 1] == price {
        x[after - 1]
    } else {
        at(after - 1, after)
    };
    (left, right)
}

/// The load scales from `lo` to `hi` at which every hour of `market` can trade, taken as an
/// interval around 1: `(a, b)` with `min(lo, 1) <= a <= 1 <= b <= max(hi, 1)`, each end the
/// farthest from 1 (within `1e-4` in scale) at which every hour's system load lies within
/// the committed units' output and capacity (widened by the tie) and the smart grid can
/// deliver some export within the tie capacity (`Market::can_trade_at`). For the error
/// of a table the market cannot serve (a user's spread too wide): it bisects each failing
/// side, two LPs an hour a probe (case39's reference day: the whole refused study, table
/// attempt and search included, took 3.5 s on the 2-core VM). Assumes a load between the
/// base and a servable one is servable; `None` when the base loads themselves cannot be
/// served.
pub fn servable_scales(market: &Market, (lo, hi): (f64, f64)) -> Result<Option<(f64, f64)>> {
    let (s_lo, s_hi) = capacity_scales(market);
    let servable = |s: f64| -> Result<bool> {
        if !(s >= s_lo && s <= s_hi) {
            return Ok(false);
        }
        for (hour, &base) in market.system_load_mw.iter().enumerate() {
            if !market.can_trade_at(hour, scaled(base, s))? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if !servable(1.0)? {
        return Ok(None);
    }
    // The end toward `far` from 1: `far` itself when servable, else bisected.
    let end = |far: f64| -> Result<f64> {
        if servable(far)? {
            return Ok(far);
        }
        let (mut good, mut bad) = (1.0, far);
        while (bad - good).abs() > 1e-4 {
            let mid = 0.5 * (good + bad);
            if servable(mid)? {
                good = mid;
            } else {
                bad = mid;
            }
        }
        Ok(good)
    };
    Ok(Some((end(lo.min(1.0))?, end(hi.max(1.0))?)))
}

/// The committed units' minimum output and capacity, MW, and the tie's relief (its
/// capacity when the microgrid is on, else 0).
fn capacity_limits(market: &Market) -> (f64, f64, f64) {
    let grid = &market.grid;
    let relief = if market.microgrid.config.enabled {
        market.microgrid.tie_capacity_mw
    } else {
        0.0
    };
    (grid.min_output_mw(), grid.capacity_mw(), relief)
}

/// The load scales at which every hour's system load lies between the committed units'
/// minimum output and capacity, each widened by the tie when the microgrid is on.
fn capacity_scales(market: &Market) -> (f64, f64) {
    let (min_out, cap, relief) = capacity_limits(market);
    let (load_hi, load_lo) = (cap + relief, min_out - relief);
    let (mut s_lo, mut s_hi) = (0.0_f64, f64::INFINITY);
    for &base in &market.system_load_mw {
        if base > 0.0 {
            s_lo = s_lo.max(load_lo / base);
            s_hi = s_hi.min(load_hi / base);
        }
    }
    (s_lo, s_hi)
}

/// Every hour's system load at every scale in `[lo, hi]` must lie between the committed
/// units' minimum output and their capacity, each widened by the tie when the microgrid is
/// on (the market's own check of its loads).
fn check_scales(market: &Market, lo: f64, hi: f64, range_text: &str) -> Result<()> {
    let (s_lo, s_hi) = capacity_scales(market);
    if lo >= s_lo && hi <= s_hi {
        return Ok(());
    }
    let (min_out, cap, relief) = capacity_limits(market);
    Err(Error::invalid(
        "scale_range",
        range_text,
        format!(
            "load scales within {s_lo:.4}..={s_hi:.4}: every hour's system load must lie \
             between the committed units' minimum output {min_out:.1} MW and capacity \
             {cap:.1} MW (+/- tie {relief:.1} MW)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A curve through `(price, export)` points with trapezoid costs from 1000 $/h.
    fn curve(points: &[(f64, f64)]) -> OfferCurve {
        let (prices, exports): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
        let mut costs = vec![1000.0];
        for k in 1..prices.len() {
            costs.push(
                costs[k - 1] + (exports[k] - exports[k - 1]) * 0.5 * (prices[k] + prices[k - 1]),
            );
        }
        OfferCurve::new(prices, exports, costs).unwrap()
    }

    fn table(loads: Vec<f64>, curves: Vec<OfferCurve>, blend: Vec<bool>) -> LoadTable {
        LoadTable {
            base_load_mw: [100.0; HOURS],
            scale_range: (0.9, 1.1),
            hours: vec![
                HourLevels {
                    loads_mw: loads,
                    curves,
                    blend
                };
                HOURS
            ],
            tol_mw: 0.01,
            export_error_mw: 0.0,
            cost_error: 0.0,
            cost_error_rel: 0.0,
        }
    }

    #[test]
    fn one_sided_limits_see_both_sides_of_a_jump() {
        let c = curve(&[(10.0, -30.0), (20.0, 5.0), (20.0, 25.0), (30.0, 45.0)]);
        assert_eq!(one_sided(&c, 20.0), (5.0, 25.0));
        assert_eq!(one_sided(&c, 15.0), (-12.5, -12.5));
        assert_eq!(one_sided(&c, 5.0), (-30.0, -30.0));
        assert_eq!(one_sided(&c, 35.0), (45.0, 45.0));
        assert_eq!(one_sided(&c, 10.0), (-30.0, -30.0));
        // The jump's far side is missed by `export_at` alone.
        let flat = curve(&[(10.0, -30.0), (30.0, 45.0)]);
        assert_eq!(nearest_bound(&c, &flat), 17.5);
        assert_eq!(nearest_bound(&c, &c), 0.0);
    }

    #[test]
    fn blend_moves_breakpoints_and_locate_picks_levels() {
        let a = curve(&[(10.0, -30.0), (20.0, 0.0), (30.0, 40.0)]);
        let b = curve(&[(12.0, -40.0), (24.0, -10.0), (34.0, 30.0)]);
        let c = curve(&[(14.0, -50.0), (30.0, 30.0)]);
        let t = table(
            vec![90.0, 100.0, 110.0],
            vec![a.clone(), b.clone(), c],
            vec![true, false],
        );
        assert_eq!(t.locate(0, 90.0), Some((0, 0.0)));
        assert_eq!(t.locate(0, 92.5), Some((0, 0.25)));
        assert_eq!(t.locate(0, 100.0), Some((1, 0.0)));
        assert_eq!(t.locate(0, 104.0), Some((1, 0.0)));
        assert_eq!(t.locate(0, 106.0), Some((2, 0.0)));
        assert_eq!(t.locate(0, 110.0), Some((2, 0.0)));
        assert_eq!(t.locate(0, 110.5), None);
        assert_eq!(t.locate(0, f64::NAN), None);
        assert_eq!(t.locate(HOURS, 95.0), None);
        let m = t.curve(0, 0, 0.5).unwrap();
        assert_eq!(m.prices, vec![11.0, 22.0, 32.0]);
        assert_eq!(m.exports, vec![-35.0, -5.0, 35.0]);
        assert!(t.curve(0, 1, 0.5).is_err());
        assert!(t.curve(0, 2, 0.5).is_err());
        assert!(t.curve(0, 3, 0.0).is_err());
        assert_eq!(t.curve(0, 2, 0.0).unwrap().len(), 2);
        // Storage reused: no reallocation on the second blend.
        let mut out = t.curve(0, 0, 0.3).unwrap();
        let ptr = out.exports.as_ptr();
        t.blend_into(0, 0, 0.8, &mut out).unwrap();
        assert_eq!(out.exports.as_ptr(), ptr);
        // The midpoint check accepts the exact blend and refuses a moved breakpoint.
        assert!(blend_match(&a, &b, 0.5, &m).is_some());
        let moved = curve(&[(11.0, -35.0), (22.5, -5.0), (32.0, 35.0)]);
        assert!(blend_match(&a, &b, 0.5, &moved).is_none());
    }
}
