//! Throughput of the batch engine: runs per second per backend and batch size.
//!
//! The batches are seeded perturbations of the base market (load scale in {0.95, 1, 1.05},
//! renewables 0.5..1.5, microgrid load 0.8..1.2) with the market's RCI settings but stop
//! tolerances f32 can meet and a common start ([`bench_rci`]), so every backend does the
//! same work: with the default 1e-6 MW tolerances the f32 kernel would run every hour to
//! the iteration cap, and agents that start apart flip f32's converged flags more often.
//! Each backend first runs a one-run batch untimed (shader compilation, thread start-up).
//! Sizes are capped per backend: once a backend has been timed, a size whose predicted
//! time exceeds the time cap (default [`DEFAULT_TIME_CAP_S`]) is skipped, and so is a size
//! whose inputs would exceed [`MEMORY_CAP_BYTES`] on the host. The outputs are streamed
//! chunk by chunk and reduced to the work per run, as a sweep writes and drops them, so
//! they set no cap.

use std::fmt;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::batch::{Batch, ChunkOutputs, CurveCache, HourRecord, RunSpec, RunSummary};
use crate::engine::cpu::{cpu_runs_per_chunk, run_cpu, run_cpu_streaming};
use crate::engine::gpu::{DEFAULT_RUNS_PER_CHUNK, GpuContext, Precision};
use crate::error::Result;
use crate::market::Market;
use crate::rci::{F32_POWER_TOL, F32_PRICE_TOL, RciSettings, StartPrice};

/// Default largest predicted time of one timed batch, s (`p2pmarket bench --max-seconds`).
pub const DEFAULT_TIME_CAP_S: f64 = 20.0;
/// Largest host memory for one batch's inputs, bytes (the outputs are streamed, two
/// chunks at a time).
pub const MEMORY_CAP_BYTES: usize = 1 << 30;
/// Seed of the benchmark's perturbations.
pub const BENCH_SEED: u64 = 0x5eed_be9c;

/// A backend to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchBackend {
    /// The rayon CPU backend (f64).
    Cpu,
    /// The GPU kernel in a precision, every (run, hour) record read back.
    Gpu(Precision),
    /// The GPU kernel in a precision, only the runs' summaries read back, reduced on the
    /// device ([`GpuContext::run_summaries`]).
    GpuSummaries(Precision),
}

impl fmt::Display for BenchBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchBackend::Cpu => write!(f, "cpu (f64)"),
            BenchBackend::Gpu(Precision::F32) => write!(f, "gpu f32"),
            BenchBackend::Gpu(Precision::F64) => write!(f, "gpu f64"),
            BenchBackend::GpuSummaries(p) => write!(f, "gpu {}, summaries", p.as_str()),
        }
    }
}

/// One timed (backend, size), or why it was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// The backend.
    pub backend: BenchBackend,
    /// The device's name.
    pub adapter: String,
    /// Runs in the batch.
    pub runs: usize,
    /// Wall time of the batch (upload, compute, readback), s; 0 when skipped.
    pub seconds: f64,
    /// Runs per second; 0 when skipped.
    pub runs_per_s: f64,
    /// Work per run: the sum over hours of the RCI iterations, mean over runs.
    pub hour_iterations_per_run: f64,
    /// How the iterations spread over the (run, hour) items (for summaries, only their
    /// count, sum and maximum: the per-hour counts stay on the device).
    pub divergence: Divergence,
    /// Bytes the GPU mapped back to the host per run (`None` for the CPU).
    pub bytes_read_back_per_run: Option<f64>,
    /// Why the size was not timed.
    pub skipped: Option<String>,
}

/// Lanes that execute in lockstep on the GPUs the engine targets (an NVIDIA warp).
pub const LOCKSTEP_LANES: usize = 32;

/// How the RCI iterations spread over a batch's (run, hour) items, in the kernel's order
/// (item = run x hours + hour, one per invocation). Lanes that execute in lockstep wait
/// for their slowest: a group of [`LOCKSTEP_LANES`] consecutive items costs its maximum
/// times its size, so `lockstep_efficiency` is the share of that issued work that is
/// useful, the bound the iteration counts alone put on the kernel's SIMD use.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Divergence {
    /// (run, hour) items counted.
    pub hours: u64,
    /// Their RCI iterations.
    pub iterations: u64,
    /// The most iterations of one item.
    pub max: u32,
    /// Sum over the groups of [`LOCKSTEP_LANES`] consecutive items of their maximum times
    /// their size.
    pub lockstep_iterations: u64,
}

impl Divergence {
    /// Adds a chunk's records (the whole chunk: groups do not span chunks, as a kernel
    /// dispatch's items start again at each chunk).
    pub fn add(&mut self, records: &[HourRecord]) {
        for group in records.chunks(LOCKSTEP_LANES) {
            let max = group.iter().map(|r| r.iterations).max().unwrap_or(0);
            self.hours += group.len() as u64;
            self.iterations += group.iter().map(|r| u64::from(r.iterations)).sum::<u64>();
            self.max = self.max.max(max);
            self.lockstep_iterations += u64::from(max) * group.len() as u64;
        }
    }

    /// Adds runs known only by their summaries (`hours` each): their items, iterations and
    /// largest count, but no lockstep figure, which needs each hour's count.
    pub fn add_summaries(&mut self, summaries: &[RunSummary], hours: usize) {
        for s in summaries {
            self.hours += hours as u64;
            self.iterations += u64::from(s.iterations);
            self.max = self.max.max(s.iterations_max);
        }
    }

    /// Mean iterations per (run, hour).
    pub fn mean(&self) -> f64 {
        self.iterations as f64 / self.hours.max(1) as f64
    }

    /// Useful over issued iterations in lockstep groups, in (0, 1]; 1 with no items.
    pub fn lockstep_efficiency(&self) -> f64 {
        if self.lockstep_iterations == 0 {
            1.0
        } else {
            self.iterations as f64 / self.lockstep_iterations as f64
        }
    }
}

/// The table of a benchmark.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BenchReport {
    /// One row per (backend, size), in the order asked.
    pub rows: Vec<BenchRow>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| backend | adapter | runs | time (s) | runs/s | hour-iterations/run | \
             iterations/hour, mean / max | {LOCKSTEP_LANES}-lane lockstep efficiency | \
             bytes read back/run | note |"
        )?;
        writeln!(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")?;
        for r in &self.rows {
            match &r.skipped {
                Some(why) => writeln!(
                    f,
                    "| {} | {} | {} | - | - | - | - | - | - | skipped: {} |",
                    r.backend, r.adapter, r.runs, why
                )?,
                None => {
                    // Summaries leave the per-hour counts on the device.
                    let lockstep = if r.divergence.lockstep_iterations == 0 {
                        "-".to_string()
                    } else {
                        format!("{:.3}", r.divergence.lockstep_efficiency())
                    };
                    let bytes = r
                        .bytes_read_back_per_run
                        .map_or_else(|| "-".to_string(), |b| format!("{b:.0}"));
                    writeln!(
                        f,
                        "| {} | {} | {} | {:.3} | {:.1} | {:.1} | {:.2} / {} | {lockstep} | \
                         {bytes} | |",
                        r.backend,
                        r.adapter,
                        r.runs,
                        r.seconds,
                        r.runs_per_s,
                        r.hour_iterations_per_run,
                        r.divergence.mean(),
                        r.divergence.max,
                    )?
                }
            }
        }
        Ok(())
    }
}

/// The market's RCI settings with the stop tolerances f32 arithmetic can meet
/// ([`F32_PRICE_TOL`] for price and duals, [`F32_POWER_TOL`] for power and balance), from a
/// common start: the workload the README's throughput figures were measured on, and the
/// start whose f32 bounds are known.
pub fn bench_rci(market: &Market) -> RciSettings {
    RciSettings {
        start_price: StartPrice::Common,
        price_tol: F32_PRICE_TOL,
        dual_tol: F32_PRICE_TOL,
        power_tol: F32_POWER_TOL,
        balance_tol: F32_POWER_TOL,
        ..market.rci.clone()
    }
}

/// The benchmark's run specs: `n` seeded perturbations with [`bench_rci`] settings.
pub fn bench_runs(market: &Market, n: usize) -> Vec<RunSpec> {
    let rci = bench_rci(market);
    let mut rng = ChaCha8Rng::seed_from_u64(BENCH_SEED);
    (0..n)
        .map(|_| RunSpec {
            load_scale: [0.95, 1.0, 1.05][rng.random_range(0..3usize)],
            renewable_scale: rng.random_range(0.5..1.5),
            mg_load_scale: rng.random_range(0.8..1.2),
            rci: rci.clone(),
            ..RunSpec::default()
        })
        .collect()
}

/// What [`run_bench`] is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchProgress<'a> {
    /// Timing `runs` runs on `backend` has begun.
    Timing {
        /// The backend.
        backend: BenchBackend,
        /// The batch size.
        runs: usize,
    },
    /// Runs of the batch being timed done so far (after each streamed chunk).
    Runs(usize),
    /// A size was timed or skipped.
    Done(&'a BenchRow),
}

/// Times every backend on batches of every size (see the module doc for the caps), telling
/// `progress` what it does. `adapter` picks a GPU by name (else `WGPU_ADAPTER_NAME`, else
/// the best one), which runs workgroups of `workgroup_size` invocations
/// ([`GpuContext::with_workgroup_size`]).
pub fn run_bench(
    market: &Market,
    sizes: &[usize],
    backends: &[BenchBackend],
    adapter: Option<&str>,
    workgroup_size: u32,
    time_cap_s: f64,
    progress: &mut dyn FnMut(BenchProgress<'_>),
) -> Result<BenchReport> {
    let needs_gpu = backends
        .iter()
        .any(|b| matches!(b, BenchBackend::Gpu(_) | BenchBackend::GpuSummaries(_)));
    let gpu = needs_gpu
        .then(|| GpuContext::new(adapter).and_then(|c| c.with_workgroup_size(workgroup_size)));
    let mut report = BenchReport::default();
    // The smart grid's curves of each load scale, built once for every batch.
    let mut curves = CurveCache::default();
    for &backend in backends {
        // Seconds per run of the last timed size, for the time cap.
        let mut per_run_s: Option<f64> = None;
        let warm_up = Batch::from_market_cached(market, &bench_runs(market, 1), &mut curves)?;
        match (backend, &gpu) {
            (BenchBackend::Gpu(p), Some(Ok(ctx))) if p == Precision::F32 || ctx.supports_f64() => {
                ctx.run(&warm_up, p)?;
            }
            (BenchBackend::GpuSummaries(p), Some(Ok(ctx)))
                if p == Precision::F32 || ctx.supports_f64() =>
            {
                ctx.run_summaries(&warm_up, p, DEFAULT_RUNS_PER_CHUNK, |_| Ok(()))?;
            }
            (BenchBackend::Cpu, _) => {
                run_cpu(&warm_up)?;
            }
            _ => {}
        }
        for &runs in sizes {
            let mut row = BenchRow {
                backend,
                adapter: String::new(),
                runs,
                seconds: 0.0,
                runs_per_s: 0.0,
                hour_iterations_per_run: 0.0,
                divergence: Divergence::default(),
                bytes_read_back_per_run: None,
                skipped: None,
            };
            let precision = match backend {
                BenchBackend::Gpu(p) | BenchBackend::GpuSummaries(p) => Some(p),
                BenchBackend::Cpu => None,
            };
            let ctx = match (precision, &gpu) {
                (Some(_), Some(Err(e))) => {
                    row.skipped = Some(format!("no GPU ({e})"));
                    progress(BenchProgress::Done(&row));
                    report.rows.push(row);
                    continue;
                }
                (Some(p), Some(Ok(ctx))) => {
                    row.adapter = format!(
                        "{}, workgroups of {}",
                        ctx.info().name,
                        ctx.workgroup_size()
                    );
                    if p == Precision::F64 && !ctx.supports_f64() {
                        row.skipped = Some("adapter has no SHADER_F64".into());
                        progress(BenchProgress::Done(&row));
                        report.rows.push(row);
                        continue;
                    }
                    Some(ctx)
                }
                _ => {
                    row.adapter = format!("rayon ({} threads)", rayon::current_num_threads());
                    None
                }
            };
            // Outputs stream through in chunks; the inputs (the specs and the batch) are
            // what grows with the size.
            let bytes = runs * (size_of::<RunSpec>() + Batch::bytes_per_run());
            if bytes > MEMORY_CAP_BYTES {
                row.skipped = Some(format!("inputs would take {} MiB", bytes >> 20));
                progress(BenchProgress::Done(&row));
                report.rows.push(row);
                continue;
            }
            if let Some(s) = per_run_s
                && s * runs as f64 > time_cap_s
            {
                row.skipped = Some(format!(
                    "predicted {:.0} s > {time_cap_s} s",
                    s * runs as f64
                ));
                progress(BenchProgress::Done(&row));
                report.rows.push(row);
                continue;
            }
            progress(BenchProgress::Timing { backend, runs });
            let batch = Batch::from_market_cached(market, &bench_runs(market, runs), &mut curves)?;
            let start = Instant::now();
            // Only the total work is kept: the records of a chunk are dropped once counted,
            // as a sweep drops them once written.
            let mut divergence = Divergence::default();
            let mut done = 0usize;
            let count = |c: &ChunkOutputs| {
                divergence.add(&c.records);
                divergence.add_summaries(&c.summaries, batch.hours());
                done += c.runs.len();
                progress(BenchProgress::Runs(done));
                Ok(())
            };
            let read_before = ctx.map(GpuContext::bytes_read_back);
            match (backend, ctx) {
                (BenchBackend::Gpu(p), Some(ctx)) => {
                    ctx.run_streaming(&batch, p, DEFAULT_RUNS_PER_CHUNK, count)?
                }
                (BenchBackend::GpuSummaries(p), Some(ctx)) => {
                    ctx.run_summaries(&batch, p, DEFAULT_RUNS_PER_CHUNK, count)?
                }
                _ => run_cpu_streaming(&batch, cpu_runs_per_chunk(), count)?,
            };
            row.seconds = start.elapsed().as_secs_f64();
            if let (Some(ctx), Some(before)) = (ctx, read_before) {
                let bytes = ctx.bytes_read_back() - before;
                row.bytes_read_back_per_run = Some(bytes as f64 / runs.max(1) as f64);
            }
            row.runs_per_s = runs as f64 / row.seconds.max(1e-9);
            row.hour_iterations_per_run = divergence.iterations as f64 / runs.max(1) as f64;
            row.divergence = divergence;
            per_run_s = Some(row.seconds / runs.max(1) as f64);
            progress(BenchProgress::Done(&row));
            report.rows.push(row);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A summaries row has no per-hour counts: its lockstep column says so instead of
    /// printing the 1.0 of an empty count, and every GPU row prints its bytes per run.
    #[test]
    fn summaries_rows_print_no_lockstep_and_their_bytes() {
        let row = |backend, lockstep_iterations, bytes| BenchRow {
            backend,
            adapter: "test".into(),
            runs: 10,
            seconds: 1.0,
            runs_per_s: 10.0,
            hour_iterations_per_run: 93.0,
            divergence: Divergence {
                hours: 240,
                iterations: 930,
                max: 12,
                lockstep_iterations,
            },
            bytes_read_back_per_run: bytes,
            skipped: None,
        };
        let report = BenchReport {
            rows: vec![
                row(BenchBackend::Cpu, 1860, None),
                row(BenchBackend::Gpu(Precision::F32), 1860, Some(1632.0)),
                row(BenchBackend::GpuSummaries(Precision::F32), 0, Some(60.0)),
            ],
        };
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[2].contains("| 0.500 | - |"), "{text}");
        assert!(lines[3].starts_with("| gpu f32 |") && lines[3].contains("| 0.500 | 1632 |"));
        assert!(
            lines[4].starts_with("| gpu f32, summaries |") && lines[4].contains("| - | 60 |"),
            "{text}"
        );
    }

    #[test]
    fn streamed_work_count_matches_the_whole_batch_and_caps_skip() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let mut events = Vec::new();
        let report = run_bench(
            &market,
            &[40],
            &[BenchBackend::Cpu],
            None,
            64,
            1e9,
            &mut |e| {
                events.push(match e {
                    BenchProgress::Timing { runs, .. } => format!("timing {runs}"),
                    BenchProgress::Runs(n) => format!("runs {n}"),
                    BenchProgress::Done(r) => format!("done {}", r.runs),
                })
            },
        )
        .unwrap();
        // Progress: the size begins, its streamed runs reach 40, it ends.
        assert_eq!(events.first().map(String::as_str), Some("timing 40"));
        assert_eq!(events.last().map(String::as_str), Some("done 40"));
        assert!(events.contains(&"runs 40".to_string()), "{events:?}");
        let row = &report.rows[0];
        assert_eq!((row.runs, row.skipped.as_deref()), (40, None));
        let whole = run_cpu(&Batch::from_market(&market, &bench_runs(&market, 40)).unwrap())
            .unwrap()
            .records;
        let per_run = whole.iter().map(|r| r.iterations as f64).sum::<f64>() / 40.0;
        assert!(per_run > 24.0, "{per_run}");
        assert_eq!(row.hour_iterations_per_run, per_run);
        // The divergence statistics, computed here from the whole batch: 40 runs x 24
        // hours are 30 groups of 32 items.
        let d = row.divergence;
        assert_eq!(d.hours, 40 * 24);
        assert_eq!(d.max, whole.iter().map(|r| r.iterations).max().unwrap());
        let issued: u64 = whole
            .chunks(LOCKSTEP_LANES)
            .map(|g| 32 * u64::from(g.iter().map(|r| r.iterations).max().unwrap()))
            .sum();
        assert_eq!(d.lockstep_iterations, issued);
        let eff = d.lockstep_efficiency();
        assert!(eff > 0.0 && eff < 1.0, "{eff}");
        assert!(f64::from(d.max) > d.mean(), "{d:?}");
        assert!(report.to_string().contains(&format!("{:.3}", eff)));
        // A cap below any measurable time skips every size after the first.
        let capped = run_bench(
            &market,
            &[10, 20],
            &[BenchBackend::Cpu],
            None,
            64,
            1e-12,
            &mut |_| {},
        )
        .unwrap();
        assert!(capped.rows[0].skipped.is_none());
        let why = capped.rows[1].skipped.as_deref().unwrap_or_default();
        assert!(why.starts_with("predicted"), "{why}");
    }
}
