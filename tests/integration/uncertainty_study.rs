//! The uncertainty study end to end (issue 7): the command's files, its statistics against
//! an independent computation (a study with zero variance is the deterministic day, which
//! `market::run_day` computes without the engine), reproducibility, the same statistics on
//! the CPU and on the GPU kernel, and bad input.
//!
//! GPU tests need an adapter; CI uses Mesa's lavapipe. Without one they print a loud
//! `SKIPPED` line, or fail when `P2PMARKET_REQUIRE_GPU=1`.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::file_bytes;
use p2pmarket::engine::BackendChoice;
use p2pmarket::engine::gpu::{GpuContext, Precision};
use p2pmarket::market::{self, Market};
use p2pmarket::microgrid::HOURS;
use p2pmarket::rci::StartPrice;
use p2pmarket::scenario::Scenario;
use p2pmarket::uncertainty::study::{
    CHUNK_RUNS, HISTOGRAM_QUANTITIES, PreparedStudy, QUANTITIES, StatRow, StudyOptions,
    TAIL_RELATIVE, output_index, run_prepared, run_study, sample_outputs,
};
use p2pmarket::uncertainty::{Method, UncertaintyConfig};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_p2pmarket"));
    c.env("NODEVICE_SELECT", "1");
    c
}

fn read_parquet(path: &Path) -> RecordBatch {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    concat_batches(&schema, &batches).unwrap()
}

fn options(methods: Vec<Method>, samples: u64, backend: BackendChoice) -> StudyOptions {
    StudyOptions {
        methods,
        samples,
        backend,
        precision: Precision::F64,
    }
}

/// The default model with a 1 % system-load spread: a load table over 0.96..1.04, a few
/// seconds to build instead of the default range's 13 s.
fn narrow_load_table() -> UncertaintyConfig {
    let mut cfg = UncertaintyConfig::default();
    cfg.sg_load.std_fraction = 0.01;
    cfg
}

fn row<'a>(rows: &'a [StatRow], method: &str, quantity: &str, hour: Option<u32>) -> &'a StatRow {
    rows.iter()
        .find(|r| r.method == method && r.quantity == quantity && r.hour == hour)
        .unwrap_or_else(|| panic!("no row {method} {quantity} {hour:?}"))
}

/// With every standard deviation zero, every sample and sigma point is the forecast day:
/// each method's mean is the deterministic P2P result of `market::run_day` (the f64
/// reference, no engine), hour by hour, with zero spread.
#[test]
fn zero_variance_study_is_the_deterministic_day() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let mut cfg = UncertaintyConfig::default();
    for v in [
        &mut cfg.wind,
        &mut cfg.irradiance,
        &mut cfg.tidal,
        &mut cfg.mg_load,
        &mut cfg.sg_load,
    ] {
        v.std_fraction = 0.0;
    }
    let result = run_study(
        &market,
        &cfg,
        &options(Method::ALL.to_vec(), 20, BackendChoice::Cpu),
        None,
    )
    .unwrap();
    let day = market::run_day(&market, false).unwrap();
    assert_eq!(
        result.rows.len(),
        Method::ALL.len() * QUANTITIES.len() * (HOURS + 1)
    );
    for m in Method::ALL {
        for (h, hr) in day.hours.iter().enumerate() {
            let hour = Some(h as u32);
            let ex = row(&result.rows, m.as_str(), "exchange_mw", hour);
            let price = row(&result.rows, m.as_str(), "price", hour);
            assert!(
                (ex.mean - hr.p2p.exchange_mw).abs() <= 1e-9 * hr.p2p.exchange_mw.abs().max(1.0),
                "{m} hour {h}: {} vs {}",
                ex.mean,
                hr.p2p.exchange_mw
            );
            assert!(
                (price.mean - hr.p2p.price).abs() <= 1e-9 * hr.p2p.price.abs().max(1.0),
                "{m} hour {h}: {} vs {}",
                price.mean,
                hr.p2p.price
            );
            assert!(
                ex.std.unwrap_or(0.0).abs() <= 1e-9,
                "{m} hour {h}: {:?}",
                ex.std
            );
        }
    }
}

/// The same seed gives the same statistics; the sampling methods really spread.
#[test]
fn study_is_reproducible_and_spreads() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let cfg = narrow_load_table();
    let opts = options(vec![Method::Mc, Method::Lhs], 40, BackendChoice::Cpu);
    let a = run_study(&market, &cfg, &opts, None).unwrap();
    let b = run_study(&market, &cfg, &opts, None).unwrap();
    assert_eq!(a.rows, b.rows);
    let day = row(&a.rows, "mc", "exchange_mw", None);
    assert!(day.std.unwrap() > 1.0, "{day:?}");
    assert_eq!(day.runs, 40);
    let (lo, hi) = day.ci95.unwrap();
    assert!(lo < day.mean && day.mean < hi);
}

/// Replications of the study's MC intervals on the market itself (issue 7, item 6): R =
/// 300 MC studies of N = 100 samples (seeds 1..=300) against a 100 000-sample MC (seed
/// 0), whose own interval is about 30 times narrower and is taken as the truth.
/// - The 95 % interval of each quantity's daily mean must hold the truth in 90-99 % of the
///   replications (binomial sd at R = 300: 1.3 %). Measured: 92.7 % (price) to 96.7 %
///   (PV).
/// - Pooled over the 24 hours and the quantities, the hourly intervals that have a width
///   must too (measured 92.4 % over 48 802 intervals: below 95 %, as the hours' outputs
///   jump between a few values and are far from normal at N = 100). An hour whose output
///   is constant but in rare samples (the price between two marginal units at night, the
///   tidal power near cut-in) often has all N = 100 samples equal: its interval has zero
///   width and misses the truth whenever the rare samples move the true mean. Those are
///   counted apart and printed, not bounded (measured: 8 798 of them, covering 78 %); so
///   is the worst single hour (down to 1 %). A normal-theory interval cannot see what the
///   samples never showed; only a larger N can.
/// - The Wilson intervals of P(price > x), pooled over the hours and thresholds, 90-99 %
///   (measured 97.0 %).
///
/// Statistical and about 25 s, so apart from the quick suite (CI runs it):
/// `cargo test --release --test integration -- --ignored uncertainty_study::`.
#[test]
#[ignore]
fn mc_intervals_cover_the_market_means() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let mut cfg = narrow_load_table();
    let mut prepared = PreparedStudy::new(&market, &cfg).unwrap();
    let truth_opts = options(vec![Method::Mc], 100_000, BackendChoice::Cpu);
    cfg.seed = 0;
    let truth = run_prepared(&mut prepared, &market, &cfg, &truth_opts, None).unwrap();
    let quantities: Vec<&str> = QUANTITIES
        .into_iter()
        .filter(|q| *q != "clearing_error_mw")
        .collect();
    let (reps, n) = (300u64, 100u64);
    let opts = options(vec![Method::Mc], n, BackendChoice::Cpu);
    let mut day_covered = vec![0u64; quantities.len()];
    // Per (quantity, hour): replications whose interval held the truth. Pooled: those of
    // zero width (all N samples equal) apart from the rest.
    let mut hour_covered = vec![[0u64; HOURS]; quantities.len()];
    let (mut degenerate, mut degenerate_covered) = (0u64, 0u64);
    let (mut spread, mut spread_covered) = (0u64, 0u64);
    let (mut tail_covered, mut tail_total) = (0u64, 0u64);
    for rep in 1..=reps {
        cfg.seed = rep;
        let r = run_prepared(&mut prepared, &market, &cfg, &opts, None).unwrap();
        for (qi, q) in quantities.iter().enumerate() {
            let t = row(&truth.rows, "mc", q, None).mean;
            let (lo, hi) = row(&r.rows, "mc", q, None).ci95.unwrap();
            day_covered[qi] += u64::from(lo <= t && t <= hi);
            for (h, covered_at) in hour_covered[qi].iter_mut().enumerate() {
                let hour = Some(h as u32);
                let t = row(&truth.rows, "mc", q, hour).mean;
                let (lo, hi) = row(&r.rows, "mc", q, hour).ci95.unwrap();
                let covered = u64::from(lo <= t && t <= hi);
                if lo == hi {
                    degenerate += 1;
                    degenerate_covered += covered;
                } else {
                    spread += 1;
                    spread_covered += covered;
                }
                *covered_at += covered;
            }
        }
        for tail in r.tails.iter().filter(|t| t.hour.is_some()) {
            let truth_tail = truth
                .tails
                .iter()
                .find(|x| x.hour == tail.hour && x.threshold == tail.threshold)
                .expect("the same thresholds");
            let p = truth_tail.probability;
            tail_total += 1;
            tail_covered += u64::from(tail.ci95.0 <= p && p <= tail.ci95.1);
        }
    }
    let cov = |c: u64, of: u64| c as f64 / of as f64;
    for (qi, q) in quantities.iter().enumerate() {
        let day = cov(day_covered[qi], reps);
        let worst = (0..HOURS)
            .min_by_key(|&h| hour_covered[qi][h])
            .expect("hours");
        eprintln!(
            "{q}: daily mean coverage {day:.3}; worst hour {worst}: {:.3}",
            cov(hour_covered[qi][worst], reps)
        );
        assert!((0.90..=0.99).contains(&day), "{q}: daily coverage {day}");
    }
    let hourly = cov(spread_covered, spread);
    let tails = cov(tail_covered, tail_total);
    eprintln!(
        "pooled hourly coverage {hourly:.4} over {spread} intervals; {degenerate} \
         zero-width intervals cover {:.4}; tails {tails:.4} of {tail_total}",
        cov(degenerate_covered, degenerate)
    );
    assert_eq!(
        spread + degenerate,
        reps * (HOURS * quantities.len()) as u64
    );
    assert!(
        (0.90..=0.99).contains(&hourly),
        "pooled hourly coverage {hourly}"
    );
    assert!((0.90..=0.99).contains(&tails), "tail coverage {tails}");
}

/// A sample's outputs are computed in parallel over the runs of a chunk (the exact
/// clearing of its curves dominates the host's work): one thread and three give the same
/// bits, over more than one chunk.
#[test]
fn sample_outputs_do_not_depend_on_the_thread_count() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let cfg = narrow_load_table();
    let n = CHUNK_RUNS as u64 + 300;
    let opts = options(vec![Method::Mc], n, BackendChoice::Cpu);
    let mut prepared = PreparedStudy::new(&market, &cfg).unwrap();
    let mut on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                sample_outputs(&mut prepared, &market, &cfg, &opts, Method::Mc, 0..n, None).unwrap()
            })
    };
    let one = on(1);
    let three = on(3);
    assert_eq!(one.len(), n as usize, "no sample diverges here");
    assert_eq!(one.len(), three.len());
    for ((i, a), (j, b)) in one.iter().zip(&three) {
        assert_eq!(i, j);
        let (a, b): (Vec<u64>, Vec<u64>) = (
            a.iter().map(|v| v.to_bits()).collect(),
            b.iter().map(|v| v.to_bits()).collect(),
        );
        assert_eq!(a, b, "sample {i}");
    }
    // The clearing check ran: its outputs are finite and not all zero.
    let o = output_index("clearing_error_mw", Some(12)).unwrap();
    assert!(one.iter().any(|(_, v)| v[o] != 0.0));
}

/// Tail probabilities and histograms against the samples themselves: the per-sample
/// outputs of the same MC samples (`sample_outputs`, no accumulator), counted here. Every
/// P(price > x) is the empirical frequency, each relative threshold is (1 + r) times the
/// deterministic day's price from `market::run_day` (no engine), and each histogram holds
/// every sample, with under- and overflow equal to the samples outside its range.
#[test]
fn tails_and_histograms_are_the_samples_frequencies() {
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let mut cfg = narrow_load_table();
    cfg.price_thresholds = vec![15.0, 40.0];
    let n = 300;
    let opts = options(vec![Method::Mc], n, BackendChoice::Cpu);
    let mut prepared = PreparedStudy::new(&market, &cfg).unwrap();
    let result = run_prepared(&mut prepared, &market, &cfg, &opts, None).unwrap();
    let samples =
        sample_outputs(&mut prepared, &market, &cfg, &opts, Method::Mc, 0..n, None).unwrap();
    assert_eq!(samples.len(), n as usize, "no sample diverges here");
    let day = market::run_day(&market, false).unwrap();
    let thresholds = TAIL_RELATIVE.len() + cfg.price_thresholds.len();
    assert_eq!(result.tails.len(), (HOURS + 1) * thresholds);
    let mut strictly_between = 0;
    for t in &result.tails {
        let o = output_index("price", t.hour).unwrap();
        let above = samples.iter().filter(|(_, v)| v[o] > t.threshold).count();
        assert_eq!(t.runs, n);
        assert_eq!(t.probability, above as f64 / n as f64, "{t:?}");
        assert!(
            t.ci95.0 <= t.probability && t.probability <= t.ci95.1,
            "{t:?}"
        );
        strictly_between += usize::from(0 < above && above < n as usize);
        match (t.relative, t.hour) {
            (Some(r), Some(h)) => {
                let p = day.hours[h as usize].p2p.price;
                assert!(
                    (t.threshold - (1.0 + r) * p).abs() <= 1e-9 * p.abs().max(1.0),
                    "{t:?} vs forecast price {p}"
                );
            }
            (Some(r), None) => {
                let p = day.hours.iter().map(|h| h.p2p.price).sum::<f64>() / HOURS as f64;
                assert!((t.threshold - (1.0 + r) * p).abs() <= 1e-9 * p.abs().max(1.0));
            }
            (None, _) => assert!(cfg.price_thresholds.contains(&t.threshold)),
        }
    }
    assert!(strictly_between > 10, "the thresholds split the samples");
    // Peak and night hours: the largest and smallest forecast system load.
    let [peak, night] = result.histogram_hours;
    assert!(market.system_load_mw[peak as usize] > market.system_load_mw[night as usize]);
    assert_eq!(result.histograms.len(), HISTOGRAM_QUANTITIES.len() * 3);
    for h in &result.histograms {
        let o = output_index(h.quantity, h.hour).unwrap();
        assert_eq!(
            h.counts.iter().sum::<u64>(),
            n,
            "{} {:?}",
            h.quantity,
            h.hour
        );
        let below = samples.iter().filter(|(_, v)| v[o] < h.lo).count() as u64;
        let above = samples.iter().filter(|(_, v)| v[o] > h.hi).count() as u64;
        assert_eq!((h.counts[0], h.counts[h.counts.len() - 1]), (below, above));
        let min = samples
            .iter()
            .map(|(_, v)| v[o])
            .fold(f64::INFINITY, f64::min);
        assert_eq!(h.min, min);
        // The sample mean from the samples is the study's mean.
        let mean = samples.iter().map(|(_, v)| v[o]).sum::<f64>() / n as f64;
        let r = row(&result.rows, "mc", h.quantity, h.hour);
        assert!((r.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0));
    }
    // A study prepared for one system-load spread refuses another.
    let mut other = cfg.clone();
    other.sg_load.std_fraction = 0.02;
    let e = run_prepared(&mut prepared, &market, &other, &opts, None).unwrap_err();
    assert!(
        e.to_string().contains("uncertainty.sg_load.std_fraction"),
        "{e}"
    );
}

fn gpu() -> Option<GpuContext> {
    match GpuContext::new(None) {
        Ok(ctx) if ctx.supports_f64() => Some(ctx),
        other => {
            let why = match other {
                Ok(ctx) => format!("adapter {} has no SHADER_F64", ctx.info().name),
                Err(e) => format!("no GPU adapter ({e})"),
            };
            if std::env::var("P2PMARKET_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("GPU required (P2PMARKET_REQUIRE_GPU=1) but {why}");
            }
            eprintln!("\n*** SKIPPED: {why}; GPU study NOT tested ***\n");
            None
        }
    }
}

/// Every method on the f64 kernel gives the CPU's statistics (to 1e-9 relative: other
/// GPUs than lavapipe may contract a*b+c into fma), smart-grid load table included.
#[test]
fn gpu_f64_study_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let market = Market::from_scenario(&Scenario::default()).unwrap();
    let cfg = narrow_load_table();
    let methods = Method::ALL.to_vec();
    let cpu = run_study(
        &market,
        &cfg,
        &options(methods.clone(), 30, BackendChoice::Cpu),
        None,
    )
    .unwrap();
    let gpu = run_study(
        &market,
        &cfg,
        &options(methods, 30, BackendChoice::Gpu),
        Some(&ctx),
    )
    .unwrap();
    assert_eq!(cpu.rows.len(), gpu.rows.len());
    for (c, g) in cpu.rows.iter().zip(&gpu.rows) {
        let tol = |x: f64| 1e-9 * x.abs().max(1.0);
        assert!((c.mean - g.mean).abs() <= tol(c.mean), "{c:?}\n{g:?}");
        if let (Some(a), Some(b)) = (c.std, g.std) {
            assert!((a - b).abs() <= tol(a).max(1e-7), "{c:?}\n{g:?}");
        }
    }
    assert!(gpu.methods.iter().all(|m| m.adapter == ctx.info().name));
}

/// The f32 kernel, with the stop tolerances f32 can meet (`experiments/gpu_f32.toml`'s),
/// gives the f64 CPU's statistics at those tolerances within 1e-4 relative in every mean
/// and 1e-3 in every std (floors of one unit; `clearing_error_mw`, which is f32's own
/// rounding, left out; the paper form's bounds times the gain of its weights), for every
/// method, from a common start. Measured at 200 samples: 4.2e-5 in means and 1.5e-4 in
/// stds.
#[test]
fn gpu_f32_study_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut market = Market::from_scenario(&Scenario::default()).unwrap();
    market.rci.price_tol = 1e-3;
    market.rci.dual_tol = 1e-3;
    market.rci.power_tol = 1e-2;
    market.rci.balance_tol = 1e-2;
    // The start the f32 kernel is characterized for (README, Known limitations), and a
    // cap lavapipe's loop limit admits: from the own-marginal start a few f32 samples
    // cycle to the cap.
    market.rci.start_price = StartPrice::Common;
    market.rci.max_iterations = 400;
    let cfg = narrow_load_table();
    let methods = Method::ALL.to_vec();
    let cpu = run_study(
        &market,
        &cfg,
        &options(methods.clone(), 200, BackendChoice::Cpu),
        None,
    )
    .unwrap();
    let mut opts = options(methods, 200, BackendChoice::Gpu);
    opts.precision = Precision::F32;
    let gpu = run_study(&market, &cfg, &opts, Some(&ctx)).unwrap();
    assert_eq!(cpu.rows.len(), gpu.rows.len());
    // The paper's weights amplify each run's difference by sum |w_i| = |W0| + (1 - W0)
    // (79 at W0 = -39); Julier's and Van der Merwe's here, and the samples', are
    // non-negative and sum to 1.
    let w0 = cfg.paper_w0(120);
    let paper_gain = w0.abs() + (1.0 - w0);
    let (mut worst_mean, mut worst_std) = (0.0f64, 0.0f64);
    for (c, g) in cpu.rows.iter().zip(&gpu.rows) {
        assert_eq!(
            (c.method, c.quantity, c.hour),
            (g.method, g.quantity, g.hour)
        );
        if c.quantity == "clearing_error_mw" {
            continue;
        }
        let gain = if c.method == "ut_paper" {
            paper_gain
        } else {
            1.0
        };
        let d = (c.mean - g.mean).abs() / c.mean.abs().max(1.0) / gain;
        worst_mean = worst_mean.max(d);
        assert!(d <= 1e-4, "mean {d:e}\n{c:?}\n{g:?}");
        if let (Some(a), Some(b)) = (c.std, g.std) {
            let d = (a - b).abs() / a.max(1.0) / gain;
            worst_std = worst_std.max(d);
            assert!(d <= 1e-3, "std {d:e}\n{c:?}\n{g:?}");
        }
    }
    eprintln!(
        "f32 study vs the f64 CPU: largest relative difference {worst_mean:e} in means, {worst_std:e} in stds"
    );
    let unconverged: u64 = gpu.methods.iter().map(|m| m.unconverged_hours).sum();
    assert!(unconverged <= 3, "{unconverged} unconverged f32 hours");
}

/// The command writes its files; `statistics.parquet` has the documented columns and one
/// row per method x quantity x hour and day.
#[test]
fn command_writes_the_study() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let status = bin()
        .args([
            "uncertainty",
            "--method",
            "all",
            "--samples",
            "24",
            "--backend",
            "cpu",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for f in [
        "statistics.parquet",
        "tails.parquet",
        "histograms.parquet",
        "study.json",
        "report.md",
        "scenario.toml",
        "bands_price.png",
        "deterministic_vs_stochastic.svg",
        "total_cost.png",
        "histograms.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("The UT cannot give these"), "{report}");
    // Three sampling methods x 25 (hours and day) x the three relative thresholds.
    let tails = read_parquet(&out.join("tails.parquet"));
    assert_eq!(tails.num_rows(), 3 * (HOURS + 1) * 3);
    let histograms = read_parquet(&out.join("histograms.parquet"));
    let count = histograms
        .column_by_name("count")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    // Every histogram (3 methods x 3 quantities x (2 hours + day)) counts the 24 samples.
    assert_eq!(count.values().iter().sum::<i64>(), 3 * 3 * 3 * 24);
    let t = read_parquet(&out.join("statistics.parquet"));
    assert_eq!(
        t.num_rows(),
        Method::ALL.len() * QUANTITIES.len() * (HOURS + 1)
    );
    let method = t
        .column_by_name("method")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let hour = t
        .column_by_name("hour")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let q05 = t
        .column_by_name("q05")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    for i in 0..t.num_rows() {
        // Quantiles exist for the sampling methods only.
        assert_eq!(
            q05.is_null(i),
            method.value(i).starts_with("ut_"),
            "row {i}"
        );
    }
    assert_eq!(hour.null_count(), Method::ALL.len() * QUANTITIES.len());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["samples"], 24);
    assert!(json["load_table"]["levels"].as_u64().unwrap() > 0);
}

/// `--method ut,mc` runs exactly those methods (QMC's cap does not apply).
#[test]
fn command_takes_a_method_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let cfg = dir.path().join("narrow.toml");
    std::fs::write(
        &cfg,
        "[uncertainty.sg_load]\nstd_fraction = 0.01\nar1 = 0.9\n",
    )
    .unwrap();
    let status = bin()
        .args(["uncertainty", "--method", "ut,mc"])
        .args(["--backend", "cpu", "--config"])
        .arg(&cfg)
        .arg("--samples")
        .arg("30")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Progress on stderr (issue 12, item 4): the table, then each method as it starts.
    let stderr = String::from_utf8_lossy(&status.stderr);
    for n in [
        "uncertainty: building the load table",
        "uncertainty: ut_paper, 241 runs",
        "uncertainty: mc, 30 runs",
    ] {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
    let t = read_parquet(&out.join("statistics.parquet"));
    assert_eq!(t.num_rows(), 4 * QUANTITIES.len() * (HOURS + 1));
    let method = t
        .column_by_name("method")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let names: std::collections::BTreeSet<&str> =
        (0..t.num_rows()).map(|i| method.value(i)).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["mc", "ut_julier", "ut_merwe", "ut_paper"]
    );
}

/// Bad input: exit code 2, the field named, nothing written.
#[test]
fn bad_input_names_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let run = |args: &[&str]| {
        let o = bin()
            .arg("uncertainty")
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--samples", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--samples"), "{err}");
    // Scientific notation is read as the count it writes, then checked like any other.
    let (code, err) = run(&["--samples", "1e10"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--samples") && err.contains("10000000000"),
        "{err}"
    );
    let (code, err) = run(&["--samples", "2.5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--samples") && err.contains("2.5") && err.contains("whole number"),
        "{err}"
    );
    let (code, err) = run(&["--method", "qmc", "--samples", "70000"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--samples") && err.contains("65536"), "{err}");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[uncertainty.wind]\nstd_fraction = -0.1\nar1 = 0.5\n").unwrap();
    let (code, err) = run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("uncertainty.wind.std_fraction"), "{err}");
    // Attacks are not part of the study: refused, not silently dropped.
    let attacked = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/paper_fdia_undefended.toml");
    let (code, err) = run(&["--config", attacked.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`attack`"), "{err}");
    assert!(!out.exists());
}

/// `uncertainty --backend cpu --config CFG ARGS --out OUT` outside any job array: (exit
/// code, stdout and stderr).
fn study_cli(cfg: &Path, args: &[&str], out: &Path) -> (Option<i32>, String) {
    let o = bin()
        .args(["uncertainty", "--backend", "cpu", "--config"])
        .arg(cfg)
        .args(args)
        .arg("--out")
        .arg(out)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// A job's first task that fails leaves nothing behind, so that the corrected job starts
/// afresh: refused beside a user's file (no `shards/`, no lock), or failing on its scenario
/// after claiming a new directory (no `uncertainty.json`, which would refuse the corrected
/// tasks as another study's, and no directory).
#[test]
fn a_failed_first_task_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/matpower/case39.m");
    // case39's reference day serves load scales up to about 1.10: the default spread's
    // table (0.88..=1.12) cannot be built; 0.02's (0.92..=1.08) can.
    let scenario = |name: &str, std: f64| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[grid]\ncase_file = {:?}\n[uncertainty.sg_load]\nstd_fraction = {std}\n\
                 ar1 = 0.9\n",
                case.to_str().unwrap()
            ),
        )
        .unwrap();
        path
    };
    let (served, unserved) = (scenario("ok.toml", 0.02), scenario("bad.toml", 0.03));
    let task = |cfg: &Path, out: &Path| {
        let args = ["--method", "mc", "--samples", "20", "--shard", "0/2"];
        study_cli(cfg, &args, out)
    };
    let entries = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let (code, text) = task(&served, &mine);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not empty (notes.txt)"), "{text}");
    assert_eq!(entries(&mine), ["notes.txt"]);

    let job = dir.path().join("job");
    let (code, text) = task(&unserved, &job);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("uncertainty.sg_load.std_fraction"), "{text}");
    assert!(!job.exists(), "{:?}", entries(&job));
    let (code, text) = task(&served, &job);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(entries(&job), ["samples", "shards", "uncertainty.json"]);
}

/// Issue 11: a study run as shards of a job array (two of them at once into one
/// directory), with a task killed midway and rerun, seals into the same statistics, tails
/// and histograms as one process's run, byte for byte. An incomplete job, another study's
/// task and a second process on a running shard are refused, writing nothing.
#[test]
fn sharded_study_seals_to_the_unsharded_bytes() {
    use p2pmarket::uncertainty::shard::{PART_SAMPLES, assign, study_parts};
    let dir = tempfile::tempdir().unwrap();
    // No system-load spread: no load table to build in each of the processes.
    let cfg = dir.path().join("study.toml");
    std::fs::write(
        &cfg,
        "[uncertainty.sg_load]\nstd_fraction = 0.0\nar1 = 0.9\n",
    )
    .unwrap();
    let samples = PART_SAMPLES + 104;
    let study_of = |n: u64, out: &Path, extra: &[&str]| {
        let n = n.to_string();
        let mut args = vec!["--method", "ut,mc,lhs", "--samples", &n];
        args.extend(extra);
        study_cli(&cfg, &args, out)
    };
    let study = |out: &Path, extra: &[&str]| study_of(samples, out, extra);
    let finalize = |out: &Path| {
        let o = bin().arg("finalize").arg(out).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let whole = dir.path().join("whole");
    let (code, text) = study(&whole, &[]);
    assert_eq!(code, Some(0), "{text}");

    let sharded = dir.path().join("sharded");
    // Shards 0 and 2 at once.
    let spawn = |k: usize| {
        bin()
            .args(["uncertainty", "--method", "ut,mc,lhs", "--backend", "cpu"])
            .arg("--config")
            .arg(&cfg)
            .args([
                "--samples",
                &samples.to_string(),
                "--shard",
                &format!("{k}/3"),
            ])
            .arg("--out")
            .arg(&sharded)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(0), spawn(2));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());

    // Shard 1 missing: finalize names its parts and writes nothing.
    let before = file_bytes(&sharded);
    let (code, text) = finalize(&sharded);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("1/3"), "{text}");
    assert!(
        text.contains("directory to seal (DIR)") && !text.contains("--out"),
        "{text}"
    );
    assert_eq!(
        file_bytes(&sharded),
        before,
        "an incomplete finalize wrote something"
    );

    // A task of another study (other N) is refused and writes nothing.
    let (code, text) = study_of(50, &sharded, &["--shard", "1/3"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("uncertainty.json"), "{text}");
    assert_eq!(
        file_bytes(&sharded),
        before,
        "a foreign task wrote something"
    );

    // Shard 1 runs, then is "killed": its manifest and one part gone, a temporary file
    // left. While a process holds shard 1, a second one is refused.
    let (code, text) = study(&sharded, &["--shard", "1/3"]);
    assert_eq!(code, Some(0), "{text}");
    let methods = [
        Method::UtPaper,
        Method::UtJulier,
        Method::UtMerwe,
        Method::Mc,
        Method::Lhs,
    ];
    let parts = study_parts(&methods, samples);
    let shard_of = assign(&parts, 3);
    let ones: Vec<_> = parts
        .iter()
        .zip(&shard_of)
        .filter(|(_, s)| **s == 1)
        .map(|(p, _)| p.path())
        .collect();
    assert!(!ones.is_empty());
    let victim = sharded.join(&ones[0]);
    std::fs::remove_file(&victim).unwrap();
    std::fs::remove_file(sharded.join("shards/shard-1-of-3.json")).unwrap();
    let tmp = victim
        .parent()
        .unwrap()
        .join(".part-00000.parquet.tmp-somehost-1-0");
    std::fs::write(&tmp, b"half a file").unwrap();
    {
        use p2pmarket::output::lock::{Lock, LockMode};
        let _held = Lock::acquire(
            &sharded.join("shards/.shard-1-of-3.lock"),
            LockMode::Exclusive,
            &mut || {},
        )
        .unwrap();
        let (code, text) = study(&sharded, &["--shard", "1/3"]);
        assert_ne!(code, Some(0), "{text}");
        assert!(text.contains("computing shard 1/3"), "{text}");
    }
    let (code, text) = study(&sharded, &["--shard", "1/3"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("1 parts written, {} already done", ones.len() - 1)),
        "{text}"
    );
    assert!(victim.is_file() && !tmp.exists());

    // Sealed twice (the second replaces the first's files): the same bytes as one process.
    for _ in 0..2 {
        let (code, text) = finalize(&sharded);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("sealed the study from 3 shards"), "{text}");
        for f in ["statistics.parquet", "tails.parquet", "histograms.parquet"] {
            assert_eq!(
                std::fs::read(whole.join(f)).unwrap(),
                std::fs::read(sharded.join(f)).unwrap(),
                "{f} differs from the unsharded study's"
            );
        }
    }
    // The parts are what one process's `--shard 0/1` writes, byte for byte.
    let single = dir.path().join("single");
    let (code, text) = study(&single, &["--shard", "0/1"]);
    assert_eq!(code, Some(0), "{text}");
    for p in &parts {
        assert_eq!(
            std::fs::read(single.join(p.path())).unwrap(),
            std::fs::read(sharded.join(p.path())).unwrap(),
            "{}",
            p.path()
        );
    }
    let rows: usize = parts
        .iter()
        .map(|p| read_parquet(&sharded.join(p.path())).num_rows())
        .sum();
    assert_eq!(rows as u64, 1 + 3 * 241 + 2 * samples);

    // A part that is not the file its shard listed (here: another method's part of the
    // same size, same schema) is refused, and the sealed outputs stay as they were.
    let lhs = sharded.join("samples/method=lhs/part-00001.parquet");
    std::fs::copy(sharded.join("samples/method=mc/part-00001.parquet"), &lhs).unwrap();
    let before = file_bytes(&sharded);
    let (code, text) = finalize(&sharded);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("method=lhs/part-00001.parquet") && text.contains("sha256"),
        "{text}"
    );
    assert_eq!(
        file_bytes(&sharded),
        before,
        "a refused finalize wrote something"
    );

    // A study in one process into the sealed directory would leave it holding two
    // studies: refused, even with --force, and nothing written.
    for extra in [&[][..], &["--force"][..]] {
        let (code, text) = study_of(20, &sharded, extra);
        assert_eq!(code, Some(2), "{text}");
        assert!(
            text.contains("holds a sharded study (uncertainty.json"),
            "{text}"
        );
        assert_eq!(
            file_bytes(&sharded),
            before,
            "a refused study wrote something"
        );
    }
}

/// A study's `--out` may be a previous study's output, but not a run's: the run's files
/// are not the study's to replace (with --force too: both write `scenario.toml`). A run
/// refuses a study's output in turn.
#[test]
fn a_study_does_not_replace_a_run_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[output]\nplots = false\n").unwrap();
    let run = |out: &Path| {
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let out = dir.path().join("out");
    let o = run(&out);
    assert!(o.status.success(), "{o:?}");
    let run_files = file_bytes(&out);
    let args = ["--method", "mc", "--samples", "20"];
    let (code, text) = study_cli(&cfg, &args, &out);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("not a previous output of `p2pmarket uncertainty`")
            && text.contains("it is an output of `p2pmarket run`"),
        "{text}"
    );
    assert_eq!(
        file_bytes(&out),
        run_files,
        "a refused study wrote something"
    );
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    let (code, text) = study_cli(&cfg, &forced, &out);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("it holds scenario.toml that this command did not write"),
        "{text}"
    );
    assert_eq!(
        file_bytes(&out),
        run_files,
        "a refused study wrote something"
    );
    // A study replaces its own output; a run refuses it.
    let study = dir.path().join("study");
    for _ in 0..2 {
        let (code, text) = study_cli(&cfg, &args, &study);
        assert_eq!(code, Some(0), "{text}");
    }
    let study_files = file_bytes(&study);
    let o = run(&study);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("it is an output of `p2pmarket uncertainty`"),
        "{stderr}"
    );
    assert_eq!(
        file_bytes(&study),
        study_files,
        "a refused run wrote something"
    );
}
