//! The smart grid's offer curves over a continuous range of system loads (issue 7).
//!
//! An uncertainty study draws the system load of every (run, hour) from a continuous
//! distribution, and a network-exact curve ([`crate::grid::curve`]) is far too costly to
//! rebuild per sample. A [`LoadTable`] tabulates curve sets (24 hourly curves, each the
//! market with every hour's `system_load_mw` multiplied by one factor, as a batch's curve
//! set) at load scales `s_0 < s_1 < ... < s_K`, and answers a load between two levels with
//! the blend of their curves.
//!
//! **A common price grid per hour.** For each hour every level is resampled onto one grid
//! of prices: the union of all levels' breakpoint prices, with multiplicity (a flat-price
//! stretch, two breakpoints at one price, in any level gives two entries at that price in
//! every level). Each level's curve is linear in price between its own breakpoints and flat
//! beyond its ends, as [`CurveView::export_at`] evaluates it, so the resampled level is the
//! same function of price; its costs are its own [`CurveView::cost_at_export`] at the
//! resampled exports. The blend at weight `w` between levels `k` and `k+1` is then the grid
//! with `(1-w) exports[k] + w exports[k+1]` (costs likewise): a kernel blends two pool
//! curves entry by entry, without merging breakpoints. Since both levels are linear between
//! consecutive grid prices, the blended curve is exactly the pointwise blend
//! `(1-w) x_k(p) + w x_{k+1}(p)` at every price `p`.
//!
//! **Where the blend is exact, and where it is not.** The smart grid's dispatch is a
//! parametric QP in (price, load): price in the objective, load in the constraints. Its
//! solution is piecewise affine in (price, load) jointly over convex critical regions (one
//! per active set of unit limits and line ratings, the export range's edges included), so
//! at a fixed price the export is affine in load, and the blend exact, wherever both
//! neighbouring levels lie in one region. The regions' boundaries are lines in the
//! (price, load) plane that are *not* parallel to the load axis (a higher load moves the
//! whole curve up in price), so every interval between two levels crosses some boundary at
//! some prices: near the price where the curve of one level saturates (or a unit reaches a
//! limit) and the other's does not yet. There the blend is wrong by up to about a quarter
//! of the load step times the slope change in load (for the tie's saturation, whose slope
//! in load changes by 1, `(L_{k+1} - L_k) / 4`), so the export error shrinks only linearly
//! with the level spacing. The measured error of a build is reported
//! ([`LoadTable::export_error_mw`]) and checked against exact rebuilds in
//! `tests/load_table.rs`. Measured on RTS-24 (base loads up to 2850 MW): 35.6 MW at
//! levels 0.05 apart, 7.1 MW at 0.01, 4.45 MW with 65 levels over scales 0.8..1.2; 0.01 MW
//! would take some 28 000 levels over that range.
//!
//! What would be exact: between two loads whose curves have the same breakpoint sequence
//! (no vertex of the critical regions in between), every breakpoint's price *and* export
//! are affine in load, so blending breakpoints, prices included, reproduces the exact curve
//! (to 1e-11 MW on RTS-24, `tests/load_table.rs`). That representation gives up the common
//! price grid (a level pair would carry two price rows) and needs a fallback for the few
//! intervals that contain a vertex; it is not built here.
//!
//! Costs are piecewise quadratic in (price, load), so the linear blend of costs is not
//! exact even inside a region; its error is measured separately
//! ([`LoadTable::cost_error`]).
//!
//! **The build** starts from levels [`INITIAL_SPACING`] apart (ends included) and bisects
//! every interval whose midpoint's exact curves (all hours) differ from the blend by more
//! than `tol_mw` at any price. The error over prices is checked exactly: the blend and the
//! exact curve are both piecewise linear on the common grid of the three curves, so the
//! largest difference sits on a grid entry. Between levels only the midpoint is checked;
//! where the export is concave or convex in load over the interval (one boundary crossed,
//! the usual case once refined) the error anywhere in the interval is at most twice the
//! midpoint's. A build that cannot meet `tol_mw` within `max_levels` fails with the error it
//! reached; it never returns a table worse than asked for.
//!
//! **Reuse.** A table is built once per study and is plain data (`Clone`, no references
//! to the market). A batch is expected to hold one table next to its curve cache, keyed by
//! the same market fingerprint, and to copy each hour's grid and level rows into its pool
//! once; per (run, hour) it stores only `(level, weight)` from [`LoadTable::locate`].

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::market::Market;
use crate::microgrid::HOURS;
use crate::offer::{CurveView, OfferCurve};

/// Spacing of the levels a build starts from, as a load scale (5 % of the base load).
pub const INITIAL_SPACING: f64 = 0.05;

/// One hour of a [`LoadTable`]: the common price grid and every level resampled on it.
#[derive(Debug, Clone, PartialEq)]
pub struct HourTable {
    /// Grid prices, $/MWh, non-decreasing (equal neighbours: a flat-price stretch).
    prices: Vec<f64>,
    /// `exports[level][j]`: the level's export at `prices[j]`, MW.
    exports: Vec<Vec<f64>>,
    /// `costs[level][j]`: the level's internal cost at `exports[level][j]`, $/h.
    costs: Vec<Vec<f64>>,
}

impl HourTable {
    /// Resamples `curves` (one per level) onto the union of their breakpoint prices.
    pub fn from_curves(curves: &[CurveView<'_>]) -> HourTable {
        let prices = union_grid(curves);
        let (exports, costs) = curves.iter().map(|c| resample(c, &prices)).unzip();
        HourTable {
            prices,
            exports,
            costs,
        }
    }

    /// The common grid's prices, $/MWh, non-decreasing.
    pub fn prices(&self) -> &[f64] {
        &self.prices
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.exports.len()
    }

    /// Level `level`'s exports on the grid, MW. Panics if `level >= self.levels()`.
    pub fn exports(&self, level: usize) -> &[f64] {
        &self.exports[level]
    }

    /// Level `level`'s costs on the grid, $/h. Panics if `level >= self.levels()`.
    pub fn costs(&self, level: usize) -> &[f64] {
        &self.costs[level]
    }

    /// Level `level` as a curve on the grid: the same function of price as the curve it
    /// was built from. Panics if `level >= self.levels()`.
    pub fn level(&self, level: usize) -> CurveView<'_> {
        CurveView {
            prices: &self.prices,
            exports: &self.exports[level],
            costs: &self.costs[level],
        }
    }

    /// Writes the blend `(1-w) level k + w level k+1` into `out` (`k+1` unread when
    /// `w == 0`), reusing its storage. The caller checks `k` and `w`.
    fn blend_into(&self, k: usize, w: f64, out: &mut OfferCurve) {
        out.prices.clear();
        out.exports.clear();
        out.costs.clear();
        out.prices.extend_from_slice(&self.prices);
        if w == 0.0 {
            out.exports.extend_from_slice(&self.exports[k]);
            out.costs.extend_from_slice(&self.costs[k]);
            return;
        }
        // Each product and sum is monotone under rounding, so blended exports stay
        // non-decreasing.
        let mix = |a: &[f64], b: &[f64], to: &mut Vec<f64>| {
            to.extend(a.iter().zip(b).map(|(x, y)| (1.0 - w) * x + w * y));
        };
        mix(&self.exports[k], &self.exports[k + 1], &mut out.exports);
        mix(&self.costs[k], &self.costs[k + 1], &mut out.costs);
    }
}

/// The union of the curves' breakpoint prices, sorted, each distinct price as many times
/// as the curve holding it most often.
fn union_grid(curves: &[CurveView<'_>]) -> Vec<f64> {
    let mut all: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.prices.iter().copied())
        .collect();
    all.sort_unstable_by(f64::total_cmp);
    all.dedup();
    let mut grid = Vec::with_capacity(all.len() + 2);
    for &p in &all {
        let times = curves
            .iter()
            .map(|c| c.prices.iter().filter(|&&q| q == p).count())
            .max()
            .unwrap_or(1)
            .max(1);
        grid.extend(std::iter::repeat_n(p, times));
    }
    grid
}

/// A curve's exports and costs at the grid prices. Where the curve has breakpoints at a
/// grid price it gives their values (the last one repeated when the grid holds that price
/// more often); elsewhere its export there, flat beyond its ends, and the cost of that
/// export.
fn resample(curve: &CurveView<'_>, grid: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut exports = Vec::with_capacity(grid.len());
    let mut costs = Vec::with_capacity(grid.len());
    let mut j = 0;
    while j < grid.len() {
        let p = grid[j];
        let times = grid[j..].iter().take_while(|&&q| q == p).count();
        let first = curve.prices.partition_point(|&q| q < p);
        let own = curve.prices[first..]
            .iter()
            .take_while(|&&q| q == p)
            .count();
        for t in 0..times {
            if own > 0 {
                let i = first + t.min(own - 1);
                exports.push(curve.exports[i]);
                costs.push(curve.costs[i]);
            } else {
                let x = curve.export_at(p);
                exports.push(x);
                costs.push(curve.cost_at_export(x));
            }
        }
        j += times;
    }
    (exports, costs)
}

/// The smart grid's offer curves at load scales `s_0 < ... < s_K` on a common price grid
/// per hour (module doc), with the blend's error measured at build.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTable {
    /// Load scales of the levels, increasing; factors on every hour's base system load.
    scales: Vec<f64>,
    /// The base market's system load per hour, MW.
    base_load_mw: [f64; HOURS],
    /// One table per hour.
    hours: Vec<HourTable>,
    /// The tolerance the build met, MW.
    tol_mw: f64,
    /// Largest export error of the blend at the intervals' midpoints, MW.
    export_error_mw: f64,
    /// Largest cost error of the blend at the intervals' midpoints, $/h.
    cost_error: f64,
    /// Largest cost error relative to the exact cost there.
    cost_error_rel: f64,
}

/// A level: its scale and its 24 smart-grid curves.
type Level = (f64, Vec<OfferCurve>);

/// The largest differences of the blend from a level's exact curves.
#[derive(Debug, Clone, Copy, Default)]
struct BlendError {
    export_mw: f64,
    cost: f64,
    cost_rel: f64,
}

impl BlendError {
    fn max(self, o: BlendError) -> BlendError {
        BlendError {
            export_mw: self.export_mw.max(o.export_mw),
            cost: self.cost.max(o.cost),
            cost_rel: self.cost_rel.max(o.cost_rel),
        }
    }
}

impl LoadTable {
    /// Builds a table over load scales `scale_range = (lo, hi)` (factors on every hour's
    /// base system load, `0 < lo < hi`) whose blended exports are within `tol_mw` MW
    /// (> 0) of the exact curves at every interval's midpoint, with at most `max_levels`
    /// levels (module doc). The curves of each round of levels are built in parallel.
    ///
    /// Errors: [`Error::InvalidInput`] naming `scale_range`, `tol_mw` or `max_levels` for
    /// bad values, naming `scale_range` with the scale and hour when the smart grid cannot
    /// serve a level's load, and naming `max_levels` (with the error reached) when the
    /// tolerance needs more levels.
    pub fn build(
        market: &Market,
        scale_range: (f64, f64),
        tol_mw: f64,
        max_levels: usize,
    ) -> Result<LoadTable> {
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
        if max_levels < intervals + 1 {
            return Err(Error::invalid(
                "max_levels",
                max_levels,
                format!(
                    ">= {}, the levels {INITIAL_SPACING} apart that a build over {range_text} \
                     starts from",
                    intervals + 1
                ),
            ));
        }
        check_scales(market, lo, hi, &range_text)?;
        let initial: Vec<f64> = (0..=intervals)
            .map(|i| {
                if i == intervals {
                    hi
                } else {
                    lo + (hi - lo) * i as f64 / intervals as f64
                }
            })
            .collect();
        let mut levels = build_levels(market, &initial, &range_text)?;
        // Intervals still to check, as indices of their lower level in `levels`.
        let mut pending: Vec<f64> = initial[..intervals].to_vec();
        let mut reached = BlendError::default();
        while !pending.is_empty() {
            let mids: Vec<f64> = pending
                .iter()
                .map(|&a| {
                    let k = level_index(&levels, a);
                    0.5 * (a + levels[k + 1].0)
                })
                .collect();
            let built = build_levels(market, &mids, &range_text)?;
            let mut next = Vec::new();
            let mut worst_failing = 0.0_f64;
            let mut inserts = Vec::new();
            for (&a, mid) in pending.iter().zip(built) {
                let k = level_index(&levels, a);
                let err = midpoint_error(market, &levels[k], &levels[k + 1], &mid);
                if err.export_mw <= tol_mw {
                    reached = reached.max(err);
                } else {
                    worst_failing = worst_failing.max(err.export_mw);
                    next.push(a);
                    next.push(mid.0);
                    inserts.push(mid);
                }
            }
            if levels.len() + inserts.len() > max_levels {
                return Err(Error::invalid(
                    "max_levels",
                    max_levels,
                    format!(
                        "enough levels for tol_mw = {tol_mw} MW over scales {range_text}: with \
                         {} levels the blend is still {worst_failing:.4} MW from the exact \
                         curve at {} interval midpoints, which need {} more levels",
                        levels.len(),
                        inserts.len(),
                        inserts.len()
                    ),
                ));
            }
            levels.extend(inserts);
            levels.sort_by(|x, y| x.0.total_cmp(&y.0));
            pending = next;
        }
        let hours = (0..HOURS)
            .map(|h| {
                let views: Vec<CurveView<'_>> = levels.iter().map(|l| l.1[h].view()).collect();
                HourTable::from_curves(&views)
            })
            .collect();
        Ok(LoadTable {
            scales: levels.iter().map(|l| l.0).collect(),
            base_load_mw: market.system_load_mw,
            hours,
            tol_mw,
            export_error_mw: reached.export_mw,
            cost_error: reached.cost,
            cost_error_rel: reached.cost_rel,
        })
    }

    /// Load scales of the levels, increasing (factors on the base system load).
    pub fn scales(&self) -> &[f64] {
        &self.scales
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.scales.len()
    }

    /// Number of hours (24).
    pub fn hours(&self) -> usize {
        self.hours.len()
    }

    /// The base market's system load per hour, MW (scale 1).
    pub fn base_load_mw(&self) -> &[f64; HOURS] {
        &self.base_load_mw
    }

    /// System load of level `level` at `hour`, MW: `base_load_mw[hour] * scales[level]`,
    /// the same product a scaled market holds. Panics on an index out of range.
    pub fn level_load_mw(&self, hour: usize, level: usize) -> f64 {
        scaled(self.base_load_mw[hour], self.scales[level])
    }

    /// The table of one hour (grid prices, level exports and costs). Panics if
    /// `hour >= self.hours()`.
    pub fn hour(&self, hour: usize) -> &HourTable {
        &self.hours[hour]
    }

    /// The tolerance the build was asked for and met at every midpoint, MW.
    pub fn tol_mw(&self) -> f64 {
        self.tol_mw
    }

    /// Largest export error of the blend measured at the build's interval midpoints, MW
    /// (over every hour and price; at most `tol_mw`). Twice this bounds the error inside
    /// an interval where the export bends one way in load (module doc).
    pub fn export_error_mw(&self) -> f64 {
        self.export_error_mw
    }

    /// Largest error of the blended cost at the build's interval midpoints, $/h: the
    /// blended curve's cost of an export against the exact curve's cost of that export.
    pub fn cost_error(&self) -> f64 {
        self.cost_error
    }

    /// [`LoadTable::cost_error`] relative to the exact cost there.
    pub fn cost_error_rel(&self) -> f64 {
        self.cost_error_rel
    }

    /// The level `k` and weight `w` in `[0, 1)` whose blend answers a system load of
    /// `load_mw` MW at `hour`: the load lies between levels `k` and `k+1`, `w` of the way.
    /// A load equal to a level's ([`LoadTable::level_load_mw`]) gives `(k, 0.0)`, the top
    /// level's included. `None` outside the tabulated loads (never extrapolated), for a
    /// non-finite load and for an hour out of range.
    pub fn locate(&self, hour: usize, load_mw: f64) -> Option<(usize, f64)> {
        let base = *self.base_load_mw.get(hour)?;
        let n = self.scales.len();
        let first = scaled(base, self.scales[0]);
        let last = scaled(base, self.scales[n - 1]);
        if !(load_mw >= first && load_mw <= last) {
            return None;
        }
        // Level loads increase with the scale: rounding is monotone.
        let k = self.scales.partition_point(|&s| scaled(base, s) <= load_mw) - 1;
        if k == n - 1 {
            return Some((k, 0.0));
        }
        let (a, b) = (
            scaled(base, self.scales[k]),
            scaled(base, self.scales[k + 1]),
        );
        Some((k, ((load_mw - a) / (b - a)).clamp(0.0, 1.0)))
    }

    /// Writes the blended curve of `hour` between levels `k` and `k+1` at weight `w` into
    /// `out`, reusing its storage (no allocation when it has the capacity of the hour's
    /// grid). `w = 0` takes level `k` alone (the top level included).
    ///
    /// Errors: [`Error::InvalidInput`] naming `hour`, `level` or `weight` out of range
    /// (`w` in `[0, 1]`, and `k + 1` a level when `w > 0`); `out` is left unchanged.
    pub fn blend_into(&self, hour: usize, k: usize, w: f64, out: &mut OfferCurve) -> Result<()> {
        self.check_blend(hour, k, w)?;
        self.hours[hour].blend_into(k, w, out);
        Ok(())
    }

    /// The blended curve of `hour` between levels `k` and `k+1` at weight `w` (see
    /// [`LoadTable::blend_into`]).
    pub fn curve(&self, hour: usize, k: usize, w: f64) -> Result<OfferCurve> {
        self.check_blend(hour, k, w)?;
        let n = self.hours[hour].prices.len();
        let mut out = OfferCurve {
            prices: Vec::with_capacity(n),
            exports: Vec::with_capacity(n),
            costs: Vec::with_capacity(n),
        };
        self.hours[hour].blend_into(k, w, &mut out);
        Ok(out)
    }

    fn check_blend(&self, hour: usize, k: usize, w: f64) -> Result<()> {
        if hour >= self.hours.len() {
            return Err(Error::invalid(
                "hour",
                hour,
                format!("< {}", self.hours.len()),
            ));
        }
        if !(0.0..=1.0).contains(&w) {
            return Err(Error::invalid("weight", w, "a number in [0, 1]"));
        }
        let last = self.scales.len() - 1;
        if k > last || (w > 0.0 && k == last) {
            return Err(Error::invalid(
                "level",
                k,
                format!("< {last} (<= {last} with weight 0)"),
            ));
        }
        Ok(())
    }
}

/// A base load times a scale, as a scaled market computes it (scale 1 keeps it bit for
/// bit, which `x * 1.0` does).
fn scaled(base: f64, scale: f64) -> f64 {
    base * scale
}

/// Position of the level with scale `scale` (which is one).
fn level_index(levels: &[Level], scale: f64) -> usize {
    levels.partition_point(|l| l.0 < scale)
}

/// Every hour's system load at every scale in `[lo, hi]` must lie between the committed
/// units' minimum output and their capacity, each widened by the tie when the microgrid is
/// on (the market's own check of its loads).
fn check_scales(market: &Market, lo: f64, hi: f64, range_text: &str) -> Result<()> {
    let grid = &market.grid;
    let relief = if market.microgrid.config.enabled {
        market.microgrid.tie_capacity_mw
    } else {
        0.0
    };
    let (cap, min_out) = (grid.capacity_mw(), grid.min_output_mw());
    let (load_hi, load_lo) = (cap + relief, min_out - relief);
    let (mut s_lo, mut s_hi) = (0.0_f64, f64::INFINITY);
    for &base in &market.system_load_mw {
        if base > 0.0 {
            s_lo = s_lo.max(load_lo / base);
            s_hi = s_hi.min(load_hi / base);
        }
    }
    if lo >= s_lo && hi <= s_hi {
        return Ok(());
    }
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

/// The smart grid's 24 curves at each scale, in parallel over (scale, hour). A failure
/// names the scale and hour under `scale_range`.
fn build_levels(market: &Market, scales: &[f64], range_text: &str) -> Result<Vec<Level>> {
    let curves: Vec<OfferCurve> = (0..scales.len() * HOURS)
        .into_par_iter()
        .map(|i| {
            let (level, hour) = (i / HOURS, i % HOURS);
            let scale = scales[level];
            let mut market = market.clone();
            // A scale of exactly 1 keeps the base loads (and their export ranges).
            if scale != 1.0 {
                for l in market.system_load_mw.iter_mut() {
                    *l = scaled(*l, scale);
                }
            }
            let mut curves = market.curves(hour).map_err(|e| match e {
                Error::InvalidInput { .. } | Error::Solver { .. } => Error::invalid(
                    "scale_range",
                    range_text,
                    format!(
                        "load scales at which the smart grid can build its curve: at scale \
                         {scale} (hour {hour}, system load {:.3} MW): {e}",
                        market.system_load_mw[hour]
                    ),
                ),
                other => other,
            })?;
            Ok(curves.swap_remove(0))
        })
        .collect::<Result<_>>()?;
    let mut curves = curves.into_iter();
    Ok(scales
        .iter()
        .map(|&s| (s, curves.by_ref().take(HOURS).collect()))
        .collect())
}

/// The blend's largest differences from the exact curves `mid` over every hour: exports
/// at every entry of the common grid of the three curves (where the largest difference of
/// two piecewise-linear functions of price lies), costs at the blended exports within the
/// exact curve's export range.
fn midpoint_error(market: &Market, lower: &Level, upper: &Level, mid: &Level) -> BlendError {
    let mut worst = BlendError::default();
    for h in 0..HOURS {
        let base = market.system_load_mw[h];
        let (a, b, m) = (
            scaled(base, lower.0),
            scaled(base, upper.0),
            scaled(base, mid.0),
        );
        let w = (m - a) / (b - a);
        let exact = mid.1[h].view();
        let table = HourTable::from_curves(&[lower.1[h].view(), upper.1[h].view(), exact]);
        let mut blend = OfferCurve::fixed(0.0, 0.0);
        table.blend_into(0, w, &mut blend);
        worst = worst.max(curve_error(&blend.view(), &table.level(2), &exact));
    }
    worst
}

/// Largest differences of `blend` from `exact` (`exact_on_grid`: `exact` resampled on
/// `blend`'s grid): exports at every grid entry, costs at the blend's exports within the
/// exact export range.
fn curve_error(
    blend: &CurveView<'_>,
    exact_on_grid: &CurveView<'_>,
    exact: &CurveView<'_>,
) -> BlendError {
    let mut worst = BlendError::default();
    let (lo, hi) = (exact.min_export(), exact.max_export());
    for (j, (&x, &x_exact)) in blend.exports.iter().zip(exact_on_grid.exports).enumerate() {
        worst.export_mw = worst.export_mw.max((x - x_exact).abs());
        if x >= lo && x <= hi {
            let c_exact = exact.cost_at_export(x);
            let err = (blend.costs[j] - c_exact).abs();
            worst.cost = worst.cost.max(err);
            worst.cost_rel = worst.cost_rel.max(err / c_exact.abs().max(1.0));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A curve with a flat-price stretch (a jump at 20 $/MWh) and quadratic-cost pieces.
    fn jumpy() -> OfferCurve {
        let prices = vec![10.0, 14.0, 20.0, 20.0, 26.0];
        let exports = vec![-30.0, -10.0, 5.0, 25.0, 40.0];
        let mut costs = vec![1000.0];
        for k in 1..prices.len() {
            let c =
                costs[k - 1] + (exports[k] - exports[k - 1]) * 0.5 * (prices[k] + prices[k - 1]);
            costs.push(c);
        }
        OfferCurve::new(prices, exports, costs).unwrap()
    }

    fn smooth() -> OfferCurve {
        let prices = vec![12.0, 17.5, 22.0, 30.0];
        let exports = vec![-20.0, 0.0, 10.0, 50.0];
        let mut costs = vec![800.0];
        for k in 1..prices.len() {
            let c =
                costs[k - 1] + (exports[k] - exports[k - 1]) * 0.5 * (prices[k] + prices[k - 1]);
            costs.push(c);
        }
        OfferCurve::new(prices, exports, costs).unwrap()
    }

    #[test]
    fn grid_is_the_union_with_multiplicity() {
        let (a, b) = (jumpy(), smooth());
        let t = HourTable::from_curves(&[a.view(), b.view()]);
        assert_eq!(
            t.prices(),
            &[10.0, 12.0, 14.0, 17.5, 20.0, 20.0, 22.0, 26.0, 30.0]
        );
        // The level without a jump at 20 exports the same at both entries.
        assert_eq!(t.exports(1)[4], t.exports(1)[5]);
        assert_eq!(&t.exports(0)[4..6], &[5.0, 25.0]);
        // Flat beyond its own ends.
        assert_eq!(t.exports(0)[8], 40.0);
        assert_eq!(t.exports(1)[0], -20.0);
        for level in 0..2 {
            t.level(level).check().unwrap();
        }
    }

    #[test]
    fn resampled_levels_reproduce_their_curves() {
        let curves = [jumpy(), smooth()];
        let views: Vec<CurveView<'_>> = curves.iter().map(|c| c.view()).collect();
        let t = HourTable::from_curves(&views);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (level, c) in curves.iter().enumerate() {
            let r = t.level(level);
            for _ in 0..2000 {
                let p = rng.random_range(5.0..35.0);
                let (x, y) = (c.export_at(p), r.export_at(p));
                assert!((x - y).abs() <= 1e-9, "level {level} price {p}: {x} vs {y}");
                let (cx, cy) = (c.cost_at_export(x), r.cost_at_export(x));
                assert!(
                    (cx - cy).abs() <= 1e-9 * cx.abs().max(1.0),
                    "level {level} price {p}"
                );
            }
            // The jump itself: both sides present in the resampled level.
            assert_eq!(r.export_at(20.0), c.export_at(20.0));
        }
    }

    #[test]
    fn blend_is_the_pointwise_blend() {
        let curves = [jumpy(), smooth()];
        let views: Vec<CurveView<'_>> = curves.iter().map(|c| c.view()).collect();
        let t = HourTable::from_curves(&views);
        let mut out = OfferCurve::fixed(0.0, 0.0);
        let w = 0.3;
        t.blend_into(0, w, &mut out);
        out.check().unwrap();
        for i in 0..=300 {
            let p = 5.0 + 0.1 * i as f64;
            let want = (1.0 - w) * curves[0].export_at(p) + w * curves[1].export_at(p);
            assert!((out.export_at(p) - want).abs() < 1e-9, "price {p}");
        }
        // Storage reused: no reallocation on the second blend.
        let cap = out.prices.capacity();
        let ptr = out.exports.as_ptr();
        t.blend_into(0, 0.8, &mut out);
        assert_eq!((out.prices.capacity(), out.exports.as_ptr()), (cap, ptr));
    }
}
