//! The `p2pmarket` command line: parses flags, builds a validated plan, runs it, prints.
//! Exit codes: 0 success, 2 bad input (one message naming the flag, field or file; nothing
//! written), 1 any other failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use p2pmarket::Error;
use p2pmarket::engine::bench::{BenchBackend, DEFAULT_TIME_CAP_S, run_bench};
use p2pmarket::engine::day::negotiate_day;
use p2pmarket::engine::{BackendChoice, Precision};
use p2pmarket::market::{self, DayResult, Market};
use p2pmarket::scenario::Scenario;
use p2pmarket::sweep::SweepEvent;

/// `--backend`: where RCI runs are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// A GPU when one exists, else the rayon CPU backend (said on stderr).
    Auto,
    /// A GPU, or an error.
    Gpu,
    /// The rayon CPU backend (the f64 reference).
    Cpu,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Gpu => BackendChoice::Gpu,
            BackendArg::Cpu => BackendChoice::Cpu,
        }
    }
}

/// `--method` of `uncertainty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// The unscented transform in its three forms (paper, Julier, Van der Merwe).
    Ut,
    /// Monte Carlo.
    Mc,
    /// Quasi-Monte Carlo: Owen-scrambled Sobol points.
    Qmc,
    /// Latin hypercube sampling.
    Lhs,
    /// Every method above.
    All,
}

impl MethodArg {
    fn methods(self) -> Vec<p2pmarket::uncertainty::Method> {
        use p2pmarket::uncertainty::Method as M;
        match self {
            MethodArg::Ut => vec![M::UtPaper, M::UtJulier, M::UtMerwe],
            MethodArg::Mc => vec![M::Mc],
            MethodArg::Qmc => vec![M::QmcSobol],
            MethodArg::Lhs => vec![M::Lhs],
            MethodArg::All => M::ALL.to_vec(),
        }
    }
}

/// The methods of a `--method` list, each once, in [`p2pmarket::uncertainty::Method::ALL`]'s
/// order.
fn methods_of(args: &[MethodArg]) -> Vec<p2pmarket::uncertainty::Method> {
    let chosen: Vec<_> = args.iter().flat_map(|a| a.methods()).collect();
    p2pmarket::uncertainty::Method::ALL
        .into_iter()
        .filter(|m| chosen.contains(m))
        .collect()
}

/// `--precision` of the GPU kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "p2pmarket",
    version,
    about = "Secured peer-to-peer energy market engine (RCI consensus vs centralized QP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the 24-h P2P market and both centralized references; write Parquet, JSON, plots.
    Run {
        /// Scenario TOML file; without it the embedded default (RTS-24, RTS-79 peak day,
        /// default microgrid) runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output directory: new, empty, or a previous run's output (whose files are
        /// replaced; files added to it are kept).
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Also write into a non-empty directory that is not a previous run's output; its
        /// files are never deleted or overwritten.
        #[arg(long)]
        force: bool,
        /// Where the negotiation runs. The default is the exact f64 CPU reference.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// Precision of the GPU kernel (the scenario's tolerances must suit it: f32 cannot
        /// meet 1e-7 $/MWh).
        #[arg(long, value_enum, default_value = "f64")]
        precision: PrecisionArg,
        /// GPU adapter to use, by name substring (also WGPU_ADAPTER_NAME).
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Run a parameter sweep (grids and seeded random draws) into hive-partitioned Parquet;
    /// resumable: rerun the same command after an interruption.
    Sweep {
        /// Sweep TOML file (see experiments/sweeps/).
        #[arg(long)]
        config: PathBuf,
        /// Output directory: new, empty, or one holding this same sweep (parts already
        /// complete there are verified, not recomputed).
        #[arg(long)]
        out: PathBuf,
        /// Also write into a non-empty directory that holds no sweep; its files are never
        /// deleted or overwritten.
        #[arg(long)]
        force: bool,
        /// Where the runs are evaluated.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Precision of the GPU kernel. f32 needs stop tolerances it can meet (price 1e-3,
        /// power and balance 1e-2; see experiments/gpu_f32.toml).
        #[arg(long, value_enum, default_value = "f64")]
        precision: PrecisionArg,
        /// GPU adapter to use, by name substring (also WGPU_ADAPTER_NAME).
        #[arg(long)]
        adapter: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Propagate the scenario's [uncertainty] model through the market: the unscented
    /// transform against Monte Carlo, QMC and LHS, every sample a market day on the batch
    /// engine; write statistics (Parquet), a report and band figures.
    Uncertainty {
        /// Scenario TOML file with an optional [uncertainty] section (default: the
        /// embedded default and the documented default model).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Methods to run, comma-separated (e.g. `ut,mc`: the UT against a large MC).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        method: Vec<MethodArg>,
        /// Samples of each sampling method (MC, QMC, LHS), 1..=1e9 (QMC: at most 65536);
        /// the UT always takes 2c+1 = 241 runs.
        #[arg(long, default_value_t = 1000)]
        samples: u64,
        /// Output directory: new, empty, or a previous output of a command.
        #[arg(long, default_value = "out-uncertainty")]
        out: PathBuf,
        /// Also write into a non-empty directory that is not a previous output; its files
        /// are never deleted or overwritten.
        #[arg(long)]
        force: bool,
        /// Where the runs are evaluated.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Precision of the GPU kernel.
        #[arg(long, value_enum, default_value = "f64")]
        precision: PrecisionArg,
        /// GPU adapter to use, by name substring (also WGPU_ADAPTER_NAME).
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Print runs per second of every backend at batch sizes from 1e3 to 1e6.
    Bench {
        /// Scenario TOML file whose market is perturbed (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Backends to time: auto = CPU plus every GPU precision available.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Batch sizes (runs), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1_000usize, 10_000, 100_000, 1_000_000])]
        sizes: Vec<usize>,
        /// GPU adapter to use, by name substring (also WGPU_ADAPTER_NAME).
        #[arg(long)]
        adapter: Option<String>,
        /// Skip a size whose time, predicted from the backend's last timed size, exceeds
        /// this many seconds.
        #[arg(long, default_value_t = DEFAULT_TIME_CAP_S)]
        max_seconds: f64,
    },
    /// Validate a scenario file and print the effective scenario, or (with --sweep) a
    /// sweep file and what it would compute; writes nothing.
    Check {
        /// Scenario TOML file.
        #[arg(long, conflicts_with = "sweep")]
        config: Option<PathBuf>,
        /// Sweep TOML file: validated against its case and planned (a dry run).
        #[arg(long)]
        sweep: Option<PathBuf>,
    },
}

/// Failure classes of the command, mapped to exit codes.
enum Failure {
    /// Exit 2: the input (a file, a field, a flag) is wrong; nothing was written.
    BadInput(Error),
    /// Exit 1: the environment failed (I/O, solver, device).
    Env(Error),
    /// Exit 1: anything else.
    Other(anyhow::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { .. }
            | Error::Scenario { .. }
            | Error::Matpower { .. }
            | Error::InputFile { .. }
            | Error::OutputDir { .. } => Failure::BadInput(e),
            other => Failure::Env(other),
        }
    }
}

/// Classifies an error of a command that may have opened a GPU: an adapter that was
/// named (by `--adapter` or `WGPU_ADAPTER_NAME`) and does not exist is bad input.
fn device_failure(e: Error, adapter: Option<&str>) -> Failure {
    // The engine reports a missing named adapter as a GPU-engine error with this wording
    // (src/engine/gpu.rs, GpuContext::new).
    if let Error::Solver { problem, message } = &e
        && problem == "GPU engine"
        && message.starts_with("no adapter named like")
    {
        let (flag, name) = match adapter {
            Some(a) => ("--adapter", a.to_string()),
            None => (
                "WGPU_ADAPTER_NAME",
                std::env::var("WGPU_ADAPTER_NAME").unwrap_or_default(),
            ),
        };
        return Failure::BadInput(Error::invalid(
            flag,
            format!("{name:?}"),
            format!("a substring of an adapter's name; {message}"),
        ));
    }
    e.into()
}

/// Refuses `--adapter` with `--backend cpu`, which uses no adapter.
fn check_adapter_flag(backend: BackendChoice, adapter: Option<&str>) -> Result<(), Failure> {
    match adapter {
        Some(name) if backend == BackendChoice::Cpu => Err(Failure::BadInput(Error::invalid(
            "--adapter",
            format!("{name:?}"),
            "only with --backend gpu or auto (the cpu backend uses no adapter)",
        ))),
        _ => Ok(()),
    }
}

fn load_scenario(config: Option<&Path>) -> Result<Scenario, Failure> {
    match config {
        None => Ok(Scenario::default()),
        Some(p) => Ok(Scenario::from_toml(
            &p2pmarket::input::read_text(p, "--config")?,
            p,
        )?),
    }
}

/// Prints a wait for another process, so that a blocked command is not taken for a hang.
fn say_waiting(message: &str) {
    eprintln!("note: {message}");
}

/// The validated plan of a `run`.
struct RunPlan<'a> {
    config: Option<&'a Path>,
    out: &'a Path,
    force: bool,
    backend: BackendChoice,
    precision: Precision,
    adapter: Option<&'a str>,
}

fn run(plan: &RunPlan<'_>) -> Result<(), Failure> {
    let start = std::time::Instant::now();
    check_adapter_flag(plan.backend, plan.adapter)?;
    let scenario = load_scenario(plan.config)?;
    let out_options = p2pmarket::output::RunOutputOptions { force: plan.force };
    // Before any computing: a directory that may not be written is refused at once.
    p2pmarket::output::check_run_out(plan.out, out_options)?;
    let market = Market::from_scenario(&scenario)?;
    let keep = scenario.output.keep_trajectories;
    let r = &scenario.rci;
    if plan.backend != BackendChoice::Cpu
        && plan.precision == Precision::F32
        && (r.price_tol < 1e-3 || r.power_tol < 1e-2 || r.balance_tol < 1e-2)
    {
        eprintln!(
            "note: f32 cannot meet price_tol {} / power_tol {} / balance_tol {}; hours will stop at the iteration cap (see experiments/gpu_f32.toml)",
            r.price_tol, r.power_tol, r.balance_tol
        );
    }
    let (negotiated, adapter) = if plan.backend == BackendChoice::Cpu {
        (
            None,
            serde_json::json!({"name": "f64 CPU reference", "backend": "cpu"}),
        )
    } else {
        let day = negotiate_day(&market, keep, plan.backend, plan.precision, plan.adapter)
            .map_err(|e| device_failure(e, plan.adapter))?;
        if let Some(notice) = &day.notice {
            eprintln!("note: {notice}");
        }
        let a = &day.adapter;
        let info = serde_json::json!({
            "name": a.name, "device_type": a.device_type, "driver": a.driver,
            "driver_info": a.driver_info, "backend": a.backend, "notice": day.notice,
        });
        (Some(day.outcomes), info)
    };
    let mut day = market::run_day_with(&market, keep, negotiated)?;
    day.summary.runtime_s = start.elapsed().as_secs_f64();
    let extra = serde_json::json!({
        "p2pmarket_version": env!("CARGO_PKG_VERSION"),
        "backend": format!("{:?}", plan.backend).to_lowercase(),
        "precision": if plan.backend == BackendChoice::Cpu { "f64" } else { match plan.precision { Precision::F32 => "f32", Precision::F64 => "f64" } },
        "adapter": adapter,
    });
    let files = p2pmarket::output::write_run_with(
        plan.out,
        out_options,
        &mut say_waiting,
        &scenario,
        &day,
        extra,
    )?;
    print_report(&day);
    println!("\nwrote {} files to {}", files.len(), plan.out.display());
    Ok(())
}

/// The validated plan of an `uncertainty` study.
struct UncertaintyPlan<'a> {
    config: Option<&'a Path>,
    methods: Vec<p2pmarket::uncertainty::Method>,
    samples: u64,
    out: &'a Path,
    force: bool,
    backend: BackendChoice,
    precision: Precision,
    adapter: Option<&'a str>,
}

/// Most samples per sampling method.
const MAX_SAMPLES: u64 = 1_000_000_000;

fn uncertainty(plan: &UncertaintyPlan<'_>) -> Result<(), Failure> {
    use p2pmarket::uncertainty::study::{StudyOptions, run_study};
    let start = std::time::Instant::now();
    check_adapter_flag(plan.backend, plan.adapter)?;
    if !(1..=MAX_SAMPLES).contains(&plan.samples) {
        return Err(Failure::BadInput(Error::invalid(
            "--samples",
            plan.samples,
            format!("1..={MAX_SAMPLES}"),
        )));
    }
    let sobol_cap = p2pmarket::uncertainty::sampling::MAX_SOBOL_SAMPLES;
    if plan
        .methods
        .contains(&p2pmarket::uncertainty::Method::QmcSobol)
        && plan.samples > sobol_cap
    {
        return Err(Failure::BadInput(Error::invalid(
            "--samples",
            plan.samples,
            format!("1..={sobol_cap} with --method qmc or all (the Sobol sequence's length)"),
        )));
    }
    let scenario = load_scenario(plan.config)?;
    scenario.validate_settings()?;
    let out_options = p2pmarket::output::RunOutputOptions { force: plan.force };
    p2pmarket::output::check_run_out(plan.out, out_options)?;
    let market = Market::from_scenario(&scenario)?;
    let (backend, gpu) = p2pmarket::engine::open_backend(plan.backend, plan.adapter)
        .map_err(|e| device_failure(e, plan.adapter))?;
    let opts = StudyOptions {
        methods: plan.methods.clone(),
        samples: plan.samples,
        backend,
        precision: plan.precision,
    };
    let result = run_study(&market, &scenario.uncertainty, &opts, gpu.as_ref())
        .map_err(|e| device_failure(e, plan.adapter))?;
    let (commit, dirty) = p2pmarket::sweep::manifest::git_commit();
    let manifest = serde_json::json!({
        "p2pmarket_version": env!("CARGO_PKG_VERSION"),
        "git_commit": commit,
        "git_dirty": dirty,
        "samples": plan.samples,
        "seed": scenario.uncertainty.seed,
        "backend": format!("{:?}", plan.backend).to_lowercase(),
        "precision": match plan.precision { Precision::F32 => "f32", Precision::F64 => "f64" },
        "methods": result.methods,
        "load_table": {
            "levels": result.table_levels,
            "scale_range": result.table_range.map(|r| [r.0, r.1]),
            "export_error_mw": result.table_export_error_mw,
            "build_s": result.table_s,
        },
        "runtime_s": start.elapsed().as_secs_f64(),
    });
    let files = p2pmarket::output::publish_dir_with(
        plan.out,
        out_options,
        &mut say_waiting,
        &mut |sink| {
            p2pmarket::output::uncertainty::write_study(
                sink,
                &scenario,
                &result,
                manifest.clone(),
                plan.samples,
            )
        },
    )?;
    print!(
        "{}",
        p2pmarket::output::uncertainty::report_markdown(&result, plan.samples)
    );
    println!(
        "\nwrote {} files to {} in {:.1} s",
        files.len(),
        plan.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Mesa's Vulkan device-select layer probes for a Wayland display while the adapters are
/// listed and prints "XDG_RUNTIME_DIR is invalid or not set" to the terminal on a headless
/// machine. The engine ranks the adapters itself, so the layer is switched off unless the
/// user set `NODEVICE_SELECT` (issue 12, item 4).
fn quiet_mesa_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any thread exists that could read
        // the environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// `check --sweep`: validates a sweep file against its case and prints what it would
/// compute, without building a curve or writing a file.
fn check_sweep(path: &Path) -> Result<(), Failure> {
    let spec = p2pmarket::sweep::SweepSpec::from_toml(
        &p2pmarket::input::read_text(path, "--sweep")?,
        path,
    )?;
    let plan = spec.plan()?;
    let buses = plan.pcc_buses();
    println!(
        "sweep {} is valid: {} runs ({} per grid point) in {} parts over {} pcc bus(es) {:?}; \
         it would build {} smart-grid curve set(s)",
        path.display(),
        plan.total_runs(),
        plan.samples(),
        plan.parts().len(),
        buses.len(),
        buses,
        plan.curve_sets()
    );
    Ok(())
}

fn sweep(
    config: &Path,
    out: &Path,
    options: p2pmarket::sweep::SweepOptions,
    quiet: bool,
) -> Result<(), Failure> {
    check_adapter_flag(options.backend, options.adapter.as_deref())?;
    let spec = p2pmarket::sweep::SweepSpec::from_toml(
        &p2pmarket::input::read_text(config, "--config")?,
        config,
    )?;
    if options.backend != BackendChoice::Cpu && options.precision == Precision::F32 {
        eprintln!(
            "note: f32 kernels cannot meet stop tolerances below ~1e-3 $/MWh / 1e-2 MW; runs with tighter ones stop at their iteration cap (see experiments/gpu_f32.toml)"
        );
    }
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs  {elapsed_precise} (eta {eta})  {msg}",
        )
        .map_err(|e| Failure::Other(e.into()))?,
    );
    let report = p2pmarket::sweep::run_sweep(&spec, out, &options, &mut |event| match event {
        SweepEvent::Part(p) => {
            bar.set_length(p.runs_total);
            bar.set_position(p.runs_done);
            bar.set_message(format!(
                "part {}/{}{}",
                p.parts_done,
                p.parts_total,
                if p.skipped { " (already done)" } else { "" }
            ));
        }
        SweepEvent::Waiting(message) => bar.suspend(|| say_waiting(&message)),
    })
    .map_err(|e| device_failure(e, options.adapter.as_deref()))?;
    bar.finish_and_clear();
    for n in &report.notices {
        eprintln!("note: {n}");
    }
    let device = report
        .adapter
        .as_ref()
        .map_or("none (every part was already done)".to_string(), |a| {
            format!("{} ({})", a.name, a.backend)
        });
    println!(
        "{} runs in {} parts ({} written, {} already done) on {device} in {:.2} s{}",
        report.runs,
        report.parts_total,
        report.parts_written,
        report.parts_skipped,
        report.wall_s,
        if report.complete {
            ""
        } else {
            " (stopped early: incomplete)"
        }
    );
    if let Some(m) = &report.manifest {
        println!("manifest: {}", m.display());
    }
    Ok(())
}

fn bench(
    config: Option<&Path>,
    backend: BackendChoice,
    sizes: &[usize],
    adapter: Option<&str>,
    max_seconds: f64,
) -> Result<(), Failure> {
    if !(max_seconds.is_finite() && max_seconds > 0.0) {
        return Err(Failure::BadInput(Error::invalid(
            "--max-seconds",
            max_seconds,
            "> 0 s, finite",
        )));
    }
    if sizes.is_empty() || sizes.iter().any(|&n| n == 0 || n > 100_000_000) {
        return Err(Failure::BadInput(Error::invalid(
            "--sizes",
            format!("{sizes:?}"),
            "1..=100000000 runs each, at least one size",
        )));
    }
    check_adapter_flag(backend, adapter)?;
    let scenario = load_scenario(config)?;
    let market = Market::from_scenario(&scenario)?;
    let mut backends = Vec::new();
    if backend != BackendChoice::Gpu {
        backends.push(BenchBackend::Cpu);
    }
    if backend != BackendChoice::Cpu {
        match p2pmarket::engine::GpuContext::new(adapter) {
            Ok(ctx) => {
                backends.push(BenchBackend::Gpu(Precision::F32));
                if ctx.supports_f64() {
                    backends.push(BenchBackend::Gpu(Precision::F64));
                }
            }
            // A named adapter that is missing is an error whatever the backend.
            Err(e) if backend == BackendChoice::Gpu || adapter.is_some() => {
                return Err(device_failure(e, adapter));
            }
            Err(e) => eprintln!(
                "note: {}",
                p2pmarket::engine::fallback_notice(&p2pmarket::engine::missing_notice(&e))
            ),
        }
    }
    let report = run_bench(&market, sizes, &backends, adapter, max_seconds)?;
    println!("{report}");
    Ok(())
}

fn print_report(day: &DayResult) {
    println!(
        "hour  load_MW  conv  iter   price_$/MWh  ref_price  exchange_MW  ref_exchange  24h_exchange"
    );
    for h in &day.hours {
        println!(
            "{:>4} {:>8.1} {:>5} {:>5} {:>13.4} {:>10.4} {:>12.4} {:>13.4} {:>13.4}",
            h.hour,
            h.system_load_mw,
            if h.p2p.outcome.converged { "yes" } else { "NO" },
            h.p2p.outcome.iterations,
            h.p2p.price,
            h.hourly_reference.price,
            h.p2p.exchange_mw,
            h.hourly_reference.exchange_mw,
            h.horizon_reference.exchange_mw,
        );
    }
    let s = &day.summary;
    println!();
    println!(
        "converged hours              {}/{}",
        s.converged_hours,
        day.hours.len()
    );
    println!(
        "iterations (max / mean)      {} / {:.1}",
        s.iterations_max, s.iterations_mean
    );
    println!("P2P total cost               {:.2} $", s.p2p_total_cost);
    println!(
        "hourly reference cost        {:.2} $",
        s.central_hourly_total_cost
    );
    println!(
        "24-h co-optimization cost    {:.2} $",
        s.central_24h_total_cost
    );
    println!(
        "max power deviation          {:.3e} %",
        s.max_power_deviation_pct
    );
    println!("cost gap vs hourly reference {:.3e} %", s.cost_gap_pct);
    println!(
        "co-optimization advantage    {:.4} %",
        s.co_optimization_advantage_pct
    );
    println!("runtime                      {:.2} s", s.runtime_s);
}

fn main() -> ExitCode {
    quiet_mesa_device_select();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run {
            config,
            out,
            force,
            backend,
            precision,
            adapter,
        } => run(&RunPlan {
            config: config.as_deref(),
            out,
            force: *force,
            backend: (*backend).into(),
            precision: (*precision).into(),
            adapter: adapter.as_deref(),
        }),
        Command::Sweep {
            config,
            out,
            force,
            backend,
            precision,
            adapter,
            quiet,
        } => sweep(
            config,
            out,
            p2pmarket::sweep::SweepOptions {
                backend: (*backend).into(),
                precision: (*precision).into(),
                adapter: adapter.clone(),
                max_parts: None,
                force: *force,
            },
            *quiet,
        ),
        Command::Bench {
            config,
            backend,
            sizes,
            adapter,
            max_seconds,
        } => bench(
            config.as_deref(),
            (*backend).into(),
            sizes,
            adapter.as_deref(),
            *max_seconds,
        ),
        Command::Uncertainty {
            config,
            method,
            samples,
            out,
            force,
            backend,
            precision,
            adapter,
        } => uncertainty(&UncertaintyPlan {
            config: config.as_deref(),
            methods: methods_of(method),
            samples: *samples,
            out,
            force: *force,
            backend: (*backend).into(),
            precision: (*precision).into(),
            adapter: adapter.as_deref(),
        }),
        Command::Check {
            sweep: Some(path), ..
        } => check_sweep(path),
        Command::Check { config, .. } => load_scenario(config.as_deref()).and_then(|s| {
            Market::from_scenario(&s)?;
            print!(
                "{}",
                toml::to_string_pretty(&s).map_err(|e| Failure::Other(e.into()))?
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Env(e)) => {
            // The library's errors carry their cause in their message; `{e:#}` of a
            // converted one would print the OS error twice.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
