//! The `p2pmarket` command line: parses flags, builds a validated plan, runs it, prints.
//! Exit codes: 0 success, 2 bad input (one message naming the flag, field or file; nothing
//! written), 1 any other failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use p2pmarket::Error;
use p2pmarket::engine::bench::{BenchBackend, DEFAULT_TIME_CAP_S, run_bench};
use p2pmarket::engine::day::negotiate_day;
use p2pmarket::engine::{BackendChoice, Precision};
use p2pmarket::market::{self, DayResult, Market};
use p2pmarket::scenario::Scenario;
use p2pmarket::sweep::SweepEvent;

/// `std`'s `println!`, except that a closed standard output does not panic: once its
/// reader is gone (`p2pmarket check ... | head`), the rest of the report is dropped and
/// the command's work and exit code go on unchanged.
macro_rules! println {
    () => {
        say(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        say(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `std`'s `print!`, as [`println!`] here.
macro_rules! print {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

/// Writes to standard output. A closed pipe is silent; any other failure is said once on
/// standard error, and later output is dropped.
fn say(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: standard output cannot be written ({e}); its report is dropped");
        }
    }
}

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

/// How figures are drawn and published (PNG, SVG and PDF).
#[derive(Args)]
struct FigureArgs {
    /// Size of every figure, WxH in inches (e.g. 7x4.5; width 4 to 40, height 3 to 30).
    /// Fonts keep their size on paper (tick labels 11.5 pt), so a smaller figure is a
    /// denser one. Figures made of a grid of panels are at least this wide.
    #[arg(long, value_name = "WxH", default_value = "12x7")]
    figure_size: String,
    /// Resolution of the PNGs, pixels per inch (50 to 1200); SVG and PDF are vector.
    #[arg(long, default_value_t = 100)]
    dpi: u32,
    /// Font of every text: "DejaVu Sans" (embedded) or the path of a .ttf or .otf file.
    /// The PDFs embed it; no system font is ever used.
    #[arg(long, default_value = "DejaVu Sans")]
    font: String,
}

/// Validates the figure flags (reading the font file, if one is named) before anything
/// runs; errors name the flag.
fn figure_options(args: &FigureArgs) -> Result<p2pmarket::output::FigureOptions, Failure> {
    use p2pmarket::output::plots::{FigureFont, FigureOptions};
    let size =
        FigureOptions::parse_size("--figure-size", &args.figure_size).map_err(Failure::BadInput)?;
    let font = FigureFont::from_choice("--font", &args.font).map_err(Failure::BadInput)?;
    FigureOptions::new(size, args.dpi, font).map_err(|e| match e {
        Error::InvalidInput {
            field,
            value,
            allowed,
        } => Failure::BadInput(Error::invalid(
            format!("--{}", field.replace('_', "-")),
            value,
            allowed,
        )),
        other => Failure::BadInput(other),
    })
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
        /// Also record the whole negotiation (every hour's messages and settlements) in a
        /// ledger signed by the agents and validated by 3f+1 validators, and write it
        /// (ledger_blocks.parquet, ledger_transactions.parquet, ledger.json); check it
        /// later with `p2pmarket verify`. Records the f64 CPU reference (--backend cpu).
        #[arg(long)]
        ledger: bool,
        /// Faults the ledger tolerates, f: 3f+1 validators, 2f+1 votes commit a block
        /// (0..=100).
        #[arg(long, default_value_t = 1, requires = "ledger")]
        ledger_faults: u32,
        /// Seed of the ledger's agent and validator keys.
        #[arg(long, default_value_t = 0, requires = "ledger")]
        ledger_seed: u64,
        #[command(flatten)]
        figures: FigureArgs,
    },
    /// Re-verify a stored ledger (the ledger files of a run written with --ledger: their
    /// hashes, every hash link, Merkle root, signature, quorum and recomputed update, that
    /// it records the whole day, and that hourly.parquet's prices and exchanges are its
    /// settlements; the run's other outputs are not covered) or a sweep
    /// (its signed manifest, every file's hash, Merkle roots and settlement chains). Exits
    /// 0 when valid, 3 when a file is altered, missing, unlisted or unreadable, 4 when the
    /// content is refused (naming the first bad block, transaction, file, row or run), 2
    /// when PATH holds neither.
    Verify {
        /// A run's output directory (or its ledger.json), or a sweep's output directory.
        path: PathBuf,
        /// The trusted anchor, 64 lower-case hex digits: a ledger's genesis hash, or the
        /// public key a sweep's manifest must be signed with.
        #[arg(long)]
        anchor: Option<String>,
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
        /// Compute only shard K of N (a task of a job array) and write its shard manifest;
        /// `p2pmarket finalize` seals the whole. Without it: SLURM_ARRAY_TASK_ID of
        /// P2PMARKET_SHARD_COUNT (else of SLURM_ARRAY_TASK_COUNT), or JOB_COMPLETION_INDEX
        /// of P2PMARKET_SHARD_COUNT; outside an array task, the whole sweep.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
    },
    /// Seal a sweep or uncertainty study run as shards (--shard, or a Slurm/Kubernetes
    /// array): checks that every part of the plan exists once with its shard's hash, one
    /// spec, one build; then writes manifest.json (a sweep) or the study's statistics,
    /// report and figures. Exits 2, naming the missing parts and writing nothing, when the
    /// job is not complete.
    Finalize {
        /// The sweep's (or sharded uncertainty study's) output directory.
        dir: PathBuf,
        /// How a study's figures are drawn.
        #[command(flatten)]
        figures: FigureArgs,
    },
    /// Draw the heat maps of a finished attack sweep (e.g. experiments/sweeps/attack_map.toml):
    /// converged fraction, median deviation and economic damage over |size| x first attacked
    /// iteration, one panel per variable, undefended and defended (PNG, SVG and PDF).
    AttackFigures {
        /// The attack sweep's output directory.
        #[arg(long)]
        sweep: PathBuf,
        /// Output directory: new, empty, or a previous output of a command.
        #[arg(long, default_value = "out-attack-figures")]
        out: PathBuf,
        /// Also write into a non-empty directory that is not a previous output; its files
        /// are never deleted or overwritten.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        figures: FigureArgs,
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
        /// Samples of each sampling method (MC, QMC, LHS), 1..=1e9, as an integer or in
        /// scientific notation (100000 or 1e5; QMC: at most 65536); the UT always takes
        /// 2c+1 = 241 runs.
        #[arg(long, default_value_t = 1000, value_parser = p2pmarket::input::parse_count)]
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
        /// Compute only shard K of N (a task of a job array): its runs go to
        /// samples/method=M/part-K.parquet and its manifest to shards/; `p2pmarket
        /// finalize` reduces the whole into the study's outputs. Without it: the scheduler's
        /// variables as for `sweep`; outside an array task, the whole study.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        #[command(flatten)]
        figures: FigureArgs,
    },
    /// Print runs per second of every backend at batch sizes from 1e3 to 1e6.
    Bench {
        /// Scenario TOML file whose market is perturbed (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Backends to time: auto = CPU plus every GPU precision available.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Batch sizes (runs), comma-separated, each an integer or in scientific notation
        /// (10000,1e5).
        #[arg(long, value_delimiter = ',', value_parser = parse_size,
              default_values_t = vec![1_000usize, 10_000, 100_000, 1_000_000])]
        sizes: Vec<usize>,
        /// GPU adapter to use, by name substring (also WGPU_ADAPTER_NAME).
        #[arg(long)]
        adapter: Option<String>,
        /// Skip a size whose time, predicted from the backend's last timed size, exceeds
        /// this many seconds.
        #[arg(long, default_value_t = DEFAULT_TIME_CAP_S)]
        max_seconds: f64,
        /// Also time each GPU precision reading back only the runs' summaries, reduced on
        /// the device, instead of every (run, hour) record.
        #[arg(long)]
        summaries: bool,
        /// Invocations per GPU workgroup: 32, 64, 128 or 256 (results do not depend on it).
        #[arg(long, default_value_t = p2pmarket::engine::gpu::WORKGROUP_SIZE)]
        workgroup_size: u32,
    },
    /// Print a shell completion script (bash: `source <(p2pmarket completions bash)`;
    /// zsh; fish: `p2pmarket completions fish > ~/.config/fish/completions/p2pmarket.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: p2pmarket::cli_docs::Shell,
    },
    /// Print the man page (roff): `p2pmarket man > p2pmarket.1 && man -l p2pmarket.1`.
    Man,
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
    /// Exit 3 or 4: `verify` found a stored ledger altered (3: a file; 4: its content).
    Tampered(u8, String),
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
            | Error::OutputDir { .. }
            | Error::SealDir { .. } => Failure::BadInput(e),
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
    /// Record the negotiation in a ledger, with these options.
    ledger: Option<p2pmarket::ledger::RecordOptions>,
    /// How the figures are drawn.
    figures: p2pmarket::output::FigureOptions,
}

/// Most faults `run --ledger-faults` accepts (301 validators).
const MAX_LEDGER_FAULTS: u32 = 100;

fn run(plan: &RunPlan<'_>) -> Result<(), Failure> {
    let start = std::time::Instant::now();
    check_adapter_flag(plan.backend, plan.adapter)?;
    if let Some(opts) = &plan.ledger {
        if plan.backend != BackendChoice::Cpu {
            return Err(Failure::BadInput(Error::invalid(
                "--backend",
                format!("{:?}", plan.backend).to_lowercase(),
                "cpu with --ledger (the ledger records the f64 CPU reference negotiation)",
            )));
        }
        if opts.faults > MAX_LEDGER_FAULTS {
            return Err(Failure::BadInput(Error::invalid(
                "--ledger-faults",
                opts.faults,
                format!("a whole number in 0..={MAX_LEDGER_FAULTS}"),
            )));
        }
    }
    let scenario = load_scenario(plan.config)?;
    if plan.ledger.is_some()
        && !scenario.attack.is_empty()
        && scenario.defence != p2pmarket::attack::Defence::Defended
    {
        return Err(Failure::BadInput(Error::invalid(
            "defence",
            "\"undefended\"",
            "\"defended\" with --ledger and [[attack]] tables (an undefended attack's messages bypass the ledger)",
        )));
    }
    let out_options = p2pmarket::output::RunOutputOptions {
        force: plan.force,
        writer: p2pmarket::output::OutputWriter::Run,
    };
    // Before any computing: a directory that may not be written is refused at once.
    p2pmarket::output::check_run_out(plan.out, out_options)?;
    let market = Market::from_scenario(&scenario)?;
    let keep = scenario.output.keep_trajectories;
    let (negotiated, adapter, precision) = if plan.backend == BackendChoice::Cpu {
        (
            None,
            serde_json::json!({"name": "f64 CPU reference", "backend": "cpu"}),
            Precision::F64,
        )
    } else {
        let backend = p2pmarket::engine::open_backend(plan.backend, plan.precision, plan.adapter)
            .map_err(|e| device_failure(e, plan.adapter))?;
        if let Some(notice) = &backend.notice {
            eprintln!("note: {notice}");
        }
        if backend.precision(plan.precision) == Precision::F32 {
            f32_note("rci", &scenario.rci);
        }
        let day = negotiate_day(&market, keep, &backend, plan.precision)
            .map_err(|e| device_failure(e, plan.adapter))?;
        let a = &day.adapter;
        let info = serde_json::json!({
            "name": a.name, "device_type": a.device_type, "driver": a.driver,
            "driver_info": a.driver_info, "backend": a.backend, "notice": day.notice,
        });
        (Some(day.outcomes), info, day.precision)
    };
    let mut day = market::run_day_with(&market, keep, negotiated)?;
    let recorded = match &plan.ledger {
        Some(opts) => {
            let start = std::time::Instant::now();
            let rec = if market.attacks.is_empty() {
                p2pmarket::ledger::record_day(&market, &day, opts)?
            } else {
                let attacks = p2pmarket::ledger::DayAttacks {
                    slots: &market.attacks,
                    defence: market.defence,
                };
                p2pmarket::ledger::record_day_attacked(&market, &day, opts, &attacks)?
            };
            Some((rec, start.elapsed().as_secs_f64()))
        }
        None => None,
    };
    day.summary.runtime_s = start.elapsed().as_secs_f64();
    let mut extra = serde_json::json!({
        "p2pmarket_version": env!("CARGO_PKG_VERSION"),
        "backend": format!("{:?}", plan.backend).to_lowercase(),
        "precision": precision.as_str(),
        "adapter": adapter,
    });
    let eq1 = recorded.as_ref().and_then(|(rec, _)| eq1_block_s(rec));
    if let Some((rec, total_s)) = &recorded {
        extra["ledger"] = ledger_summary(rec, *total_s, eq1);
    }
    let mut extra = Some(extra);
    let files = p2pmarket::output::publish_dir_with(
        plan.out,
        out_options,
        &mut say_waiting,
        &mut |sink| {
            let mut names = p2pmarket::output::write_outputs(
                sink,
                &scenario,
                &day,
                extra.take().unwrap_or_default(),
                &plan.figures,
            )?;
            if let Some((rec, _)) = &recorded {
                names.extend(p2pmarket::output::ledger::write_ledger(
                    sink,
                    &rec.network.ledger,
                    rec.run,
                    &rec.summary,
                )?);
            }
            Ok(names)
        },
    )?;
    print_report(&day);
    if let Some((rec, total_s)) = &recorded {
        print_ledger(rec, *total_s, eq1);
    }
    println!("\nwrote {} files to {}", files.len(), plan.out.display());
    Ok(())
}

/// Eq. (1) per block with this machine's measured constants (100 repetitions each), on
/// blocks like the recorded ones; `None` when the measurement fails.
fn eq1_block_s(rec: &p2pmarket::ledger::RecordedDay) -> Option<f64> {
    let c = &rec.counts;
    let agents = rec.summary.agents;
    let costs = p2pmarket::ledger::measure_op_costs(100, agents).ok()?;
    let genesis = f64::from(1 + agents + c.validators);
    let per_block = (c.transactions as f64 - genesis) / (c.blocks.saturating_sub(1).max(1)) as f64;
    Some(p2pmarket::ledger::ProcessingTime::from_costs(&costs, per_block, c.validators).total_s())
}

/// The `ledger` object of summary.json: counts, bytes, the wall times of recording, and
/// eq. (1)'s model of them.
fn ledger_summary(
    rec: &p2pmarket::ledger::RecordedDay,
    total_s: f64,
    eq1_block_s: Option<f64>,
) -> serde_json::Value {
    let c = &rec.counts;
    let t = &rec.timing;
    let blocks = c.blocks.saturating_sub(1) as f64;
    serde_json::json!({
        "eq1_block_s": eq1_block_s,
        "eq1_day_s": eq1_block_s.map(|b| b * blocks),
        "measured_block_s": (t.sign_s + t.validate_s) / blocks.max(1.0),
        "genesis_hash": hex::encode(rec.network.state.genesis_hash),
        "tip_hash": hex::encode(rec.network.state.tip),
        "validators": c.validators,
        "faults": c.faults,
        "blocks": c.blocks,
        "transactions": c.transactions,
        "consensus_messages": c.consensus_messages,
        "settlements": c.settlements,
        "signatures": c.signatures,
        "bytes": c.bytes,
        "record_s": total_s,
        "sign_s": t.sign_s,
        "validate_s": t.validate_s,
        "hash_s": t.hash_s,
        "verify_s": t.verify_s,
        "per_hour_s": total_s / 24.0,
        "forged_submitted": rec.forgeries.forged_submitted,
        "forged_rejected": rec.forgeries.forged_rejected,
    })
}

fn print_ledger(rec: &p2pmarket::ledger::RecordedDay, total_s: f64, eq1_block_s: Option<f64>) {
    let c = &rec.counts;
    let t = &rec.timing;
    let blocks = c.blocks.saturating_sub(1) as f64;
    println!(
        "\nledger: {} blocks, {} transactions ({} messages, {} settlements), {} signatures, {} bytes; {} validators (f = {})",
        c.blocks,
        c.transactions,
        c.consensus_messages,
        c.settlements,
        c.signatures,
        c.bytes,
        c.validators,
        c.faults
    );
    println!(
        "  recorded in {:.3} s ({:.1} ms per market hour): signing {:.3} s, validation and votes {:.3} s, hashing alone {:.4} s, full re-verification {:.3} s",
        total_s,
        1e3 * total_s / 24.0,
        t.sign_s,
        t.validate_s,
        t.hash_s,
        t.verify_s
    );
    if let Some(b) = eq1_block_s {
        println!(
            "  eq. (1) with this machine's measured constants: {:.3} ms per block, {:.3} s per day; measured signing + validation {:.3} ms per block",
            1e3 * b,
            b * blocks,
            1e3 * (t.sign_s + t.validate_s) / blocks.max(1.0)
        );
    }
    println!("  genesis {}", hex::encode(rec.network.state.genesis_hash));
    if rec.forgeries.forged_submitted > 0 {
        println!(
            "  forged copies of attacked messages: {} submitted, {} rejected by the validators",
            rec.forgeries.forged_submitted, rec.forgeries.forged_rejected
        );
    }
}

/// `p2pmarket verify PATH`: re-verifies a stored ledger.
fn verify(path: &Path, anchor: Option<&str>) -> Result<(), Failure> {
    use p2pmarket::output::ledger::{Extent, LEDGER_MANIFEST, LedgerDirError, verify_ledger_dir};
    let anchor = anchor
        .map(|a| {
            hex::decode(a)
                .ok()
                .filter(|_| {
                    a.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| {
                    Failure::BadInput(Error::invalid(
                        "--anchor",
                        a,
                        "64 lower-case hex digits (a genesis hash or a sweep key)",
                    ))
                })
        })
        .transpose()?;
    let named = |name: &str| path.file_name().is_some_and(|n| n == name);
    let dir = if named(LEDGER_MANIFEST) || named(p2pmarket::sweep::MANIFEST_NAME) {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    // A sweep's directory is checked as a sweep whatever else it holds (a ledger copied
    // into it is an unlisted file), and one missing its manifest is a sweep that did not
    // finish, not "no ledger".
    let marks = |name: &str| dir.join(name).symlink_metadata().is_ok();
    if named(p2pmarket::sweep::MANIFEST_NAME)
        || marks(p2pmarket::sweep::MANIFEST_NAME)
        || marks(p2pmarket::sweep::SPEC_NAME)
    {
        return verify_sweep_dir(&dir, anchor);
    }
    match verify_ledger_dir(&dir, anchor, Extent::Day) {
        Ok(check) => {
            let s = &check.summary;
            println!(
                "valid: {} blocks, {} transactions ({} consensus messages, {} settlements), {} agent{}, {} validator{}",
                s.height + 1,
                s.transactions,
                s.consensus_messages,
                s.settlements,
                s.agents,
                if s.agents == 1 { "" } else { "s" },
                s.validators,
                if s.validators == 1 { "" } else { "s" }
            );
            println!("genesis {}", hex::encode(s.genesis_hash));
            println!("tip     {}", hex::encode(s.tip_hash));
            if anchor.is_none() {
                println!(
                    "note: no --anchor given; the ledger is consistent with its own genesis, which only a trusted copy of the genesis hash can vouch for"
                );
            }
            Ok(())
        }
        // A run's output that lists the ledger's manifest has lost it: a missing file.
        Err(LedgerDirError::NotALedger { .. })
            if p2pmarket::output::run_lists(&dir, LEDGER_MANIFEST) =>
        {
            Err(Failure::Tampered(
                3,
                format!(
                    "{LEDGER_MANIFEST}: listed by the run's {} but missing or unreadable",
                    p2pmarket::output::RUN_MARKER
                ),
            ))
        }
        Err(e @ LedgerDirError::NotALedger { .. }) => Err(Failure::BadInput(Error::invalid(
            "PATH",
            path.display(),
            format!(
                "a directory holding a stored ledger ({LEDGER_MANIFEST}) or a sweep \
                 ({}); {e}",
                p2pmarket::sweep::MANIFEST_NAME
            ),
        ))),
        Err(e @ LedgerDirError::File { .. }) => Err(Failure::Tampered(3, e.to_string())),
        Err(e @ (LedgerDirError::Ledger { .. } | LedgerDirError::Outputs { .. })) => {
            Err(Failure::Tampered(4, e.to_string()))
        }
    }
}

/// `p2pmarket verify` on a sweep's output: its signed manifest, files, Merkle roots and
/// settlement chains; `anchor` is the sweep key it must be signed with.
fn verify_sweep_dir(dir: &Path, anchor: Option<[u8; 32]>) -> Result<(), Failure> {
    use p2pmarket::sweep::SweepVerifyErrorKind as K;
    match p2pmarket::sweep::verify_sweep(dir, anchor) {
        Ok(v) => {
            println!(
                "valid sweep: {} runs in {} parts ({} run_hours rows), {} files; manifest signed by {}",
                v.runs,
                v.parts,
                v.run_hours_rows,
                v.files,
                hex::encode(v.public_key)
            );
            if !v.heads_recomputed {
                println!(
                    "note: the sweep wrote no run_hours table (run_hours = false), so the runs' settlement heads were not recomputed; their Merkle roots were"
                );
            }
            if !v.anchored {
                println!(
                    "note: no --anchor given; the key comes from the sweep's seed, so the signature shows consistency, not authorship"
                );
            }
            Ok(())
        }
        Err(e) => match e.kind {
            // A file that cannot be read is reported as a stored ledger's is: exit 3.
            K::Io
            | K::Manifest
            | K::MissingFile
            | K::UnlistedFile
            | K::FileHash
            | K::Unreadable => Err(Failure::Tampered(3, e.to_string())),
            _ => Err(Failure::Tampered(4, e.to_string())),
        },
    }
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
    /// This task's shard of a job array (`None`: the whole study).
    shard: Option<p2pmarket::sweep::Shard>,
    /// How the figures are drawn.
    figures: p2pmarket::output::FigureOptions,
}

/// [`p2pmarket::input::parse_count`] (an integer, or a whole number in scientific
/// notation: `1e5`) for a `usize`.
fn parse_size(s: &str) -> std::result::Result<usize, String> {
    let n = p2pmarket::input::parse_count(s)?;
    usize::try_from(n).map_err(|_| format!("{n} does not fit this machine's usize"))
}

/// Most samples per sampling method.
const MAX_SAMPLES: u64 = 1_000_000_000;

fn uncertainty(plan: &UncertaintyPlan<'_>) -> Result<(), Failure> {
    use p2pmarket::uncertainty::study::{StudyOptions, run_study_with};
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
    if !scenario.attack.is_empty() {
        return Err(Failure::BadInput(Error::invalid(
            "attack",
            format!("{} [[attack]] tables", scenario.attack.len()),
            "none: the uncertainty study negotiates attack-free days (attacks run with `run` or as attack.* sweep parameters)",
        )));
    }
    let out_options = p2pmarket::output::RunOutputOptions {
        force: plan.force,
        writer: p2pmarket::output::OutputWriter::Uncertainty,
    };
    if plan.shard.is_none() {
        p2pmarket::output::check_run_out(plan.out, out_options)?;
        p2pmarket::uncertainty::shard::refuse_sharded_study(plan.out)?;
    }
    let market = Market::from_scenario(&scenario)?;
    let backend = p2pmarket::engine::open_backend(plan.backend, plan.precision, plan.adapter)
        .map_err(|e| device_failure(e, plan.adapter))?;
    if let Some(notice) = &backend.notice {
        eprintln!("note: {notice}");
    }
    let precision = backend.precision(plan.precision);
    if precision == Precision::F32 {
        f32_note("rci", &scenario.rci);
    }
    let gpu = backend.gpu;
    let opts = StudyOptions {
        methods: plan.methods.clone(),
        samples: plan.samples,
        backend: backend.choice,
        // As asked, not as run: a sharded study's identity, which its tasks on other
        // machines (GPU or not) must share; the CPU backend ignores it.
        precision: plan.precision,
    };
    if let Some(shard) = plan.shard {
        use p2pmarket::uncertainty::shard::{ShardTask, run_shard};
        let task = ShardTask {
            scenario: &scenario,
            market: &market,
            opts: &opts,
            gpu: gpu.as_ref(),
            shard,
            force: plan.force,
        };
        let report = run_shard(&task, plan.out).map_err(|e| device_failure(e, plan.adapter))?;
        println!(
            "shard {shard}: {} runs, {} parts written, {} already done, on {} in {:.1} s\n\
             manifest: {} (seal the study with `p2pmarket finalize {}` once every shard is done)",
            report.runs,
            report.parts_written,
            report.parts_skipped,
            if report.adapters.is_empty() {
                idle_device(report.parts_written + report.parts_skipped)
            } else {
                report.adapters.join(", ")
            },
            start.elapsed().as_secs_f64(),
            report.manifest.display(),
            plan.out.display()
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs  {elapsed_precise}  {msg}",
        )
        .map_err(|e| Failure::Other(e.into()))?,
    );
    let result = run_study_with(
        &market,
        &scenario.uncertainty,
        &opts,
        gpu.as_ref(),
        &mut |p| {
            use p2pmarket::uncertainty::study::StudyProgress;
            match p {
                StudyProgress::Table => bar.suspend(|| {
                    eprintln!("uncertainty: building the load table of the system-load spread")
                }),
                StudyProgress::Runs {
                    method,
                    done: 0,
                    total,
                } => {
                    bar.suspend(|| eprintln!("uncertainty: {method}, {total} runs"));
                    bar.set_length(total);
                    bar.set_position(0);
                    bar.set_message(method);
                }
                StudyProgress::Runs { done, .. } => bar.set_position(done),
            }
        },
    )
    .map_err(|e| device_failure(e, plan.adapter))?;
    bar.finish_and_clear();
    let manifest = study_manifest(
        &result,
        plan.samples,
        scenario.uncertainty.seed,
        serde_json::json!({
            "backend": format!("{:?}", plan.backend).to_lowercase(),
            "precision": precision.as_str(),
            "runtime_s": start.elapsed().as_secs_f64(),
        }),
    );
    let files = write_study_dir(
        plan.out,
        out_options,
        &scenario,
        &result,
        manifest,
        plan.samples,
        &plan.figures,
    )?;
    println!(
        "\nwrote {files} files to {} in {:.1} s",
        plan.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `study.json` of an uncertainty study: the build, N, seed, the methods' reports and the
/// load table, then the entries of `extra` (backend, timings, shards).
fn study_manifest(
    result: &p2pmarket::uncertainty::study::StudyResult,
    samples: u64,
    seed: u64,
    extra: serde_json::Value,
) -> serde_json::Value {
    let (commit, dirty) = p2pmarket::sweep::manifest::git_commit();
    let mut manifest = serde_json::json!({
        "p2pmarket_version": env!("CARGO_PKG_VERSION"),
        "git_commit": commit,
        "git_dirty": dirty,
        "samples": samples,
        "seed": seed,
        "methods": result.methods,
        "load_table": {
            "levels": result.table_levels,
            "scale_range": result.table_range.map(|r| [r.0, r.1]),
            "export_error_mw": result.table_export_error_mw,
            "build_s": result.table_s,
        },
    });
    if let (Some(m), serde_json::Value::Object(e)) = (manifest.as_object_mut(), extra) {
        m.extend(e);
    }
    manifest
}

/// Publishes a study's outputs in `out` (see [`p2pmarket::output::publish_dir_with`]),
/// prints its report, and returns the number of files written.
fn write_study_dir(
    out: &Path,
    options: p2pmarket::output::RunOutputOptions,
    scenario: &p2pmarket::scenario::Scenario,
    result: &p2pmarket::uncertainty::study::StudyResult,
    manifest: serde_json::Value,
    samples: u64,
    figures: &p2pmarket::output::FigureOptions,
) -> Result<usize, Failure> {
    let files = p2pmarket::output::publish_dir_with(out, options, &mut say_waiting, &mut |sink| {
        p2pmarket::output::uncertainty::write_study(
            sink,
            scenario,
            result,
            manifest.clone(),
            samples,
            figures,
        )
    })?;
    print!(
        "{}",
        p2pmarket::output::uncertainty::report_markdown(result, samples)
    );
    Ok(files.len())
}

/// `p2pmarket finalize DIR` of a sharded uncertainty study: the study's outputs, written
/// into `DIR` beside its parts (whose files it never touches).
fn finalize_study(dir: &Path, figures: &p2pmarket::output::FigureOptions) -> Result<(), Failure> {
    let start = std::time::Instant::now();
    let sealed = p2pmarket::uncertainty::shard::finalize(dir)?;
    let manifest = study_manifest(
        &sealed.result,
        sealed.samples,
        sealed.scenario.uncertainty.seed,
        serde_json::json!({
            "precision": sealed.precision,
            "shards": sealed.shards,
            "shard_build": sealed.build,
            "adapters": sealed.adapters,
            "finalize_s": start.elapsed().as_secs_f64(),
        }),
    );
    // The directory holds the study's parts and manifests, which are not a run's files:
    // they are written beside, never replaced.
    let options = p2pmarket::output::RunOutputOptions {
        force: true,
        writer: p2pmarket::output::OutputWriter::Uncertainty,
    };
    let files = write_study_dir(
        dir,
        options,
        &sealed.scenario,
        &sealed.result,
        manifest,
        sealed.samples,
        figures,
    )?;
    println!(
        "\nsealed the study from {} shards, computed on {}; wrote {files} files to {} in {:.1} s",
        sealed.shards,
        sealed.adapters.join(", "),
        dir.display(),
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
        "sweep {} is valid: {} runs ({} per grid point) in {} parts ({}) over {} pcc bus(es) \
         {:?}; it would build {}",
        path.display(),
        plan.total_runs(),
        plan.samples(),
        plan.parts().len(),
        if plan.has_run_hours() {
            "runs and run_hours"
        } else {
            "runs only: run_hours = false"
        },
        buses.len(),
        buses,
        match plan.load_table_spec() {
            Some(((lo, hi), tol)) => format!(
                "one load table per pcc bus over load scales [{lo}, {hi}] (table_tol_mw {})",
                p2pmarket::error::compact(tol)
            ),
            None => format!("{} smart-grid curve set(s)", plan.curve_sets()),
        }
    );
    Ok(())
}

/// Says on stderr which of `rci`'s stop tolerances an f32 kernel cannot meet (`what`
/// names where they come from), and nothing when it can meet them all.
fn f32_note(what: &str, rci: &p2pmarket::rci::RciSettings) {
    if let Some(note) = rci.f32_note(what) {
        eprintln!("note: {note}");
    }
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
    // Notes already said while the sweep ran, not repeated at its end.
    let mut said = Vec::new();
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
        SweepEvent::Notice(note) => {
            bar.suspend(|| eprintln!("note: {note}"));
            said.push(note);
        }
    })
    .map_err(|e| device_failure(e, options.adapter.as_deref()))?;
    bar.finish_and_clear();
    for n in report.notices.iter().filter(|n| !said.contains(n)) {
        eprintln!("note: {n}");
    }
    let device = report
        .adapter
        .as_ref()
        .map_or(idle_device(report.parts_total), |a| {
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
    if report.parts_reduced_on_device > 0 {
        println!(
            "{} parts reduced and hashed on the device (one summary and one settlement head \
             read back per run)",
            report.parts_reduced_on_device
        );
    }
    if let Some(o) = &report.oracle {
        println!(
            "ledger oracle: {} of {} sampled defended runs agree with their ledger replay; {} of {} forged copies rejected; {} twins replayed, {} false alarms",
            o.agreements,
            o.sample.len(),
            o.forged_rejected,
            o.forged_submitted,
            o.twins_replayed,
            o.false_alarms.len()
        );
    }
    if let Some(m) = &report.manifest {
        println!("manifest: {}", m.display());
    }
    if let (Some(s), Some(m)) = (report.shard, &report.shard_manifest) {
        println!(
            "shard {s}: {} (seal the sweep with `p2pmarket finalize` once every shard is done)",
            m.display()
        );
    }
    Ok(())
}

/// What a sweep or study task that computed nothing ran on: `parts` is how many parts it
/// had (none: a shard the plan gave no part, as when there are more shards than parts).
fn idle_device(parts: usize) -> String {
    if parts == 0 {
        "none (no part of the plan falls to this shard)".to_string()
    } else {
        "none (every part was already done)".to_string()
    }
}

/// The shard of a `sweep`: `--shard K/N`, else the scheduler's array-task environment.
fn sweep_shard(flag: Option<&str>) -> Result<Option<p2pmarket::sweep::Shard>, Failure> {
    Ok(match flag {
        Some(text) => Some(p2pmarket::sweep::Shard::parse(text)?),
        None => p2pmarket::sweep::Shard::from_env(&|k| std::env::var(k).ok())?,
    })
}

/// `p2pmarket finalize DIR`: seals a sharded sweep, or a sharded uncertainty study.
fn finalize(dir: &Path, figures: &p2pmarket::output::FigureOptions) -> Result<(), Failure> {
    if p2pmarket::uncertainty::shard::is_study_dir(dir) {
        return finalize_study(dir, figures);
    }
    // Named as the argument it is (DIR, not the tasks' --out), for both kinds.
    if !dir.join(p2pmarket::sweep::manifest::SPEC_NAME).is_file() {
        return Err(Failure::BadInput(Error::invalid(
            "DIR",
            dir.display(),
            format!(
                "the directory of a sharded sweep (holding {}) or of a sharded uncertainty \
                 study ({}), where its tasks ran; nothing was written",
                p2pmarket::sweep::manifest::SPEC_NAME,
                p2pmarket::uncertainty::shard::SPEC_NAME
            ),
        )));
    }
    let report = p2pmarket::sweep::finalize(dir)?;
    for n in &report.notices {
        eprintln!("note: {n}");
    }
    let adapters: Vec<String> = report
        .adapters
        .iter()
        .map(|a| format!("{} ({})", a.name, a.backend))
        .collect();
    println!(
        "sealed {} runs in {} parts from {} shards, computed on {}",
        report.runs,
        report.parts,
        report.shards,
        adapters.join(", ")
    );
    if let Some(o) = &report.oracle {
        println!(
            "ledger oracle: {} of {} sampled defended runs agree with their ledger replay",
            o.agreements,
            o.sample.len()
        );
    }
    println!("manifest: {}", report.manifest.display());
    Ok(())
}

/// Reads a finished attack sweep and publishes its heat maps into `out`.
fn attack_figures(
    sweep: &Path,
    out: &Path,
    force: bool,
    figures: &p2pmarket::output::FigureOptions,
) -> Result<(), Failure> {
    use p2pmarket::output::attack_figures::{read_attack_rows, write_attack_figures};
    let options = p2pmarket::output::RunOutputOptions {
        force,
        writer: p2pmarket::output::OutputWriter::AttackFigures,
    };
    p2pmarket::output::check_run_out(out, options)?;
    let rows = read_attack_rows(sweep)?;
    let files = p2pmarket::output::publish_dir_with(out, options, &mut say_waiting, &mut |sink| {
        write_attack_figures(sink, &rows, figures)
    })?;
    println!(
        "{} attack runs: wrote {} figure files to {}",
        rows.len(),
        files.len(),
        out.display()
    );
    Ok(())
}

fn bench(
    config: Option<&Path>,
    backend: BackendChoice,
    sizes: &[usize],
    adapter: Option<&str>,
    workgroup_size: u32,
    max_seconds: f64,
    summaries: bool,
) -> Result<(), Failure> {
    let sizes_allowed = p2pmarket::engine::gpu::WORKGROUP_SIZES;
    if !sizes_allowed.contains(&workgroup_size) {
        return Err(Failure::BadInput(Error::invalid(
            "--workgroup-size",
            workgroup_size,
            format!("one of {sizes_allowed:?}"),
        )));
    }
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
                let mut precisions = vec![Precision::F32];
                if ctx.supports_f64() {
                    precisions.push(Precision::F64);
                }
                backends.extend(precisions.iter().map(|&p| BenchBackend::Gpu(p)));
                if summaries {
                    backends.extend(precisions.iter().map(|&p| BenchBackend::GpuSummaries(p)));
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
    // Progress on stderr: a line per size as it starts and ends (logs keep them), and a
    // bar of the streamed runs on a terminal.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {elapsed_precise}")
            .map_err(|e| Failure::Other(e.into()))?,
    );
    let report = run_bench(
        &market,
        sizes,
        &backends,
        adapter,
        workgroup_size,
        max_seconds,
        &mut |event| {
            use p2pmarket::engine::bench::BenchProgress;
            match event {
                BenchProgress::Timing { backend, runs } => {
                    bar.suspend(|| eprintln!("bench: timing {backend} at {runs} runs"));
                    bar.set_length(runs as u64);
                    bar.set_position(0);
                }
                BenchProgress::Runs(n) => bar.set_position(n as u64),
                BenchProgress::Done(row) => bar.suspend(|| match &row.skipped {
                    Some(why) => {
                        eprintln!("bench: {} at {} runs skipped: {why}", row.backend, row.runs)
                    }
                    None => eprintln!(
                        "bench: {} at {} runs: {:.3} s, {:.0} runs/s",
                        row.backend, row.runs, row.seconds, row.runs_per_s
                    ),
                }),
            }
        },
    )?;
    bar.finish_and_clear();
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
    let unconverged = day.hours.len() - s.converged_hours;
    if unconverged > 0 {
        println!(
            "  (with {unconverged} hour{} that did not converge, at the iterates where {} \
             stopped: not a market outcome)",
            if unconverged == 1 { "" } else { "s" },
            if unconverged == 1 { "it" } else { "they" }
        );
    }
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
    if let Some(a) = &s.attack {
        print_attack_report(day, a);
    }
}

/// The attacked hours against their attack-free negotiations.
fn print_attack_report(day: &DayResult, a: &market::AttackSummary) {
    let defence = match a.defence {
        p2pmarket::attack::Defence::Undefended => "undefended",
        p2pmarket::attack::Defence::Defended => "defended by the ledger",
    };
    println!(
        "
attacks ({defence}):"
    );
    println!(
        "hour  conv  iter  free_conv  free_iter  tampered  rejected   price_bias  money_moved_$/h  deviation"
    );
    for h in day.hours.iter() {
        let Some(f) = &h.attack_free else { continue };
        let yes = |b: bool| if b { "yes" } else { "NO" };
        println!(
            "{:>4} {:>5} {:>5} {:>10} {:>10} {:>9} {:>9} {:>12.4e} {:>16.4e} {:>10.3e}",
            h.hour,
            yes(h.p2p.outcome.converged),
            h.p2p.outcome.iterations,
            yes(f.converged),
            f.iterations,
            h.p2p.outcome.tampered,
            h.p2p.outcome.rejected,
            h.price_bias(),
            h.money_moved(),
            h.attack_deviation(),
        );
    }
    println!(
        "attacked hours converged     {}/{} (attack-free {}/{})",
        a.converged_attacked_hours,
        a.attacked_hours.len(),
        a.converged_attack_free_hours,
        a.attacked_hours.len()
    );
    println!(
        "messages altered / rejected  {} / {}",
        a.tampered, a.rejected
    );
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
            ledger,
            ledger_faults,
            ledger_seed,
            figures,
        } => figure_options(figures).and_then(|figures| {
            run(&RunPlan {
                config: config.as_deref(),
                out,
                force: *force,
                backend: (*backend).into(),
                precision: (*precision).into(),
                adapter: adapter.as_deref(),
                ledger: ledger.then_some(p2pmarket::ledger::RecordOptions {
                    seed: *ledger_seed,
                    faults: *ledger_faults,
                    ..Default::default()
                }),
                figures,
            })
        }),
        Command::Verify { path, anchor } => verify(path, anchor.as_deref()),
        Command::Sweep {
            config,
            out,
            force,
            backend,
            precision,
            adapter,
            quiet,
            shard,
        } => sweep_shard(shard.as_deref()).and_then(|shard| {
            sweep(
                config,
                out,
                p2pmarket::sweep::SweepOptions {
                    backend: (*backend).into(),
                    precision: (*precision).into(),
                    adapter: adapter.clone(),
                    max_parts: None,
                    force: *force,
                    shard,
                },
                *quiet,
            )
        }),
        Command::Finalize { dir, figures } => {
            figure_options(figures).and_then(|figures| finalize(dir, &figures))
        }
        Command::Bench {
            config,
            backend,
            sizes,
            adapter,
            max_seconds,
            summaries,
            workgroup_size,
        } => bench(
            config.as_deref(),
            (*backend).into(),
            sizes,
            adapter.as_deref(),
            *workgroup_size,
            *max_seconds,
            *summaries,
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
            shard,
            figures,
        } => figure_options(figures).and_then(|figures| {
            uncertainty(&UncertaintyPlan {
                shard: sweep_shard(shard.as_deref())?,
                config: config.as_deref(),
                methods: methods_of(method),
                samples: *samples,
                out,
                force: *force,
                backend: (*backend).into(),
                precision: (*precision).into(),
                adapter: adapter.as_deref(),
                figures,
            })
        }),
        Command::AttackFigures {
            sweep,
            out,
            force,
            figures,
        } => {
            figure_options(figures).and_then(|figures| attack_figures(sweep, out, *force, &figures))
        }
        Command::Completions { shell } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            print!("{}", p2pmarket::cli_docs::completions(&cmd, *shell));
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let (commit, _) = p2pmarket::sweep::manifest::git_commit();
            let short: String = commit.chars().take(12).collect();
            print!(
                "{}",
                p2pmarket::cli_docs::man_page(&cmd, &format!("commit {short}"))
            );
            Ok(())
        }
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
        Err(Failure::Tampered(code, message)) => {
            eprintln!("INVALID: {message}");
            ExitCode::from(code)
        }
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    /// A batch size is a count (`input::parse_count`, tested there) that fits a `usize`.
    #[test]
    fn sizes_are_counts() {
        assert_eq!(parse_size("1e4"), Ok(10_000));
        assert_eq!(parse_size("2.5e5"), Ok(250_000));
        assert!(parse_size("1.5").is_err());
    }
}
