//! Backend equivalence of the batch engine (issue 3): the same seeded random batches run
//! through the CPU reference (`rci::negotiate` on `Batch::reference_curves`), the rayon
//! backend, the GPU f64 kernel (when the adapter has SHADER_F64) and the GPU f32 kernel,
//! and are compared run by run within the tolerances stated below.
//!
//! GPU tests need an adapter; CI uses Mesa's lavapipe. Without one they print a loud
//! `SKIPPED` line, or fail when `P2PMARKET_REQUIRE_GPU=1`.

use std::sync::OnceLock;
use std::time::Instant;

use p2pmarket::attack::{Attack, AttackShape, AttackVariable, Defence, MAX_ATTACKS};
use p2pmarket::engine::cpu::{evaluate_hour, run_cpu, run_cpu_streaming};
use p2pmarket::engine::gpu::{GpuContext, Precision};
use p2pmarket::engine::{
    BackendChoice, Batch, ChunkOutputs, CurveCache, HourRecord, HourlyInputs, RunSpec,
    RunTrajectory, run_batch,
};
use p2pmarket::grid::load_table::LoadTable;
use p2pmarket::market::Market;
use p2pmarket::microgrid::HOURS;
use p2pmarket::rci::{
    DualUpdate, PowerUpdate, RciSettings, StartPrice, StepRule, within_divergence_limit,
};
use p2pmarket::scenario::Scenario;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs per random batch (x 24 hours each).
const RUNS: usize = 2000;

fn market() -> &'static Market {
    static M: OnceLock<Market> = OnceLock::new();
    M.get_or_init(|| Market::from_scenario(&Scenario::default()).expect("default market"))
}

fn gpu() -> Option<&'static GpuContext> {
    static G: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    match G.get_or_init(|| GpuContext::new(None).map_err(|e| e.to_string())) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            skip(&format!("no GPU adapter ({e})"));
            None
        }
    }
}

fn gpu_f64() -> Option<&'static GpuContext> {
    let ctx = gpu()?;
    if ctx.supports_f64() {
        Some(ctx)
    } else {
        skip(&format!("adapter {} has no SHADER_F64", ctx.info().name));
        None
    }
}

fn skip(why: &str) {
    if std::env::var("P2PMARKET_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("GPU required (P2PMARKET_REQUIRE_GPU=1) but {why}");
    }
    eprintln!(
        "\n*** SKIPPED: {why}; GPU backend NOT tested (set P2PMARKET_REQUIRE_GPU=1 to fail instead) ***\n"
    );
}

/// Power and balance stop tolerance of the f32 batches, MW. f32 resolves a price of
/// 32..64 $/MWh to 3.8e-6 $/MWh, and the steepest smart-grid segment of these batches
/// exports 4695 MW per $/MWh, so one price ulp moves the balance by ~0.018 MW: 1e-3 MW
/// (the brief's first guess) is below what f32 can resolve and stalls ~2% of the hours.
const F32_POWER_TOL: f64 = 1e-2;

/// Stop tolerances: the reference's defaults for f64; for f32, tolerances that f32
/// arithmetic can meet (price 1e-3 $/MWh, power and balance [`F32_POWER_TOL`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tolerances {
    Tight,
    F32,
}

/// `n` seeded runs: load scale in {0.9, 1.0, 1.1}, renewables 0.5..1.5, microgrid load
/// 0.7..1.3, all three step rules, plain and relaxed updates, constant steps from 0.001 to
/// 0.05 (the large ones oscillate) and small iteration caps, so that many runs do not
/// converge.
fn random_runs(seed: u64, n: usize, tol: Tolerances) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let step_rule = [StepRule::Constant, StepRule::Diminishing, StepRule::Newton]
                [rng.random_range(0..3usize)];
            let power_update = if rng.random_bool(0.5) {
                PowerUpdate::Plain
            } else {
                PowerUpdate::Relaxed
            };
            // Log-uniform 0.001..0.05.
            let kappa = 0.001 * 50f64.powf(rng.random_range(0.0..1.0));
            let mut rci = RciSettings {
                step_rule,
                power_update,
                kappa,
                kappa_decay: rng.random_range(20.0..400.0),
                newton_damping: rng.random_range(0.5..1.0),
                initial_price: rng.random_range(5.0..60.0),
                // The f32 bounds below are a common start's; agents that start apart are
                // drawn explicitly, in the f64 runs only.
                start_price: StartPrice::Common,
                max_iterations: [40, 150, 400][rng.random_range(0..3usize)],
                dual_update: if rng.random_bool(0.5) {
                    DualUpdate::Exact
                } else {
                    DualUpdate::Gradient
                },
                ..RciSettings::default()
            };
            // Agents that start apart exercise the consensus term and chi; only in the
            // f64 runs, whose draws come last so that the f32 runs keep their sample. The
            // f32 kernel's bounds below were measured with a common start: apart, 2.2 %
            // of the plain f32 hours flip their converged flag, and on flat stretches,
            // where many prices clear, a converged f32 price may sit elsewhere in the
            // flat range (README "Known limitations").
            if tol == Tolerances::Tight && rng.random_bool(0.5) {
                rci.start_price = StartPrice::OwnMarginal;
                rci.chi = rng.random_range(0.05..0.95);
            }
            if tol == Tolerances::F32 {
                rci.price_tol = 1e-3;
                rci.power_tol = F32_POWER_TOL;
                rci.dual_tol = 1e-3;
                rci.balance_tol = F32_POWER_TOL;
            }
            RunSpec {
                load_scale: [0.9, 1.0, 1.1][rng.random_range(0..3usize)],
                renewable_scale: rng.random_range(0.5..1.5),
                mg_load_scale: rng.random_range(0.7..1.3),
                rci,
                ..RunSpec::default()
            }
        })
        .collect()
}

fn batch(seed: u64, n: usize, tol: Tolerances) -> Batch {
    Batch::from_market(market(), &random_runs(seed, n, tol)).expect("batch")
}

/// The plain reference: `rci::negotiate` on the exact curves, one (run, hour) at a time.
fn reference(b: &Batch) -> Vec<HourRecord> {
    let mut out = Vec::with_capacity(b.runs() * b.hours());
    for run in 0..b.runs() {
        for hour in 0..b.hours() {
            out.push(evaluate_hour(b, run, hour).expect("reference").0);
        }
    }
    out
}

/// Bits of every number of a record (NaN-safe equality: a diverged hour may hold NaN).
fn bits(r: &HourRecord) -> Vec<u64> {
    let mut v = vec![
        r.price.to_bits(),
        r.exchange_mw.to_bits(),
        r.iterations as u64,
        r.converged as u64,
        r.residuals.price_change.to_bits(),
        r.residuals.power_change.to_bits(),
        r.residuals.dual_change.to_bits(),
        r.residuals.balance.to_bits(),
        r.residuals.price_spread.to_bits(),
        r.tampered as u64,
        r.rejected as u64,
    ];
    v.extend(
        r.agent_power
            .iter()
            .chain(&r.agent_cost)
            .map(|x| x.to_bits()),
    );
    v
}

fn assert_bitwise_equal(a: &[HourRecord], b: &[HourRecord]) {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(bits(x) == bits(y), "record {i}: {x:?} != {y:?}");
    }
}

/// How a backend differs from the reference over a batch.
#[derive(Debug, Default)]
struct Diff {
    hours: usize,
    converged_ref: usize,
    diverged_ref: usize,
    /// Converged flags that differ, on plain-update and on relaxed-update hours.
    flag_mismatches_plain: usize,
    flag_mismatches_relaxed: usize,
    hours_plain: usize,
    hours_relaxed: usize,
    /// Over hours where both converged.
    max_iteration_diff_converged: u32,
    /// Both-converged plain-update hours, those whose iteration counts differ by more
    /// than 2, and the largest difference among them.
    both_converged_plain: usize,
    iteration_diff_over_2_plain: usize,
    max_iteration_diff_plain: u32,
    max_price_rel: f64,
    max_exchange_abs: f64,
    max_cost_rel: f64,
    /// The reference's and the GPU's cost, and the exchanges, where `max_cost_rel` was seen,
    /// and that hour's index.
    worst_cost: [f64; 4],
    worst_cost_hour: usize,
    /// The first hour whose iteration counts differ: index, reference and GPU counts, and
    /// its run's RCI settings.
    first_iteration_mismatch: Option<(usize, u32, u32, String)>,
    /// Over hours where neither converged nor diverged (stopped at the cap with finite
    /// states).
    max_iteration_diff_capped: u32,
    max_price_rel_capped: f64,
    /// Hours where exactly one side diverged, and the largest iteration difference where
    /// both did (the iteration their state first passed `DIVERGENCE_LIMIT`).
    diverged_mismatches: usize,
    max_iteration_diff_diverged: u32,
    /// Hours whose tampered or rejected counts differ (attacked runs).
    count_mismatches: usize,
}

/// Relative difference with a floor on the scale (1 $/MWh, 1 $/h).
fn rel(a: f64, b: f64) -> f64 {
    let d = (a - b).abs() / b.abs().max(1.0);
    // NaN must not hide in a max.
    if d.is_nan() { f64::INFINITY } else { d }
}

fn diverged(r: &HourRecord) -> bool {
    !(within_divergence_limit(r.price) && r.agent_power.iter().all(|&p| within_divergence_limit(p)))
}

fn compare(b: &Batch, reference: &[HourRecord], got: &[HourRecord]) -> Diff {
    assert_eq!(reference.len(), got.len());
    assert!(!reference.is_empty());
    let mut d = Diff {
        hours: reference.len(),
        ..Diff::default()
    };
    for (i, (r, g)) in reference.iter().zip(got).enumerate() {
        let relaxed = b.rci(i / b.hours()).power_update == PowerUpdate::Relaxed;
        if relaxed {
            d.hours_relaxed += 1;
        } else {
            d.hours_plain += 1;
        }
        d.converged_ref += r.converged as usize;
        if r.iterations != g.iterations && d.first_iteration_mismatch.is_none() {
            d.first_iteration_mismatch = Some((
                i,
                r.iterations,
                g.iterations,
                format!("{:?}", b.rci(i / b.hours())),
            ));
        }
        d.diverged_ref += diverged(r) as usize;
        d.count_mismatches += ((r.tampered, r.rejected) != (g.tampered, g.rejected)) as usize;
        if diverged(r) != diverged(g) {
            d.diverged_mismatches += 1;
        } else if diverged(r) {
            d.max_iteration_diff_diverged = d
                .max_iteration_diff_diverged
                .max(r.iterations.abs_diff(g.iterations));
        }
        if r.converged != g.converged {
            if relaxed {
                d.flag_mismatches_relaxed += 1;
            } else {
                d.flag_mismatches_plain += 1;
            }
            continue;
        }
        if r.converged {
            if !relaxed {
                let di = r.iterations.abs_diff(g.iterations);
                d.both_converged_plain += 1;
                d.iteration_diff_over_2_plain += (di > 2) as usize;
                d.max_iteration_diff_plain = d.max_iteration_diff_plain.max(di);
            }
            d.max_iteration_diff_converged = d
                .max_iteration_diff_converged
                .max(r.iterations.abs_diff(g.iterations));
            d.max_price_rel = d.max_price_rel.max(rel(g.price, r.price));
            let dx = (g.exchange_mw - r.exchange_mw).abs();
            d.max_exchange_abs =
                d.max_exchange_abs
                    .max(if dx.is_nan() { f64::INFINITY } else { dx });
            for a in 0..b.agents() {
                let c = rel(g.agent_cost[a], r.agent_cost[a]);
                if c > d.max_cost_rel {
                    d.max_cost_rel = c;
                    d.worst_cost = [
                        r.agent_cost[a],
                        g.agent_cost[a],
                        r.exchange_mw,
                        g.exchange_mw,
                    ];
                    d.worst_cost_hour = i;
                }
            }
        } else if !diverged(r) && !diverged(g) {
            d.max_iteration_diff_capped = d
                .max_iteration_diff_capped
                .max(r.iterations.abs_diff(g.iterations));
            d.max_price_rel_capped = d.max_price_rel_capped.max(rel(g.price, r.price));
        }
    }
    d
}

/// The plain reference of `b`, checked bit for bit against the rayon backend (timings
/// printed under `label`).
fn rayon_is_the_reference(b: &Batch, label: &str) -> Vec<HourRecord> {
    let t = Instant::now();
    let reference = reference(b);
    let ref_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = run_cpu(b).expect("rayon");
    eprintln!(
        "{label}reference {ref_s:.2} s, rayon {:.2} s for {} runs",
        t.elapsed().as_secs_f64(),
        b.runs()
    );
    assert_bitwise_equal(&out.records, &reference);
    reference
}

#[test]
fn rayon_backend_is_the_reference() {
    let b = batch(1, RUNS, Tolerances::Tight);
    let reference = rayon_is_the_reference(&b, "");
    let conv = reference.iter().filter(|r| r.converged).count();
    let div = reference.iter().filter(|r| diverged(r)).count();
    // The batch really mixes converged, capped and diverged hours.
    assert!(
        conv > reference.len() / 4 && conv < reference.len() / 2,
        "{conv}"
    );
    assert!(div > 0 && div < reference.len() / 2, "{div}");
}

fn gpu_diff(ctx: &GpuContext, p: Precision, tol: Tolerances, seed: u64) -> Diff {
    gpu_diff_on(ctx, p, &batch(seed, RUNS, tol))
}

fn gpu_diff_on(ctx: &GpuContext, p: Precision, b: &Batch) -> Diff {
    let reference = reference(b);
    let t = Instant::now();
    let out = ctx.run(b, p).expect("gpu run");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.adapter, *ctx.info());
    let d = compare(b, &reference, &out.records);
    let identical = reference
        .iter()
        .zip(&out.records)
        .filter(|(r, g)| bits(r) == bits(g))
        .count();
    eprintln!(
        "{p:?} on {} ({}): {secs:.2} s for {} runs; {identical}/{} hours bitwise identical\n  {d:?}",
        ctx.info().name,
        ctx.info().backend,
        b.runs(),
        d.hours,
    );
    d
}

/// f64 kernel vs reference: the same flags on every hour, the same iteration counts, and
/// values within 1e-9 relative (on lavapipe the results are bitwise identical; other GPUs
/// may contract a*b+c into fma).
#[test]
fn gpu_f64_matches_the_reference() {
    let Some(ctx) = gpu_f64() else { return };
    assert_f64_agreement(&gpu_diff(ctx, Precision::F64, Tolerances::Tight, 2));
}

/// The f64 kernel's agreement with the reference (see [`gpu_f64_matches_the_reference`]).
fn assert_f64_agreement(d: &Diff) {
    assert_eq!(
        d.flag_mismatches_plain + d.flag_mismatches_relaxed,
        0,
        "{d:?}"
    );
    assert_eq!(d.max_iteration_diff_converged, 0, "{d:?}");
    assert_eq!(d.max_iteration_diff_capped, 0, "{d:?}");
    // Divergence is detected by a finite bound (never a NaN or infinity test, which a
    // driver may fold away) at the same iteration as on the CPU.
    assert_eq!(d.diverged_mismatches, 0, "{d:?}");
    assert_eq!(d.max_iteration_diff_diverged, 0, "{d:?}");
    assert_eq!(d.count_mismatches, 0, "{d:?}");
    assert!(d.max_price_rel <= 1e-9, "{d:?}");
    assert!(d.max_exchange_abs <= 1e-9, "{d:?}");
    assert!(d.max_cost_rel <= 1e-9, "{d:?}");
    assert!(d.max_price_rel_capped <= 1e-9, "{d:?}");
    assert!(d.converged_ref > d.hours / 4 && d.diverged_ref > 0, "{d:?}");
}

/// f32 kernel vs the f64 reference at the same (f32-meetable) settings.
///
/// Allowed flag disagreements: 0.2% of the plain-update hours (observed 8/22920 = 0.03%:
/// constant or diminishing steps at the stability edge, kappa x slope ~ 2, where rounding
/// decides whether the oscillation decays, and balances at the f32 resolution of the
/// steep smart-grid segments) and 5% of the relaxed-update hours (observed 912/25080 =
/// 3.6%; 1.3% before the Newton step learned to jump flat curve stretches, which changed
/// these chaotic trajectories: the relaxation ratio of eq. 41-42 as printed amplifies
/// rounding, so whether an hour converges, stalls or diverges is decided by the last
/// bits).
/// Where both converged: prices within 1e-4 relative (observed 1.5e-5), exchanges within
/// 5 x the power tolerance (observed 0.017 MW), costs within 1e-3 relative (observed
/// 4.7e-4; the smart grid's cost is ~5e4 $/h), and for plain updates at most 5% of the
/// hours more than 2 iterations apart (observed 2.1%, up to 244: with a constant or
/// diminishing step the contraction rate is close to 1, so a tiny difference in the
/// residuals moves the iteration where they cross the tolerance a long way). Hours that
/// stopped at the cap are not compared by value: an unconverged oscillation has no
/// precision-independent state.
#[test]
fn gpu_f32_matches_the_reference() {
    let Some(ctx) = gpu() else { return };
    assert_f32_agreement(&gpu_diff(ctx, Precision::F32, Tolerances::F32, 3), 1e-3);
}

/// The f32 kernel's agreement with the reference (see [`gpu_f32_matches_the_reference`]),
/// costs within `cost_rel`.
fn assert_f32_agreement(d: &Diff, cost_rel: f64) {
    assert_f32_agreement_within(d, cost_rel, 0.002);
}

/// [`assert_f32_agreement`] with `plain_flags`, the share of plain-update hours whose
/// converged flags may differ.
fn assert_f32_agreement_within(d: &Diff, cost_rel: f64, plain_flags: f64) {
    assert!(
        d.flag_mismatches_plain as f64 <= plain_flags * d.hours_plain as f64,
        "{d:?}"
    );
    assert!(
        d.flag_mismatches_relaxed as f64 <= 0.05 * d.hours_relaxed as f64,
        "{d:?}"
    );
    assert!(d.max_price_rel <= 1e-4, "{d:?}");
    assert!(d.max_exchange_abs <= 5.0 * F32_POWER_TOL, "{d:?}");
    assert!(d.max_cost_rel <= cost_rel, "{d:?}");
    assert!(
        d.iteration_diff_over_2_plain as f64 <= 0.05 * d.both_converged_plain as f64,
        "{d:?}"
    );
    assert!(d.converged_ref > d.hours / 4, "{d:?}");
}

/// `n` seeded runs of [`random_runs`], every other one with its own per-hour inputs
/// (issue 7): wind speeds 0..30 m/s (below cut-in, cubic, rated and past cut-out), night
/// and day irradiance 0..1200 W/m^2 (a quarter of the hours dark), tidal currents 0..4 m/s
/// and the microgrid's load at 0.3..1.7 of its forecast, through the unit models.
fn random_hourly_runs(seed: u64, n: usize, tol: Tolerances) -> Vec<RunSpec> {
    random_hourly_runs_on(market(), seed, n, tol)
}

/// [`random_hourly_runs`] for the microgrid of `market`.
fn random_hourly_runs_on(market: &Market, seed: u64, n: usize, tol: Tolerances) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e57);
    let forecast = HourlyInputs::forecast(market);
    let mut runs = random_runs(seed, n, tol);
    for r in runs.iter_mut().step_by(2) {
        let wind: [f64; HOURS] = std::array::from_fn(|_| rng.random_range(0.0..30.0));
        let sun: [f64; HOURS] = std::array::from_fn(|_| {
            if rng.random_bool(0.25) {
                0.0
            } else {
                rng.random_range(0.0..1200.0)
            }
        });
        let tide: [f64; HOURS] = std::array::from_fn(|_| rng.random_range(0.0..4.0));
        let load = forecast.mg_load_mw.map(|l| l * rng.random_range(0.3..1.7));
        r.hourly = Some(Box::new(HourlyInputs::from_weather(
            &market.microgrid.config,
            &wind,
            &sun,
            &tide,
            load,
            None,
        )));
    }
    runs
}

/// Per-hour inputs equal to the forecast reproduce the scalar runs bit for bit, on the
/// CPU and in the f64 kernel; random per-hour inputs really change the outcomes.
#[test]
fn forecast_hourly_inputs_equal_the_scalar_runs() {
    let scalar = random_runs(11, 200, Tolerances::Tight);
    let mut hourly = scalar.clone();
    for r in &mut hourly {
        r.hourly = Some(Box::new(HourlyInputs::forecast(market())));
    }
    let (bs, bh) = (
        Batch::from_market(market(), &scalar).expect("batch"),
        Batch::from_market(market(), &hourly).expect("batch"),
    );
    let reference = reference(&bs);
    assert_bitwise_equal(&reference, &run_cpu(&bh).expect("cpu").records);
    if let Some(ctx) = gpu_f64() {
        let (a, b) = (
            ctx.run(&bs, Precision::F64).expect("gpu"),
            ctx.run(&bh, Precision::F64).expect("gpu"),
        );
        assert_bitwise_equal(&a.records, &b.records);
    }
    let random = Batch::from_market(market(), &random_hourly_runs(11, 200, Tolerances::Tight))
        .expect("batch");
    let moved = run_cpu(&random)
        .expect("cpu")
        .records
        .iter()
        .zip(&reference)
        .enumerate()
        .filter(|(i, (a, b))| {
            (i / HOURS).is_multiple_of(2) && (a.exchange_mw - b.exchange_mw).abs() > 1.0
        })
        .count();
    // Of the 100 x 24 hourly hours, most trade another amount (the dark, windless hours
    // with the forecast's own load may not).
    assert!(moved > 100 * HOURS / 2, "{moved}");
}

/// A load table over system-load scales 0.97..1.03 of the default market (built once).
fn table() -> &'static LoadTable {
    static T: OnceLock<LoadTable> = OnceLock::new();
    T.get_or_init(|| LoadTable::build(market(), (0.97, 1.03), 0.01, 400).expect("load table"))
}

/// [`random_hourly_runs`] whose hourly runs also draw the smart grid's load of every hour,
/// uniform in 0.96..1.04 of the base (so some hours fall outside the table and are
/// flagged), for a batch over [`table`].
fn table_batch(seed: u64, n: usize, tol: Tolerances) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut runs = random_hourly_runs(seed, n, tol);
    for r in runs.iter_mut() {
        if let Some(h) = r.hourly.as_mut() {
            r.load_scale = 1.0;
            h.sg_load_mw = Some(std::array::from_fn(|t| {
                market().system_load_mw[t] * rng.random_range(0.96..1.04)
            }));
        }
    }
    Batch::from_market_with_table(market(), &runs, &mut CurveCache::default(), table())
        .expect("batch")
}

/// Runs whose smart-grid curve blends two load-table levels every hour: the rayon backend
/// is the reference bit for bit, the f64 kernel agrees as on scalar runs, and the f32
/// kernel as on the other per-hour runs; loads outside the table are flagged.
#[test]
fn load_table_blends_agree_on_every_backend() {
    let b = table_batch(14, RUNS / 4, Tolerances::Tight);
    assert_bitwise_equal(&run_cpu(&b).expect("cpu").records, &reference(&b));
    let flagged = (0..b.runs())
        .flat_map(|r| (0..HOURS).map(move |h| (r, h)))
        .filter(|&(r, h)| b.sg_load_out_of_range(r, h))
        .count();
    // A quarter of the draws (0.96..0.97 and 1.03..1.04) fall outside the table; half the
    // runs draw.
    let hours = b.runs() / 2 * HOURS;
    assert!(
        flagged > hours / 5 && flagged < hours * 3 / 10,
        "{flagged} of {hours}"
    );
    if let Some(ctx) = gpu_f64() {
        assert_f64_agreement(&gpu_diff_on(ctx, Precision::F64, &b));
    }
    if let Some(ctx) = gpu() {
        let b = table_batch(15, RUNS / 4, Tolerances::F32);
        assert_f32_agreement(&gpu_diff_on(ctx, Precision::F32, &b), 5e-3);
    }
}

/// Runs with per-hour inputs: the rayon backend is the reference bit for bit, and both
/// kernels agree with it as closely as on scalar runs, but for the f32 costs: within
/// 5e-3 relative (observed 1.9e-3). With random weather many hours trade little, so the
/// microgrid's cost is a few hundred $/h, and the f32 exchange difference of up to
/// 0.017 MW (as on scalar runs) at ~50 $/MWh moves it by ~0.8 $/h.
#[test]
fn hourly_inputs_agree_on_every_backend() {
    let b = Batch::from_market(
        market(),
        &random_hourly_runs(12, RUNS / 2, Tolerances::Tight),
    )
    .expect("batch");
    assert_bitwise_equal(&run_cpu(&b).expect("cpu").records, &reference(&b));
    if let Some(ctx) = gpu_f64() {
        assert_f64_agreement(&gpu_diff_on(ctx, Precision::F64, &b));
    }
    if let Some(ctx) = gpu() {
        let b = Batch::from_market(market(), &random_hourly_runs(13, RUNS / 2, Tolerances::F32))
            .expect("batch");
        assert_f32_agreement(&gpu_diff_on(ctx, Precision::F32, &b), 5e-3);
    }
}

/// `n` runs of [`random_runs`], each with per-hour inputs at the unit models' edges:
/// wind and tidal speeds exactly at zero, cut-in, rated and cut-out, just past cut-out and
/// far beyond; irradiance zero, at the reference or above it; the microgrid's load at 0.3
/// or 1.7 of its forecast.
fn extreme_hourly_runs(market: &Market, seed: u64, n: usize, tol: Tolerances) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xed9e);
    let mg = &market.microgrid.config;
    let forecast = HourlyInputs::forecast(market);
    let edges = |cut_in: f64, rated: f64, cut_out: f64, top: f64| {
        [0.0, cut_in, rated, cut_out, cut_out + 1e-9, top]
    };
    let wind = edges(
        mg.wind.cut_in_ms,
        mg.wind.rated_ms,
        mg.wind.cut_out_ms,
        30.0,
    );
    let tide = edges(
        mg.tidal.cut_in_ms,
        mg.tidal.rated_ms,
        mg.tidal.cut_out_ms,
        6.0,
    );
    let sun = [0.0, mg.pv.reference_irradiance_wm2, 1200.0];
    let mut runs = random_runs(seed, n, tol);
    for r in &mut runs {
        let mut pick = |v: &[f64]| v[rng.random_range(0..v.len())];
        let (w, s, t): ([f64; HOURS], [f64; HOURS], [f64; HOURS]) = (
            std::array::from_fn(|_| pick(&wind)),
            std::array::from_fn(|_| pick(&sun)),
            std::array::from_fn(|_| pick(&tide)),
        );
        let load = forecast.mg_load_mw.map(|l| l * pick(&[0.3, 1.7]));
        r.hourly = Some(Box::new(HourlyInputs::from_weather(
            mg, &w, &s, &t, load, None,
        )));
    }
    runs
}

/// The markets beyond the default that the harness also runs (issue 7, item 6): the smart
/// grid alone, its microgrid's line congested, a microgrid without renewables, and a
/// random market on each of case5, case30, case39 and case57 of MATPOWER's library (a
/// random PCC bus, the microgrid's ratings, load and tie scaled at random; draws whose
/// day is infeasible are redrawn).
fn other_markets() -> Vec<(String, Market)> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scenarios = Vec::new();
    let mut s = Scenario::default();
    s.microgrid.enabled = false;
    scenarios.push(("microgrid off".to_string(), s));
    let mut s = Scenario::default();
    s.grid.case_file = Some(repo.join("experiments/cases/rts24_line7_8_60mw.m"));
    scenarios.push(("RTS-24, line 7-8 derated to 60 MW".to_string(), s));
    let mut s = Scenario::default();
    s.microgrid.wind.rated_mw = 0.0;
    s.microgrid.pv.rated_mw = 0.0;
    s.microgrid.tidal.rated_mw = 0.0;
    scenarios.push(("no renewables".to_string(), s));
    let mut markets: Vec<(String, Market)> = scenarios
        .into_iter()
        .map(|(name, s)| {
            let m = Market::from_scenario(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, m)
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0x0a4e_7e75);
    for case in ["case5", "case30", "case39", "case57"] {
        for tries in 1.. {
            assert!(
                tries <= 40,
                "{case}: no feasible random market in {tries} draws"
            );
            let mut s = Scenario::default();
            s.grid.case_file = Some(repo.join(format!("tests/data/matpower/{case}.m")));
            let buses: Vec<usize> = s
                .load_case()
                .expect("library case")
                .buses
                .iter()
                .filter(|b| b.kind != 4)
                .map(|b| b.id)
                .collect();
            let mg = &mut s.microgrid;
            mg.pcc_bus = buses[rng.random_range(0..buses.len())];
            mg.wind.rated_mw *= rng.random_range(0.0..2.0);
            mg.pv.rated_mw *= rng.random_range(0.0..2.0);
            mg.tidal.rated_mw *= rng.random_range(0.0..2.0);
            mg.load.peak_mw *= rng.random_range(0.3..2.0);
            mg.tie_capacity_mw *= rng.random_range(1.0..3.0);
            let name = format!("{case}, PCC bus {}", mg.pcc_bus);
            if let Ok(m) = Market::from_scenario(&s) {
                markets.push((name, m));
                break;
            }
        }
    }
    markets
}

/// The harness on [`other_markets`]: on each, random scalar runs, random per-hour inputs
/// and per-hour inputs at the unit models' edges. The rayon backend is the reference bit
/// for bit, the f64 kernel agrees as on the default market (on lavapipe bitwise, every
/// market), and the f32 kernel within the bounds of the per-hour runs there, but for the
/// flags of plain-update hours: 0.4 % (1 % with one agent) instead of 0.2 %, since these
/// markets' steep smart-grid segments meet f32's price resolution more often (measured
/// below).
#[test]
fn other_markets_agree_on_every_backend() {
    for (name, m) in other_markets() {
        let mut runs = random_hourly_runs_on(&m, 21, RUNS / 8, Tolerances::Tight);
        runs.extend(extreme_hourly_runs(&m, 21, RUNS / 8, Tolerances::Tight));
        let b = Batch::from_market(&m, &runs).expect("batch");
        eprintln!("{name}: {} agents", b.agents());
        assert_bitwise_equal(&run_cpu(&b).expect("cpu").records, &reference(&b));
        if let Some(ctx) = gpu_f64() {
            assert_f64_agreement(&gpu_diff_on(ctx, Precision::F64, &b));
        }
        if let Some(ctx) = gpu() {
            let mut runs = random_hourly_runs_on(&m, 22, RUNS / 8, Tolerances::F32);
            runs.extend(extreme_hourly_runs(&m, 22, RUNS / 8, Tolerances::F32));
            let b = Batch::from_market(&m, &runs).expect("batch");
            let d = gpu_diff_on(ctx, Precision::F32, &b);
            // One agent: the balance is the smart grid's own export, which must reach
            // F32_POWER_TOL on segments where one f32 price step moves it by ~0.018 MW
            // (see F32_POWER_TOL), with no microgrid curve to absorb it. Measured: 24 of
            // 5 808 plain hours (0.41 %) flip their flag; two-agent markets 0-17 (at most
            // 0.29 %, the congested RTS-24 0.14 %).
            let plain_flags = if b.agents() == 1 { 0.01 } else { 0.004 };
            assert_f32_agreement_within(&d, 5e-3, plain_flags);
        }
    }
}

/// Runs that start exactly on a breakpoint price of one of the default day's curves (a
/// jump where two breakpoints share a price), every step rule, plain and relaxed, a common
/// start: the first evaluations of the curves, their slopes and the Newton bracket fall
/// exactly on breakpoints and jumps.
fn breakpoint_runs(tol: Tolerances) -> Vec<RunSpec> {
    let base = Batch::from_market(market(), &[RunSpec::default()]).expect("batch");
    let mut prices: Vec<f64> = (0..HOURS)
        .flat_map(|h| base.reference_curves(0, h).expect("curves"))
        .flat_map(|c| c.prices)
        .filter(|&p| p > 0.0 && p < 500.0)
        .collect();
    prices.sort_by(f64::total_cmp);
    prices.dedup();
    let template = random_runs(31, 1, tol).remove(0).rci;
    let mut runs = Vec::new();
    for &p in &prices {
        for step_rule in [StepRule::Constant, StepRule::Diminishing, StepRule::Newton] {
            for power_update in [PowerUpdate::Plain, PowerUpdate::Relaxed] {
                runs.push(RunSpec {
                    rci: RciSettings {
                        step_rule,
                        power_update,
                        initial_price: p,
                        start_price: StartPrice::Common,
                        kappa: 0.005,
                        max_iterations: 150,
                        ..template.clone()
                    },
                    ..RunSpec::default()
                });
            }
        }
    }
    runs
}

/// No NaN in any number of the records (a diverged hour holds finite values past
/// `DIVERGENCE_LIMIT` or infinities, never NaN: issue 10's guard against 0/0).
fn assert_no_nan(records: &[HourRecord], label: &str) {
    for (i, r) in records.iter().enumerate() {
        let numbers = [
            r.price,
            r.exchange_mw,
            r.residuals.price_change,
            r.residuals.power_change,
            r.residuals.dual_change,
            r.residuals.balance,
            r.residuals.price_spread,
        ];
        assert!(
            numbers
                .iter()
                .chain(&r.agent_power)
                .chain(&r.agent_cost)
                .all(|x| !x.is_nan()),
            "{label}: record {i} holds a NaN: {r:?}"
        );
    }
}

/// Prices exactly on the curves' breakpoints and jumps (issue 10, item 2): the rayon
/// backend is the reference bit for bit, the f64 kernel agrees in flags, iterations and
/// values as everywhere, and no backend ever produces a NaN there (a division guarded by
/// a comparison of another copy of its divisor would, under contraction).
#[test]
fn prices_on_breakpoints_and_jumps_agree() {
    let b = Batch::from_market(market(), &breakpoint_runs(Tolerances::Tight)).expect("batch");
    let reference = rayon_is_the_reference(&b, "breakpoints: ");
    assert!(b.runs() >= 60, "{} runs", b.runs());
    assert_no_nan(&reference, "reference");
    if let Some(ctx) = gpu_f64() {
        let out = ctx.run(&b, Precision::F64).expect("gpu f64");
        assert_no_nan(&out.records, "gpu f64");
        let d = compare(&b, &reference, &out.records);
        assert_eq!(
            d.flag_mismatches_plain + d.flag_mismatches_relaxed,
            0,
            "{d:?}"
        );
        assert_eq!(d.max_iteration_diff_converged, 0, "{d:?}");
        assert_eq!(d.diverged_mismatches, 0, "{d:?}");
        assert!(
            d.max_price_rel <= 1e-9 && d.max_exchange_abs <= 1e-9,
            "{d:?}"
        );
        assert!(
            d.max_cost_rel <= 1e-9 && d.max_price_rel_capped <= 1e-9,
            "{d:?}"
        );
    }
    if let Some(ctx) = gpu() {
        let b = Batch::from_market(market(), &breakpoint_runs(Tolerances::F32)).expect("batch");
        assert_no_nan(
            &ctx.run(&b, Precision::F32).expect("gpu f32").records,
            "gpu f32",
        );
    }
}

/// A small batch of runs that keep their trajectories (and some that do not).
fn trajectory_batch() -> Batch {
    let mut runs = random_runs(4, 12, Tolerances::Tight);
    for (i, r) in runs.iter_mut().enumerate() {
        r.trajectory = i % 3 != 1;
        r.rci.max_iterations = 60;
    }
    Batch::from_market(market(), &runs).expect("batch")
}

#[test]
fn cpu_results_do_not_depend_on_the_thread_count() {
    let b = batch(5, 300, Tolerances::Tight);
    let run_on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| run_cpu(&b).expect("cpu"))
    };
    let (one, two) = (run_on(1), run_on(2));
    assert_eq!(one.adapter.name, "rayon CPU (1 threads)");
    assert_bitwise_equal(&one.records, &two.records);
    let tb = trajectory_batch();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool")
        .install(|| run_cpu(&tb).expect("cpu"));
    assert_eq!(one.trajectories, run_cpu(&tb).expect("cpu").trajectories);
    assert_eq!(one.trajectories.len(), 8);
}

/// Concatenates streamed chunks, checking that they arrive in run order and cover the
/// batch; returns the records and trajectories and the number of chunks.
fn assemble(
    b: &Batch,
    stream: impl FnOnce(&mut dyn FnMut(&ChunkOutputs) -> p2pmarket::Result<()>),
) -> (Vec<HourRecord>, Vec<RunTrajectory>, usize) {
    let (mut records, mut trajectories, mut chunks) = (Vec::new(), Vec::new(), 0);
    let mut next = 0;
    stream(&mut |c: &ChunkOutputs| {
        assert_eq!(c.runs.start, next, "chunks out of order");
        assert_eq!(c.records.len(), c.runs.len() * b.hours());
        assert!(c.trajectories.iter().all(|t| c.runs.contains(&t.run)));
        next = c.runs.end;
        chunks += 1;
        records.extend_from_slice(&c.records);
        trajectories.extend_from_slice(&c.trajectories);
        Ok(())
    });
    assert_eq!(next, b.runs(), "chunks do not cover the batch");
    (records, trajectories, chunks)
}

#[test]
fn cpu_streamed_chunks_assemble_to_the_whole_batch() {
    let b = trajectory_batch();
    let whole = run_cpu(&b).expect("cpu");
    let (records, trajectories, chunks) = assemble(&b, |f| {
        run_cpu_streaming(&b, 5, f).expect("cpu streaming");
    });
    assert_eq!(chunks, b.runs().div_ceil(5));
    assert_bitwise_equal(&whole.records, &records);
    assert_eq!(whole.trajectories, trajectories);
}

#[test]
fn gpu_streamed_chunks_assemble_to_the_whole_batch() {
    let Some(ctx) = gpu() else { return };
    let b = trajectory_batch();
    let whole = ctx.run(&b, Precision::F32).expect("gpu");
    let (records, trajectories, chunks) = assemble(&b, |f| {
        ctx.run_streaming(&b, Precision::F32, 5, f)
            .expect("gpu streaming");
    });
    assert_eq!(chunks, b.runs().div_ceil(5));
    assert_bitwise_equal(&whole.records, &records);
    assert_eq!(whole.trajectories, trajectories);
}

#[test]
fn gpu_results_do_not_depend_on_the_chunk_size() {
    let Some(ctx) = gpu() else { return };
    let b = batch(6, 300, Tolerances::F32);
    let mut precisions = vec![Precision::F32];
    if ctx.supports_f64() {
        precisions.push(Precision::F64);
    }
    for p in precisions {
        let whole = ctx.run(&b, p).expect("gpu");
        let chunked = ctx.run_chunked(&b, p, 7).expect("gpu chunked");
        assert_bitwise_equal(&whole.records, &chunked.records);
    }
}

#[test]
fn gpu_trajectories_match_the_reference() {
    let Some(ctx) = gpu_f64() else { return };
    let b = trajectory_batch();
    let cpu = run_cpu(&b).expect("cpu");
    // Chunks of 5 runs: trajectory offsets restart in every chunk.
    let gpu = ctx.run_chunked(&b, Precision::F64, 5).expect("gpu");
    assert_eq!(cpu.trajectories.len(), 8);
    assert_eq!(gpu.trajectories.len(), cpu.trajectories.len());
    for (c, g) in cpu.trajectories.iter().zip(&gpu.trajectories) {
        assert_eq!(c.run, g.run);
        assert_eq!(c.hours.len(), g.hours.len());
        for (ch, gh) in c.hours.iter().zip(&g.hours) {
            assert_eq!(ch.len(), gh.len(), "run {}", c.run);
            for (cp, gp) in ch.iter().zip(gh) {
                assert_eq!((cp.iteration, cp.agent), (gp.iteration, gp.agent));
                let (a, b) = (cp.state, gp.state);
                for (x, y) in [
                    (a.price, b.price),
                    (a.power, b.power),
                    (a.dual_upper, b.dual_upper),
                    (a.dual_lower, b.dual_lower),
                ] {
                    assert!(
                        x.to_bits() == y.to_bits() || rel(y, x) <= 1e-9,
                        "run {} {cp:?} vs {gp:?}",
                        c.run
                    );
                }
            }
        }
    }
    // The f32 kernel fills the same rows.
    let f32_out = ctx.run(&b, Precision::F32).expect("gpu f32");
    assert_eq!(f32_out.trajectories.len(), 8);
}

/// One context shared by several threads, each reading back many small chunks: the map
/// callback of one thread's readback may run inside another thread's poll. Every thread
/// must still get its own, correct results (CI once failed on this race).
#[test]
fn one_context_serves_concurrent_threads() {
    let Some(ctx) = gpu() else { return };
    let b = batch(11, 40, Tolerances::F32);
    let expected = ctx.run(&b, Precision::F32).expect("gpu");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..4 {
                        let out = ctx.run_chunked(&b, Precision::F32, 1).expect("gpu");
                        assert_bitwise_equal(&expected.records, &out.records);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
    });
}

#[test]
fn unknown_adapter_name_is_an_error_naming_the_adapters() {
    let e = GpuContext::new(Some("no-such-adapter-p2pmarket")).expect_err("no such adapter");
    assert!(e.to_string().contains("no-such-adapter-p2pmarket"), "{e}");
}

#[test]
fn auto_backend_runs_or_reports_its_fallback() {
    let b = batch(7, 20, Tolerances::F32);
    let out = run_batch(&b, BackendChoice::Auto, Precision::F32, None).expect("auto");
    assert_eq!(out.records.len(), 20 * 24);
    let software = GpuContext::new(None).map(|ctx| ctx.is_software());
    match (&out.notice, software) {
        // lavapipe/llvmpipe: passed over for the rayon backend, saying so (issue 12).
        (Some(n), Ok(true)) => {
            assert_eq!(out.adapter.backend, "cpu");
            assert!(n.contains("software rasterizer"), "{n}");
            assert!(n.contains("falling back to the rayon CPU backend"), "{n}");
        }
        (Some(n), _) => {
            assert_eq!(out.adapter.backend, "cpu");
            assert!(n.contains("falling back to the rayon CPU backend"), "{n}");
            skip(n);
        }
        (None, software) => {
            assert_ne!(out.adapter.backend, "cpu");
            assert_eq!(
                software.ok(),
                Some(false),
                "auto chose a software rasterizer"
            );
        }
    }
}

/// Mesa's device-select layer printed "XDG_RUNTIME_DIR is invalid or not set" on headless
/// machines whenever the CLI listed adapters; the CLI switches the layer off (issue 12).
#[test]
fn cli_listing_adapters_prints_no_wayland_noise() {
    if gpu().is_none() {
        skip("no GPU adapter for the CLI to list");
        return;
    }
    // 400 iterations at most: the bench's f32 tolerances leave hours unconverged, and
    // lavapipe cuts a shared-step hour's loops short past about 900 (the kernel's probe
    // then fails the run, see `loops_the_driver_cuts_short_are_an_error`).
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bench.toml");
    std::fs::write(&config, "[rci]\nmax_iterations = 400\n").expect("write the scenario");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2pmarket"))
        .args(["bench", "--backend", "gpu", "--sizes", "1000", "--config"])
        .arg(&config)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("run the CLI");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("runs/s"));
}

// ---- Attacked batches (issue 9): the kernel mirrors the attacked `rci::step` ----

/// Runs of an attacked batch.
const ATTACKED_RUNS: usize = 600;

/// The most destructive `|size|` drawn for an attacked variable, in its unit: chi +-2,
/// prices and duals +-50 $/MWh, power +-100 MW, slopes +-1000 MW/($/MWh) (the smart
/// grid's steepest segments export thousands of MW per $/MWh), gaps +-50 $/MWh.
fn largest_size(v: AttackVariable) -> f64 {
    match v {
        AttackVariable::Chi => 2.0,
        AttackVariable::Price
        | AttackVariable::StealthyPrice
        | AttackVariable::DualUpper
        | AttackVariable::DualLower
        | AttackVariable::Gap => 50.0,
        AttackVariable::Power => 100.0,
        AttackVariable::Slope => 1000.0,
    }
}

/// One random attack slot: variable `variable`, any shape, agent, 1..24 hours, a window
/// from iteration 0..30 lasting 1..200 iterations or to the end, and a size log-uniform
/// from harmless (1e-12) to [`largest_size`], of either sign.
fn random_attack(rng: &mut ChaCha8Rng, variable: AttackVariable) -> Attack {
    let mut hours: Vec<u32> = (0..HOURS as u32).filter(|_| rng.random_bool(0.4)).collect();
    if hours.is_empty() {
        hours.push(rng.random_range(0..HOURS as u32));
    }
    let largest = largest_size(variable).log10();
    let size = 10f64.powf(rng.random_range(-12.0..largest));
    Attack {
        variable,
        agent: rng.random_range(0..2),
        hours,
        first_iteration: rng.random_range(0..30),
        duration: if rng.random_bool(0.25) {
            None
        } else {
            Some(rng.random_range(1..=200))
        },
        shape: AttackShape::ALL[rng.random_range(0..AttackShape::ALL.len())],
        size: if rng.random_bool(0.5) { size } else { -size },
        ramp_iterations: rng.random_range(1..=30),
        seed: rng.random(),
    }
}

/// `n` seeded runs of [`random_runs`] under 1..=4 random attacks each (every variable in
/// turn, so each appears in every batch), half of them defended. Three runs in four start
/// at the agents' own marginal prices with chi in (0, 1), so that the consensus term and a
/// chi attack matter; the others start at a common price.
fn attacked_runs(seed: u64, n: usize, tol: Tolerances) -> Vec<RunSpec> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa77a_c4ed);
    let mut runs = random_runs(seed, n, tol);
    let mut next_variable = 0;
    for (i, r) in runs.iter_mut().enumerate() {
        if rng.random_bool(0.75) {
            r.rci.start_price = StartPrice::OwnMarginal;
            r.rci.chi = rng.random_range(0.05..0.95);
        } else {
            r.rci.start_price = StartPrice::Common;
        }
        for k in 0..rng.random_range(1..=MAX_ATTACKS) {
            let variable = AttackVariable::ALL[next_variable % AttackVariable::ALL.len()];
            next_variable += 1;
            r.attacks[k] = random_attack(&mut rng, variable).slot(k, i as u64);
        }
        r.defence = if rng.random_bool(0.5) {
            Defence::Defended
        } else {
            Defence::Undefended
        };
    }
    runs
}

fn attacked_batch(seed: u64, n: usize, tol: Tolerances) -> Batch {
    batch_of(&attacked_runs(seed, n, tol))
}

/// `runs` without their attacks.
fn without_attacks(runs: &[RunSpec]) -> Vec<RunSpec> {
    runs.iter()
        .map(|r| RunSpec {
            attacks: Default::default(),
            defence: Defence::Undefended,
            ..r.clone()
        })
        .collect()
}

/// What an attacked batch exercises: hours with altered messages, undefended and
/// defended (rejected == tampered only there), and undefended hours the attacks moved off
/// their attack-free outcome (`clean`).
fn assert_attacks_bite(runs: &[RunSpec], attacked: &[HourRecord], clean: &[HourRecord]) {
    let (mut tampered, mut rejected, mut moved) = (0, 0, 0);
    for (i, (a, c)) in attacked.iter().zip(clean).enumerate() {
        tampered += (a.tampered > 0) as usize;
        rejected += (a.rejected > 0) as usize;
        if runs[i / HOURS].defence == Defence::Defended {
            assert_eq!(a.rejected, a.tampered, "record {i}");
        } else {
            assert_eq!(a.rejected, 0, "record {i}");
            moved +=
                (a.iterations != c.iterations || a.price.to_bits() != c.price.to_bits()) as usize;
        }
    }
    let hours = attacked.len();
    eprintln!("attacked: {tampered} of {hours} hours tampered, {rejected} rejected, {moved} moved");
    assert!(tampered > hours / 5, "{tampered} of {hours} hours tampered");
    assert!(
        rejected > hours / 10,
        "{rejected} of {hours} hours rejected"
    );
    assert!(moved > hours / 10, "{moved} of {hours} hours moved");
}

fn batch_of(runs: &[RunSpec]) -> Batch {
    Batch::from_market(market(), runs).expect("batch")
}

/// Attacked runs (every variable, shape and defence, 1..=4 slots a run): the rayon backend
/// is the plain reference bit for bit, tampered and rejected counts included, and the
/// attacks really act ([`assert_attacks_bite`]).
#[test]
fn attacked_rayon_backend_is_the_reference() {
    let runs = attacked_runs(21, ATTACKED_RUNS, Tolerances::Tight);
    let reference = rayon_is_the_reference(&batch_of(&runs), "attacked: ");
    let clean = run_cpu(&batch_of(&without_attacks(&runs))).expect("rayon");
    assert_attacks_bite(&runs, &reference, &clean.records);
}

/// Records equal bit for bit but for their tampered and rejected counts.
fn assert_equal_but_counts(a: &[HourRecord], b: &[HourRecord]) {
    let uncounted = |r: &[HourRecord]| -> Vec<HourRecord> {
        r.iter()
            .map(|x| HourRecord {
                tampered: 0,
                rejected: 0,
                ..*x
            })
            .collect()
    };
    assert_bitwise_equal(&uncounted(a), &uncounted(b));
}

/// Defended runs are the attack-free runs bit for bit but for their counts (every altered
/// message rejected), on the CPU and in the f64 kernel, whose counts are the CPU's.
#[test]
fn defended_runs_are_the_attack_free_runs() {
    let mut runs = attacked_runs(22, ATTACKED_RUNS / 2, Tolerances::Tight);
    for r in &mut runs {
        r.defence = Defence::Defended;
    }
    let (b, clean) = (batch_of(&runs), batch_of(&without_attacks(&runs)));
    let cpu = run_cpu(&b).expect("cpu").records;
    assert_equal_but_counts(&cpu, &run_cpu(&clean).expect("cpu").records);
    assert!(cpu.iter().all(|r| r.rejected == r.tampered));
    let tampered = cpu.iter().filter(|r| r.tampered > 0).count();
    assert!(tampered > cpu.len() / 5, "{tampered} of {}", cpu.len());
    if let Some(ctx) = gpu_f64() {
        let gpu = ctx.run(&b, Precision::F64).expect("gpu").records;
        let gpu_clean = ctx.run(&clean, Precision::F64).expect("gpu").records;
        assert_equal_but_counts(&gpu, &gpu_clean);
        assert!(
            gpu.iter()
                .zip(&cpu)
                .all(|(g, c)| (g.tampered, g.rejected) == (c.tampered, c.rejected))
        );
    }
}

/// f64 kernel vs reference on attacked runs: as on attack-free runs (the same flags,
/// iteration counts and divergences, values within 1e-9 relative), and the same tampered
/// and rejected counts on every hour.
#[test]
fn attacked_gpu_f64_matches_the_reference() {
    let Some(ctx) = gpu_f64() else { return };
    let d = gpu_diff_on(
        ctx,
        Precision::F64,
        &attacked_batch(23, ATTACKED_RUNS, Tolerances::Tight),
    );
    assert_f64_agreement(&d);
}

/// f32 kernel vs the f64 reference on attacked runs, at the f32 tolerances.
///
/// Measured on lavapipe (seed 24, 600 runs x 24 hours, every variable including the
/// stealthy wedge): converged flags differ on 2.9 % of the plain-update and 5.0 % of the
/// relaxed-update hours, divergence on 2.1 %, tampered or rejected counts on 34 %. Three
/// runs in four start apart (own marginal), where f32 already flips 2.2 % of the plain
/// flags without attacks (see `random_runs`); a destructive attack pushes many more hours
/// to the edge of stability, where rounding decides. The counts cannot agree across
/// precisions: an alteration is counted when `x + c` differs from `x` in the kernel's
/// precision, so the harmless sizes (down to 1e-12) alter f64 messages and leave f32 ones
/// intact, and every count after a flag or trajectory difference differs too. Where both
/// converged the values agree as on attack-free runs: prices within 1e-4 relative
/// (observed 5.5e-5), exchanges within 5 x the power tolerance (observed 0.018 MW), costs
/// within 1e-3 relative (observed 4.1e-4). (An earlier draw that needed 2e-3 for costs ran
/// while lavapipe still cut long hours' loops short, see
/// `engine::gpu::tests::loops_the_driver_cuts_short_are_an_error`.)
#[test]
fn attacked_gpu_f32_matches_the_reference() {
    let Some(ctx) = gpu() else { return };
    let b = attacked_batch(24, ATTACKED_RUNS, Tolerances::F32);
    let d = gpu_diff_on(ctx, Precision::F32, &b);
    let rate = |x: usize, of: usize| x as f64 / of as f64;
    assert!(
        rate(d.flag_mismatches_plain, d.hours_plain) <= 0.06,
        "{d:?}"
    );
    assert!(
        rate(d.flag_mismatches_relaxed, d.hours_relaxed) <= 0.06,
        "{d:?}"
    );
    assert!(rate(d.diverged_mismatches, d.hours) <= 0.04, "{d:?}");
    assert!(rate(d.count_mismatches, d.hours) <= 0.4, "{d:?}");
    assert!(d.max_price_rel <= 1e-4, "{d:?}");
    assert!(d.max_exchange_abs <= 5.0 * F32_POWER_TOL, "{d:?}");
    assert!(d.max_cost_rel <= 1e-3, "{d:?}");
    assert!(d.converged_ref > d.hours / 4, "{d:?}");
}
