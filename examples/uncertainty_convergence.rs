//! How many MC, QMC (scrambled Sobol) and LHS samples reach the UT's error (issue 7):
//!
//! ```text
//! cargo run --release --example uncertainty_convergence -- REFERENCE OUT_DIR \
//!     [--reps R] [--grid N1,N2,...] [--config FILE]
//! ```
//!
//! REFERENCE is the `statistics.parquet` of a large MC study of the same scenario (its
//! `mc` rows are the reference; the committed one is `results/uncertainty/mc1e6/`). For
//! each sampling method and each N of the grid (default 8, 16, ..., 8192), R seeded
//! replications (default 20; seeds 1 000 003 + r, none equal to the scenario's) are run
//! through the library's study on the CPU backend, one load table for all of them. The
//! error of a quantity's mean (or std) is the RMS over the 24 hours and the replications
//! of the difference from the reference (`uncertainty::convergence`); the UT's is the RMS
//! over the hours of its one estimate (a UT std that does not exist, a negative weighted
//! variance, counts as 0). Writes into OUT_DIR:
//! - `convergence.csv`: method, n, reps, quantity, statistic, rms_error, seconds;
//! - `ut_errors.csv`: method, runs, quantity, statistic, rms_error, hours_without_std,
//!   reference_noise (the reference's own standard error, RMS over the hours: std/sqrt(N)
//!   for the mean, std/sqrt(2N) for the std);
//! - `samples_to_ut.csv`: per UT form, quantity and statistic, the N at which each
//!   sampling method's error reaches the UT's (`at_most`: already at the grid's smallest
//!   N, the UT loses; `interpolated`; `extrapolated` with 1/sqrt(N) beyond the grid;
//!   `below_reference_noise`: the UT's error is below twice the reference's noise, so
//!   not resolved, and N is where the method reaches that floor, a lower bound) and
//!   N / (UT runs);
//! - `convergence_mean.{png,svg}`, `convergence_std.{png,svg}`: error against N on
//!   log-log axes with the 1/sqrt(N) line and the UT forms' errors.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use p2pmarket::engine::BackendChoice;
use p2pmarket::engine::gpu::Precision;
use p2pmarket::market::Market;
use p2pmarket::microgrid::HOURS;
use p2pmarket::output::DirSink;
use p2pmarket::output::plots::{Layer, Panel, write_panels};
use p2pmarket::scenario::Scenario;
use p2pmarket::uncertainty::Method;
use p2pmarket::uncertainty::convergence::{rms, samples_to_reach};
use p2pmarket::uncertainty::study::{
    PreparedStudy, StatRow, StudyOptions, StudyResult, run_prepared,
};

/// The quantities compared (the clearing error is a check, not an outcome).
const QUANTITIES: [&str; 8] = [
    "exchange_mw",
    "price",
    "sg_cost",
    "mg_cost",
    "total_cost",
    "wind_mw",
    "pv_mw",
    "tidal_mw",
];
const SAMPLING: [Method; 3] = [Method::Mc, Method::QmcSobol, Method::Lhs];
const UT: [Method; 3] = [Method::UtPaper, Method::UtJulier, Method::UtMerwe];
const STATISTICS: [&str; 2] = ["mean", "std"];

type Error = Box<dyn std::error::Error>;
/// (quantity, hour) -> (mean, std).
type Reference = HashMap<(String, u32), (f64, f64)>;
/// (method, quantity, statistic) -> (N, error) in increasing N.
type Curves<'a> = HashMap<(Method, &'a str, &'a str), Vec<(f64, f64)>>;

struct Args {
    reference: PathBuf,
    out: PathBuf,
    reps: u64,
    grid: Vec<u64>,
    config: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args_os().skip(1);
    let mut positional = Vec::new();
    let (mut reps, mut grid, mut config) = (20u64, (3..=13).map(|k| 1u64 << k).collect(), None);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.into_string().ok())
                .ok_or(format!("{name} needs a value"))
        };
        match a.to_str() {
            Some("--reps") => {
                reps = value("--reps")?
                    .parse()
                    .ok()
                    .filter(|&r| r >= 2)
                    .ok_or("--reps: an integer >= 2")?
            }
            Some("--grid") => {
                grid = value("--grid")?
                    .split(',')
                    .map(|s| s.trim().parse::<u64>().ok().filter(|&n| n >= 2))
                    .collect::<Option<Vec<_>>>()
                    .filter(|g| !g.is_empty() && g.windows(2).all(|w| w[0] < w[1]))
                    .ok_or("--grid: increasing integers >= 2, comma-separated")?
            }
            Some("--config") => config = Some(PathBuf::from(value("--config")?)),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [reference, out] = <[PathBuf; 2]>::try_from(positional).map_err(|_| {
        "usage: uncertainty_convergence REFERENCE OUT_DIR [--reps R] [--grid N1,N2,...] [--config FILE]"
            .to_string()
    })?;
    Ok(Args {
        reference,
        out,
        reps,
        grid,
        config,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// (quantity, hour) -> (mean, std) of the reference's `mc` rows, and its sample count.
fn read_reference(path: &Path) -> Result<(Reference, u64), Error> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()?;
    let mut map = HashMap::new();
    let mut runs = 0;
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("{}: no column {name}", path.display()))
        };
        let method = col("method")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("method")?;
        let quantity = col("quantity")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("quantity")?;
        // Signed since issue 12; the committed reference predates it (uint32 hours, uint64
        // runs), so any integer type is read as int64.
        let int = |name: &str| -> Result<Int64Array, Error> {
            let c = arrow::compute::cast(col(name)?, &DataType::Int64)?;
            Ok(c.as_any().downcast_ref::<Int64Array>().ok_or(name)?.clone())
        };
        let hour = int("hour")?;
        let mean = col("mean")?
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("mean")?;
        let std = col("std")?
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("std")?;
        let count = int("runs")?;
        for i in 0..batch.num_rows() {
            if method.value(i) == "mc" && !hour.is_null(i) && !std.is_null(i) {
                runs = runs.max(u64::try_from(count.value(i))?);
                map.insert(
                    (quantity.value(i).to_string(), u32::try_from(hour.value(i))?),
                    (mean.value(i), std.value(i)),
                );
            }
        }
    }
    if map.len() < QUANTITIES.len() * HOURS {
        return Err(format!("{}: no complete mc rows", path.display()).into());
    }
    Ok((map, runs))
}

/// The reference's own standard error, RMS over the hours, of a quantity's mean
/// (std / sqrt(N)) or std (std / sqrt(2 N), the normal approximation): errors measured
/// against the reference cannot be resolved below about this.
fn reference_noise(
    reference: &HashMap<(String, u32), (f64, f64)>,
    runs: u64,
    quantity: &str,
    statistic: &str,
) -> f64 {
    let factor = if statistic == "mean" { 1.0 } else { 2.0 };
    rms((0..HOURS as u32).filter_map(|h| {
        let &(_, s) = reference.get(&(quantity.to_string(), h))?;
        Some(s / (factor * runs as f64).sqrt())
    }))
}

/// Per (quantity, statistic): the differences from the reference over the hours.
fn differences<'a>(
    result: &'a StudyResult,
    method: Method,
    reference: &'a HashMap<(String, u32), (f64, f64)>,
    quantity: &'a str,
    statistic: &'a str,
) -> impl Iterator<Item = f64> + 'a {
    let row = move |h: u32| -> Option<&StatRow> {
        result
            .rows
            .iter()
            .find(|r| r.method == method.as_str() && r.quantity == quantity && r.hour == Some(h))
    };
    (0..HOURS as u32).filter_map(move |h| {
        let r = row(h)?;
        let &(m, s) = reference.get(&(quantity.to_string(), h))?;
        Some(match statistic {
            "mean" => r.mean - m,
            _ => r.std.unwrap_or(0.0) - s,
        })
    })
}

fn run(args: &Args) -> Result<(), Error> {
    let scenario = match &args.config {
        Some(p) => Scenario::from_file(p)?,
        None => Scenario::default(),
    };
    let market = Market::from_scenario(&scenario)?;
    let (reference, reference_runs) = read_reference(&args.reference)?;
    let noise = |q: &str, s: &str| reference_noise(&reference, reference_runs, q, s);
    std::fs::create_dir_all(&args.out)?;
    let mut cfg = scenario.uncertainty.clone();
    let t = Instant::now();
    let mut prepared = PreparedStudy::new(&market, &cfg)?;
    eprintln!("load table: {:.1} s", t.elapsed().as_secs_f64());
    let options = |methods: Vec<Method>, samples: u64| StudyOptions {
        methods,
        samples,
        backend: BackendChoice::Cpu,
        precision: Precision::F64,
    };
    let ut = run_prepared(&mut prepared, &market, &cfg, &options(UT.to_vec(), 1), None)?;
    let mut ut_csv = String::from(
        "method,runs,quantity,statistic,rms_error,hours_without_std,reference_noise\n",
    );
    // (ut method, quantity, statistic) -> error
    let mut ut_error = HashMap::new();
    for m in UT {
        let runs = ut
            .methods
            .iter()
            .find(|r| r.method == m.as_str())
            .map_or(0, |r| r.runs);
        for q in QUANTITIES {
            let missing = ut
                .rows
                .iter()
                .filter(|r| r.method == m.as_str() && r.quantity == q && r.hour.is_some())
                .filter(|r| r.std.is_none())
                .count();
            for s in STATISTICS {
                let e = rms(differences(&ut, m, &reference, q, s));
                ut_error.insert((m, q, s), (e, runs));
                writeln!(
                    ut_csv,
                    "{m},{runs},{q},{s},{e:e},{missing},{:e}",
                    noise(q, s)
                )?;
            }
        }
    }
    std::fs::write(args.out.join("ut_errors.csv"), ut_csv)?;
    let mut csv = String::from("method,n,reps,quantity,statistic,rms_error,seconds\n");
    // (method, quantity, statistic) -> curve (N, error)
    let mut curves: Curves = HashMap::new();
    for method in SAMPLING {
        for &n in &args.grid {
            let t = Instant::now();
            let mut squares: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
            for r in 0..args.reps {
                cfg.seed = 1_000_003 + r;
                let result = run_prepared(
                    &mut prepared,
                    &market,
                    &cfg,
                    &options(vec![method], n),
                    None,
                )?;
                for q in QUANTITIES {
                    for s in STATISTICS {
                        squares
                            .entry((q, s))
                            .or_default()
                            .extend(differences(&result, method, &reference, q, s));
                    }
                }
            }
            let seconds = t.elapsed().as_secs_f64();
            for q in QUANTITIES {
                for s in STATISTICS {
                    let e = rms(squares[&(q, s)].iter().copied());
                    curves
                        .entry((method, q, s))
                        .or_default()
                        .push((n as f64, e));
                    writeln!(csv, "{method},{n},{},{q},{s},{e:e},{seconds:.2}", args.reps)?;
                }
            }
            eprintln!(
                "{method} N = {n}: {} replications in {seconds:.1} s",
                args.reps
            );
            std::fs::write(args.out.join("convergence.csv"), &csv)?;
        }
    }
    let mut reach_csv =
        String::from("ut_method,quantity,statistic,ut_error,method,samples,kind,ut_runs,ratio\n");
    for m in UT {
        for q in QUANTITIES {
            for s in STATISTICS {
                let (target, runs) = ut_error[&(m, q, s)];
                // Below twice the reference's noise the UT's error is not resolved: the N
                // that reaches that floor is then only a lower bound.
                let floor = 2.0 * noise(q, s);
                let unresolved = target < floor;
                for method in SAMPLING {
                    match samples_to_reach(&curves[&(method, q, s)], target.max(floor)) {
                        Some(r) => writeln!(
                            reach_csv,
                            "{m},{q},{s},{target:e},{method},{:.0},{},{runs},{:.3}",
                            r.samples(),
                            if unresolved {
                                "below_reference_noise"
                            } else {
                                r.kind()
                            },
                            r.samples() / runs as f64
                        )?,
                        None => {
                            writeln!(reach_csv, "{m},{q},{s},{target:e},{method},,exact,{runs},")?
                        }
                    }
                }
            }
        }
    }
    std::fs::write(args.out.join("samples_to_ut.csv"), reach_csv)?;
    let mut sink = DirSink::new(&args.out);
    for s in STATISTICS {
        let panels: Vec<Panel> = QUANTITIES
            .iter()
            .map(|&q| {
                let mut layers = Vec::new();
                let (n0, n1) = (args.grid[0] as f64, args.grid[args.grid.len() - 1] as f64);
                for (k, method) in SAMPLING.iter().enumerate() {
                    let curve = &curves[&(*method, q, s)];
                    layers.push(Layer::Line {
                        label: method.to_string(),
                        points: curve.iter().map(|&(n, e)| (n.log10(), e.log10())).collect(),
                        colour: k,
                        width: 3,
                    });
                }
                // 1/sqrt(N) through MC's first point.
                if let Some(&(n, e)) = curves[&(Method::Mc, q, s)].first() {
                    layers.push(Layer::Line {
                        label: "1/sqrt(N)".into(),
                        points: [n0, n1]
                            .iter()
                            .map(|&x| (x.log10(), (e * (n / x).sqrt()).log10()))
                            .collect(),
                        colour: 6,
                        width: 1,
                    });
                }
                let floor = noise(q, s);
                layers.push(Layer::Line {
                    label: "reference's standard error".into(),
                    points: [n0, n1]
                        .iter()
                        .map(|&x| (x.log10(), floor.log10()))
                        .collect(),
                    colour: 7,
                    width: 1,
                });
                for (k, m) in UT.iter().enumerate() {
                    let (e, _) = ut_error[&(*m, q, s)];
                    layers.push(Layer::Line {
                        label: format!("{m} ({} runs)", ut_error[&(*m, q, s)].1),
                        points: [n0, n1].iter().map(|&x| (x.log10(), e.log10())).collect(),
                        colour: 3 + k,
                        width: 2,
                    });
                }
                Panel {
                    title: q.to_string(),
                    x_label: "samples N".into(),
                    y_label: format!("RMS error of the {s}"),
                    log_log: true,
                    layers,
                }
            })
            .collect();
        write_panels(
            &mut sink,
            &format!("convergence_{s}"),
            &format!(
                "RMS error of the hourly {s} vs a {reference_runs}-sample MC, {} seeds per N",
                args.reps
            ),
            &panels,
            2,
            &p2pmarket::output::FigureOptions::default(),
        )?;
    }
    eprintln!("wrote {}", sink.written().join(", "));
    Ok(())
}
