//! The load table (issue 7) against exact rebuilds: for RTS-24 (the default market and its
//! line 7-8 derated to 60 MW) and congested MATPOWER cases, a table over a load range is
//! built, then on a seeded sample of (hour, load) points the blended curve is compared
//! with the curve rebuilt from scratch at that load (an independent computation: a market
//! clone with the hour's system load set, `Market::curves`) at random prices and at every
//! breakpoint of both curves (where the largest difference of two piecewise-linear
//! functions of price lies). The figures are printed for the record.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use p2pmarket::grid::load_table::LoadTable;
use p2pmarket::market::Market;
use p2pmarket::offer::OfferCurve;
use p2pmarket::scenario::Scenario;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A MATPOWER case with the 24 hourly loads of its committed reference, the microgrid off
/// (its PCC bus still names where the curve is read).
fn reference_market(name: &str) -> Market {
    Market::from_scenario(&reference_scenario(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The scenario of [`reference_market`].
fn reference_scenario(name: &str) -> Scenario {
    let path = repo_path(&format!("tests/data/matpower_refs/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("reference JSON");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    let mut s = Scenario::default();
    s.grid.case_file = Some(repo_path(v["case_file"].as_str().expect("case_file")));
    s.grid.linear_cost_c2 = v["linear_cost_c2"].as_f64().expect("linear_cost_c2");
    s.load.hourly_mw = Some(
        v["hourly_mw"]
            .as_array()
            .expect("hourly_mw")
            .iter()
            .map(|x| x.as_f64().expect("a load"))
            .collect(),
    );
    s.microgrid.enabled = false;
    s.microgrid.pcc_bus = v["pcc_bus"].as_u64().expect("pcc_bus") as usize;
    s
}

fn rts24_congested() -> Market {
    let mut s = Scenario::default();
    s.grid.case_file = Some(repo_path("experiments/cases/rts24_line7_8_60mw.m"));
    Market::from_scenario(&s).expect("congested RTS-24")
}

/// The smart grid's exact curve at `hour` with that hour's system load `load_mw`.
fn exact_curve(market: &Market, hour: usize, load_mw: f64) -> OfferCurve {
    let mut m = market.clone();
    m.system_load_mw[hour] = load_mw;
    m.curves(hour)
        .unwrap_or_else(|e| panic!("exact curve at hour {hour}, {load_mw} MW: {e}"))
        .swap_remove(0)
}

/// What a comparison found.
#[derive(Debug, Default)]
struct Figures {
    points: usize,
    /// Largest |export error| at the random prices, MW.
    random_export_mw: f64,
    /// Largest |export error| over all prices (breakpoints included), MW.
    export_mw: f64,
    /// Largest |cost error| at the exact curve's export, $/h, and relative.
    cost: f64,
    cost_rel: f64,
}

/// Compares the table's curve with exact rebuilds at `loads` random (hour, load) points and
/// `prices` random prices on each, plus every breakpoint price of both curves (where the
/// largest difference of two piecewise-linear functions of price lies). No clamping to
/// the trade window: the whole curve is compared. With `vertices` the loads are drawn only
/// inside intervals that do not blend (random loads almost never fall there: they are
/// refined to a small width).
fn compare(
    market: &Market,
    table: &LoadTable,
    seed: u64,
    loads: usize,
    prices: usize,
    vertices: bool,
) -> Figures {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f = Figures::default();
    let mut curve = OfferCurve::fixed(0.0, 0.0);
    for _ in 0..loads {
        let hour = rng.random_range(0..24usize);
        let h = table.hour(hour);
        let load = if vertices {
            // Inside an interval that does not blend (a vertex): the nearest level answers.
            let gaps: Vec<usize> = (0..h.levels() - 1).filter(|&k| !h.blends(k)).collect();
            if gaps.is_empty() {
                continue;
            }
            let k = gaps[rng.random_range(0..gaps.len())];
            rng.random_range(h.load_mw(k)..h.load_mw(k + 1))
        } else {
            rng.random_range(h.load_mw(0)..h.load_mw(h.levels() - 1))
        };
        let (k, w) = table.locate(hour, load).expect("a load inside the table");
        table
            .blend_into(hour, k, w, &mut curve)
            .expect("a valid blend");
        let exact = exact_curve(market, hour, load);
        let (p_lo, p_hi) = (
            curve.prices[0].min(exact.prices[0]) - 1.0,
            curve.prices[curve.len() - 1].max(exact.prices[exact.len() - 1]) + 1.0,
        );
        let random: Vec<f64> = (0..prices).map(|_| rng.random_range(p_lo..p_hi)).collect();
        for (i, &p) in random
            .iter()
            .chain(&curve.prices)
            .chain(&exact.prices)
            .enumerate()
        {
            let x = exact.export_at(p);
            let err = (curve.export_at(p) - x).abs();
            f.export_mw = f.export_mw.max(err);
            if i < prices {
                f.random_export_mw = f.random_export_mw.max(err);
                f.points += 1;
            }
            if x >= curve.min_export() && x <= curve.max_export() {
                let c = exact.cost_at_export(x);
                let e = (curve.cost_at_export(x) - c).abs();
                f.cost = f.cost.max(e);
                f.cost_rel = f.cost_rel.max(e / c.abs().max(1.0));
            }
        }
    }
    f
}

/// Builds a table for `market`, checks it against exact rebuilds at `loads` random
/// (hour, load) points, asserts the largest export error is within `bound_mw`, and prints
/// the figures.
fn check_case(
    name: &str,
    market: &Market,
    range: (f64, f64),
    tol_mw: f64,
    loads: usize,
    bound_mw: f64,
) {
    let t0 = Instant::now();
    let (table, seeds) = LoadTable::build_counted(market, range, tol_mw, 400, true)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let build_s = t0.elapsed().as_secs_f64();
    // Seeding each curve's walk from its neighbouring levels spares interior-point solves.
    // Where the solve's guessed active sets certify at the walk's first export, the seeded
    // piece is the one they give, and the curve is bitwise the one built from a solve;
    // where none does (the unseeded walk then starts at another export), the curve may
    // differ in the last bits of its breakpoints, never by more than rounding.
    let t0 = Instant::now();
    let (reference, solved) = LoadTable::build_counted(market, range, tol_mw, 400, false)
        .unwrap_or_else(|e| panic!("{name} unseeded: {e}"));
    let reference_s = t0.elapsed().as_secs_f64();
    assert_eq!(seeds.curves, solved.curves, "{name}");
    assert_eq!(solved.reused, 0, "{name}");
    assert!(
        seeds.reused > 0 && seeds.solved < solved.solved,
        "{name}: seeded {seeds:?}, unseeded {solved:?}"
    );
    let mut differing = 0;
    for hour in 0..table.hours() {
        let (a, b) = (table.hour(hour), reference.hour(hour));
        assert_eq!(a.levels(), b.levels(), "{name} hour {hour}");
        for k in 0..a.levels() {
            assert_eq!(a.load_mw(k).to_bits(), b.load_mw(k).to_bits());
            if k + 1 < a.levels() {
                assert_eq!(a.blends(k), b.blends(k), "{name} hour {hour} interval {k}");
            }
            let (ca, cb) = (a.curve(k), b.curve(k));
            assert_eq!(ca.len(), cb.len(), "{name} hour {hour} level {k}");
            let pairs = || {
                ca.prices
                    .iter()
                    .zip(&cb.prices)
                    .chain(ca.exports.iter().zip(&cb.exports))
                    .chain(ca.costs.iter().zip(&cb.costs))
            };
            if pairs().any(|(x, y)| x.to_bits() != y.to_bits()) {
                differing += 1;
            }
            for (x, y) in pairs() {
                assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{name} hour {hour} level {k}: {x} seeded, {y} unseeded"
                );
            }
        }
    }
    assert!(
        differing * 100 <= table.levels_total(),
        "{name}: {differing} of {} level curves differ from the unseeded build's",
        table.levels_total()
    );
    assert!(table.export_error_mw() <= tol_mw, "{name}");
    // At the levels themselves the table's curve is the exact curve (to rounding).
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut at_levels = 0.0_f64;
    for _ in 0..3 {
        let hour = rng.random_range(0..24usize);
        let h = table.hour(hour);
        let k = rng.random_range(0..h.levels());
        let load = h.load_mw(k);
        assert_eq!(table.locate(hour, load), Some((k, 0.0)), "{name} level {k}");
        let curve = table.curve(hour, k, 0.0).expect("a level");
        let exact = exact_curve(market, hour, load);
        for _ in 0..200 {
            let p = rng.random_range(exact.prices[0] - 1.0..exact.prices[exact.len() - 1] + 1.0);
            let x = exact.export_at(p);
            at_levels = at_levels.max((curve.export_at(p) - x).abs());
            let c = exact.cost_at_export(x);
            assert!(
                (curve.cost_at_export(x) - c).abs() <= 1e-9 * c.abs().max(1.0),
                "{name} level {k} price {p}: cost {} vs {c}",
                curve.cost_at_export(x)
            );
        }
    }
    assert!(at_levels <= 1e-9, "{name}: {at_levels} MW at a level");
    let per_hour: Vec<usize> = (0..table.hours()).map(|h| table.hour(h).levels()).collect();
    let blends: usize = (0..table.hours())
        .map(|h| {
            let h = table.hour(h);
            (0..h.levels() - 1).filter(|&k| h.blends(k)).count()
        })
        .sum();
    let f = compare(market, &table, 2024, loads, 20, false);
    let v = compare(market, &table, 2025, loads / 3, 20, true);
    eprintln!(
        "{name}: scales {range:?}, tol {tol_mw} MW: levels per hour {}/{:.1}/{} \
         (min/mean/max), {} in all, {blends}/{} intervals blend; build {build_s:.2} s \
         ({} curves, {} seeds reused, {} solved; {reference_s:.2} s and {} solved \
         unseeded, {differing} level curves not bitwise the unseeded ones); \
         build bound {:.2e} MW (cost {:.2e} $/h, rel {:.2e}); sampled {loads} loads, {} \
         random prices: max export error {:.2e} MW at random prices, {:.2e} MW over all \
         prices; cost error {:.2e} $/h (rel {:.2e}); at levels {at_levels:.1e} MW; inside \
         non-blend intervals ({} loads): max export error {:.2e} MW",
        per_hour.iter().min().unwrap(),
        table.levels_total() as f64 / table.hours() as f64,
        per_hour.iter().max().unwrap(),
        table.levels_total(),
        table.levels_total() - table.hours(),
        seeds.curves,
        seeds.reused,
        seeds.solved,
        solved.solved,
        table.export_error_mw(),
        table.cost_error(),
        table.cost_error_rel(),
        f.points,
        f.random_export_mw,
        f.export_mw,
        f.cost,
        f.cost_rel,
        loads / 3,
        v.export_mw,
    );
    // The nearest level's bound (module doc of `load_table`), measured at build.
    assert!(
        v.export_mw <= table.export_error_mw() + 1e-9,
        "{name}: nearest-level error {} MW above the build's bound {} MW",
        v.export_mw,
        table.export_error_mw()
    );
    assert!(
        f.export_mw <= bound_mw,
        "{name}: sampled export error {} MW above {bound_mw} MW",
        f.export_mw
    );
}

#[test]
fn rts24_default_market() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    check_case("rts24", &market, (0.88, 1.12), 0.01, 60, 0.01);
}

#[test]
fn rts24_default_market_wide() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    check_case("rts24_wide", &market, (0.8, 1.2), 0.01, 60, 0.01);
}

#[test]
fn rts24_line_7_8_derated() {
    check_case(
        "rts24_line7_8_60mw",
        &rts24_congested(),
        (0.9, 1.1),
        0.01,
        60,
        0.01,
    );
}

#[test]
fn case30_at_135_percent_load() {
    check_case(
        "case30_load135",
        &reference_market("case30_load135"),
        (0.9, 1.0),
        0.01,
        60,
        0.01,
    );
}

#[test]
fn case118_derated() {
    check_case(
        "case118_derated",
        &reference_market("case118_derated"),
        (0.95, 1.05),
        0.01,
        60,
        0.01,
    );
}

#[test]
fn locate_covers_the_range_only() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    let table = LoadTable::build(&market, (0.98, 1.02), 1.0, 50).expect("a table");
    for hour in [0, 17] {
        let h = table.hour(hour);
        let top = h.levels() - 1;
        let (lo, hi) = (h.load_mw(0), h.load_mw(top));
        assert_eq!(table.locate(hour, lo), Some((0, 0.0)));
        assert_eq!(table.locate(hour, hi), Some((top, 0.0)));
        assert_eq!(table.locate(hour, lo - 1e-9 * lo), None);
        assert_eq!(table.locate(hour, hi + 1e-9 * hi), None);
        assert_eq!(table.locate(hour, f64::NAN), None);
        assert_eq!(table.locate(24, lo), None);
        for k in 0..top {
            let (a, b) = (h.load_mw(k), h.load_mw(k + 1));
            assert_eq!(table.locate(hour, a), Some((k, 0.0)));
            let quarter = a + 0.25 * (b - a);
            let three_quarters = a + 0.75 * (b - a);
            if h.blends(k) {
                assert_eq!(h.curve(k).len(), h.curve(k + 1).len());
                let (k2, w) = table.locate(hour, quarter).expect("inside");
                assert_eq!(k2, k);
                assert!((w - 0.25).abs() < 1e-9, "{w}");
                table.curve(hour, k, w).expect("a blend");
            } else {
                // The nearest level, never a blend.
                assert_eq!(table.locate(hour, quarter), Some((k, 0.0)));
                assert_eq!(table.locate(hour, three_quarters), Some((k + 1, 0.0)));
                assert!(table.curve(hour, k, 0.5).is_err());
            }
        }
        // The top level stands alone; a weight above it is refused.
        let top_curve = table.curve(hour, top, 0.0).expect("the top level");
        assert_eq!(&top_curve, h.curve(top));
        assert!(table.curve(hour, top, 0.5).is_err());
        assert!(table.curve(hour, 0, 1.5).is_err());
        assert!(table.curve(hour, top + 1, 0.0).is_err());
    }
    assert!(table.curve(24, 0, 0.0).is_err());
}

#[test]
fn bad_inputs_name_their_field() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    let field = |r: p2pmarket::Result<LoadTable>| match r {
        Err(p2pmarket::Error::InvalidInput { field, .. }) => field,
        other => panic!("expected an invalid input, got {other:?}"),
    };
    for range in [
        (1.2, 0.8),
        (0.0, 1.0),
        (f64::NAN, 1.0),
        (0.9, f64::INFINITY),
    ] {
        assert_eq!(
            field(LoadTable::build(&market, range, 1.0, 50)),
            "scale_range"
        );
    }
    assert_eq!(
        field(LoadTable::build(&market, (0.9, 1.1), 0.0, 50)),
        "tol_mw"
    );
    assert_eq!(
        field(LoadTable::build(&market, (0.9, 1.1), f64::NAN, 50)),
        "tol_mw"
    );
    assert_eq!(
        field(LoadTable::build(&market, (0.9, 1.1), 1.0, 2)),
        "max_levels"
    );
    // Beyond the committed capacity: named with the allowed scales.
    let err = LoadTable::build(&market, (0.9, 3.0), 1.0, 100).unwrap_err();
    assert!(err.to_string().contains("scale_range"), "{err}");
    // A tolerance the level budget cannot meet fails, never returns a worse table.
    let err = LoadTable::build(&market, (0.9, 1.1), 1e-6, 6).unwrap_err();
    assert!(err.to_string().contains("max_levels"), "{err}");
}

/// A study's system-load spread that the market cannot serve (case39's peak day, where
/// the network stops carrying any exchange near 1.10 times the load, with the default 3 %
/// spread, whose table spans 0.88..1.12): `servable_scales` finds where it stops, which
/// the market's own curve building confirms on both sides, and the study's error names
/// the user's field with the largest spread that fits, which then builds.
#[test]
fn an_unservable_spread_names_the_largest_that_fits() {
    use p2pmarket::grid::load_table::servable_scales;
    use p2pmarket::uncertainty::study::PreparedStudy;
    // As a study's market: the microgrid trades (the tie widens what the grid can serve).
    let mut s = reference_scenario("case39");
    s.microgrid.enabled = true;
    let market = Market::from_scenario(&s).expect("case39 with its microgrid");
    let (a, b) = servable_scales(&market, (0.88, 1.12))
        .expect("LPs solve")
        .expect("the base day trades");
    assert_eq!(a, 0.88, "the low end trades");
    assert!(b > 1.05 && b < 1.12, "the high end stops inside: {b}");
    let at = |scale: f64| -> Result<(), String> {
        let mut m = market.clone();
        for h in 0..24 {
            m.system_load_mw[h] = market.system_load_mw[h] * scale;
        }
        (0..24)
            .try_for_each(|h| m.curves(h).map(drop))
            .map_err(|e| e.to_string())
    };
    at(b).unwrap_or_else(|e| panic!("every hour builds its curve at {b}: {e}"));
    // The bisection stops within 1e-4 of the edge.
    assert!(
        at(b + 2e-4).is_err(),
        "some hour cannot trade at {}",
        b + 2e-4
    );

    let cfg = s.uncertainty.clone();
    assert_eq!(cfg.sg_load.std_fraction, 0.03, "the default spread");
    let err = match PreparedStudy::new(&market, &cfg) {
        Err(e) => e,
        Ok(_) => panic!("a table over 0.88..1.12 cannot be built"),
    };
    let text = err.to_string();
    let p2pmarket::Error::InvalidInput { field, value, .. } = err else {
        panic!("not an invalid input: {text}");
    };
    assert_eq!(
        (field.as_str(), value.as_str()),
        ("uncertainty.sg_load.std_fraction", "0.03")
    );
    let advised: f64 = text
        .split("std_fraction <= ")
        .nth(1)
        .and_then(|t| t.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("advises a spread: {text}"));
    assert!(
        advised > 0.02 && advised < 0.03 && 1.0 + 4.0 * advised <= b,
        "{advised} against {b}: {text}"
    );
    let mut fits = cfg.clone();
    fits.sg_load.std_fraction = advised;
    assert!(
        PreparedStudy::new(&market, &fits).is_ok(),
        "the advised spread builds"
    );
}

/// Why the table blends breakpoints, prices included, and not exports at a fixed price
/// (the previous representation, first order in the load step): between two loads whose curves have the same number of breakpoints (no vertex of
/// the parametric QP's critical regions in between), every breakpoint's price and export
/// are affine in load, so blending breakpoints (prices too) reproduces the exact curve at
/// the midpoint, while the blend at a fixed price misses it by about a quarter of the load
/// step where one curve saturates and the other does not yet.
#[test]
fn breakpoints_move_affinely_in_load_between_vertices() {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    let mut matched = 0;
    for (spacing, grid_error_above) in [(0.05, 30.0), (0.01, 6.0)] {
        let mut grid_error = 0.0_f64;
        for hour in [0, 8, 12, 17, 21] {
            for s in [0.85, 0.95, 1.05] {
                let base = market.system_load_mw[hour];
                let (la, lb, lm) = (base * s, base * (s + spacing), base * (s + 0.5 * spacing));
                let (a, b, m) = (
                    exact_curve(&market, hour, la),
                    exact_curve(&market, hour, lb),
                    exact_curve(&market, hour, lm),
                );
                let w = (lm - la) / (lb - la);
                let prices: Vec<f64> = [&a.prices, &b.prices, &m.prices]
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for &p in &prices {
                    let blend = (1.0 - w) * a.export_at(p) + w * b.export_at(p);
                    grid_error = grid_error.max((blend - m.export_at(p)).abs());
                }
                if a.len() != b.len() {
                    continue;
                }
                matched += 1;
                let mix = |x: &[f64], y: &[f64]| -> Vec<f64> {
                    x.iter()
                        .zip(y)
                        .map(|(u, v)| (1.0 - w) * u + w * v)
                        .collect()
                };
                let c = OfferCurve::new(
                    mix(&a.prices, &b.prices),
                    mix(&a.exports, &b.exports),
                    mix(&a.costs, &b.costs),
                )
                .expect("a monotone blend");
                let err = c
                    .prices
                    .iter()
                    .chain(&m.prices)
                    .map(|&p| (c.export_at(p) - m.export_at(p)).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err <= 1e-8,
                    "hour {hour}, scale {s} + {spacing}: breakpoint blend {err} MW from exact"
                );
            }
        }
        eprintln!("spacing {spacing}: fixed-price blend error up to {grid_error:.3} MW");
        assert!(grid_error > grid_error_above, "{spacing}: {grid_error}");
    }
    eprintln!("{matched}/30 intervals with equal breakpoint counts: breakpoint blend exact");
    assert!(matched >= 15, "{matched}");
}
