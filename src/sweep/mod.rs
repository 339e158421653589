//! Parameter sweeps: many market days over a grid of settings and random draws, evaluated
//! part by part on the batch engine and written as hive-partitioned Parquet datasets.
//!
//! - [`spec`]: the sweep file (TOML) and its validation;
//! - [`plan`]: the deterministic run list and each run's ChaCha stream;
//! - [`tables`]: the `runs` and `run_hours` schemas and tables;
//! - [`manifest`]: `manifest.json`, sha256 of every file, the source commit.
//!
//! Output layout of [`run_sweep`] in `out`:
//! ```text
//! sweep.json                                   the parsed sweep (its identity)
//! runs/pcc_bus={b}/part-{k:05}.parquet         one row per run
//! run_hours/pcc_bus={b}/part-{k:05}.parquet    one row per run and hour
//! manifest.json                                written last, when every part exists
//! ```
//! Every file appears atomically (a hidden staging name that dataset readers skip, then a
//! rename), so a part whose two files exist is complete: a restarted sweep skips it and ends with the same bytes as an
//! uninterrupted one (the CPU backend is bit-reproducible whatever the thread count).

pub mod manifest;
pub mod plan;
pub mod spec;
pub mod tables;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use manifest::{MANIFEST_NAME, Manifest, ManifestFile, SPEC_NAME};
pub use plan::{PartPlan, PlannedRun, RunValues, SweepPlan};
pub use spec::{GridParam, IntParam, Parameters, RciParameters, RealParam, SweepSpec};
pub use tables::{run_hours_schema, runs_schema};

use crate::engine::{AdapterInfo, BackendChoice, Batch, GpuContext, Precision, run_batch};
use crate::error::{Error, Result};
use crate::output::write_parquet;

/// How a sweep is executed (none of these change what a run computes on the CPU).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOptions {
    /// Backend of every part.
    pub backend: BackendChoice,
    /// Precision of the GPU kernel (the CPU backend is always f64).
    pub precision: Precision,
    /// GPU adapter to pick by (case-insensitive) name substring; `None`: the best one.
    pub adapter: Option<String>,
    /// Stop after computing this many parts (skipped parts do not count); `None`: all.
    /// Simulates a killed sweep in tests.
    pub max_parts: Option<usize>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            backend: BackendChoice::Auto,
            precision: Precision::F64,
            adapter: None,
            max_parts: None,
        }
    }
}

/// Reported after every part, written or skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The part just handled.
    pub part: PartPlan,
    /// The part was already complete on disk (a resumed sweep).
    pub skipped: bool,
    /// Parts handled so far, including this one.
    pub parts_done: usize,
    /// Parts in the sweep.
    pub parts_total: usize,
    /// Runs in the parts handled so far.
    pub runs_done: u64,
    /// Runs in the sweep.
    pub runs_total: u64,
    /// Seconds since the sweep started.
    pub elapsed_s: f64,
}

/// What [`run_sweep`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    /// Runs in the sweep.
    pub runs: u64,
    /// Runs computed by this invocation.
    pub runs_computed: u64,
    /// Parts in the sweep.
    pub parts_total: usize,
    /// Parts computed and written by this invocation.
    pub parts_written: usize,
    /// Parts found complete on disk and skipped.
    pub parts_skipped: usize,
    /// Every part exists and `manifest.json` was written (false after `max_parts`).
    pub complete: bool,
    /// The manifest's path, when complete.
    pub manifest: Option<PathBuf>,
    /// Notices for the user, e.g. a GPU fallback or mixed engines.
    pub notices: Vec<String>,
    /// The device of this invocation, when it computed any part.
    pub adapter: Option<AdapterInfo>,
    /// Wall time, s.
    pub wall_s: f64,
}

/// The engine tag written into each file: what computed it, at which precision.
fn engine_tag(adapter: &AdapterInfo, precision: Precision) -> String {
    match (adapter.backend.as_str(), precision) {
        ("cpu", _) => "cpu-f64".into(),
        (_, Precision::F32) => "gpu-f32".into(),
        (_, Precision::F64) => "gpu-f64".into(),
    }
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |e| Error::io(context.clone(), e)
}

/// Writes `sweep.json`, or checks that the one in `out` is this sweep's: resuming into a
/// directory of another sweep would mix two datasets.
fn claim_output_dir(out: &Path, spec_json: &str) -> Result<()> {
    let path = out.join(SPEC_NAME);
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == spec_json => Ok(()),
        Ok(_) => Err(Error::invalid(
            "out",
            out.display(),
            format!(
                "a new directory, or one holding this same sweep (its {SPEC_NAME} describes \
                 a different sweep: seed, runs_per_part, samples, base or parameters differ)"
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            manifest::write_atomic(out, SPEC_NAME, spec_json.as_bytes())
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Removes staging files a killed sweep left in this sweep's partition directories (only
/// the hidden `.part-*` names [`write_part`] stages under, never anything else).
fn remove_stale_staging(out: &Path, buses: &[usize]) -> Result<()> {
    for table in ["runs", "run_hours"] {
        for b in buses {
            let dir = out.join(table).join(format!("pcc_bus={b}"));
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err("listing", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".part-") {
                    std::fs::remove_file(entry.path())
                        .map_err(io_err("removing", &entry.path()))?;
                }
            }
        }
    }
    Ok(())
}

/// Writes a Parquet file atomically under a name that dataset readers skip until it is
/// complete: [`write_parquet`] stages `.{name}.tmp` and renames it to `.{name}` (hidden:
/// pyarrow and most readers ignore names starting with `.`), then `.{name}` is renamed to
/// `name`. A reader listing the dataset while a sweep runs never meets a partial file.
fn write_part_file(path: &Path, table: &arrow::record_batch::RecordBatch) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Output {
            context: path.display().to_string(),
            message: "not a file path".into(),
        });
    };
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let hidden = dir.join(format!(".{}", name.to_string_lossy()));
    write_parquet(&hidden, table)?;
    std::fs::rename(&hidden, path).map_err(|e| {
        // Best effort: the rename error is the one worth reporting.
        let _ = std::fs::remove_file(&hidden);
        Error::io(format!("renaming {} into place", hidden.display()), e)
    })
}

/// Checks a complete part found on disk: its row counts must be the plan's (a mismatch
/// means files from something else, never silently kept).
fn verify_existing(out: &Path, part: &PartPlan) -> Result<()> {
    for (rel, rows) in [
        (part.runs_path(), part.runs as u64),
        (
            part.run_hours_path(),
            part.runs as u64 * crate::microgrid::HOURS as u64,
        ),
    ] {
        let (found, _) = manifest::parquet_footer(&out.join(&rel))?;
        if found != rows {
            return Err(Error::Output {
                context: out.join(&rel).display().to_string(),
                message: format!(
                    "holds {found} rows where this sweep's part has {rows}; remove the file \
                     (or the whole directory) to recompute it"
                ),
            });
        }
    }
    Ok(())
}

/// The backend state of one invocation: the GPU context is created on the first part that
/// needs computing (a fully resumed sweep touches no device).
struct Backend {
    choice: BackendChoice,
    precision: Precision,
    adapter: Option<String>,
    gpu: Option<GpuContext>,
    started: bool,
    /// Smart-grid curve sets built so far, per PCC bus: each load scale is built once per
    /// sweep, not once per part.
    curves: std::collections::HashMap<usize, crate::engine::CurveCache>,
}

impl Backend {
    fn ensure(&mut self, notices: &mut Vec<String>) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        match self.choice {
            BackendChoice::Cpu => {}
            BackendChoice::Gpu => self.gpu = Some(GpuContext::new(self.adapter.as_deref())?),
            // Decided once here rather than per part by `run_batch`, which would retry the
            // adapter search for every part.
            BackendChoice::Auto => match GpuContext::new(self.adapter.as_deref()) {
                Ok(ctx) => self.gpu = Some(ctx),
                Err(e) => {
                    notices.push(format!(
                        "no GPU adapter found ({e}); falling back to the rayon CPU backend"
                    ));
                    self.choice = BackendChoice::Cpu;
                }
            },
        }
        Ok(())
    }
}

/// Runs (or resumes) a sweep into `out`, calling `progress` after every part. Parts already
/// complete on disk are skipped; `manifest.json` is written once every part exists.
pub fn run_sweep(
    spec: &SweepSpec,
    out: &Path,
    options: &SweepOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<SweepReport> {
    let start = Instant::now();
    let plan = spec.plan()?;
    let spec_json = serde_json::to_string_pretty(spec).map_err(|e| Error::Output {
        context: SPEC_NAME.into(),
        message: e.to_string(),
    })?;
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    claim_output_dir(out, &spec_json)?;
    remove_stale_staging(out, &plan.pcc_buses())?;

    let parts = plan.parts();
    let mut notices = Vec::new();
    if let Some(RealParam {
        uniform: Some(_), ..
    }) = &spec.parameters.load_scale
    {
        notices.push(
            "parameters.load_scale is drawn uniformly: every run needs its own network-exact \
             smart-grid offer curve, by far the costliest part of a batch; a grid of \
             load_scale values is much faster"
                .to_string(),
        );
    }
    let mut report = SweepReport {
        runs: plan.total_runs(),
        runs_computed: 0,
        parts_total: parts.len(),
        parts_written: 0,
        parts_skipped: 0,
        complete: false,
        manifest: None,
        notices,
        adapter: None,
        wall_s: 0.0,
    };
    let mut backend = Backend {
        choice: options.backend,
        precision: options.precision,
        adapter: options.adapter.clone(),
        gpu: None,
        started: false,
        curves: Default::default(),
    };
    let mut runs_done = 0u64;
    for (done, part) in parts.iter().enumerate() {
        let runs_file = out.join(part.runs_path());
        let hours_file = out.join(part.run_hours_path());
        let skipped = runs_file.is_file() && hours_file.is_file();
        if skipped {
            verify_existing(out, part)?;
            report.parts_skipped += 1;
        } else {
            if options.max_parts.is_some_and(|m| report.parts_written >= m) {
                report.wall_s = start.elapsed().as_secs_f64();
                return Ok(report);
            }
            backend.ensure(&mut report.notices)?;
            write_part(&plan, part, out, &mut backend, &mut report)?;
        }
        runs_done += part.runs as u64;
        progress(Progress {
            part: *part,
            skipped,
            parts_done: done + 1,
            parts_total: parts.len(),
            runs_done,
            runs_total: plan.total_runs(),
            elapsed_s: start.elapsed().as_secs_f64(),
        });
    }
    let manifest = build_manifest(spec, &plan, &parts, out, &spec_json, &report)?;
    if manifest.engines.len() > 1 {
        report.notices.push(format!(
            "the parts were computed by different engines ({}); results of a resumed sweep \
             are only reproducible on one engine",
            manifest.engines.join(", ")
        ));
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Output {
        context: MANIFEST_NAME.into(),
        message: e.to_string(),
    })?;
    manifest::write_atomic(out, MANIFEST_NAME, &json)?;
    report.complete = true;
    report.manifest = Some(out.join(MANIFEST_NAME));
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Computes one part and writes its two files (`runs` first; the part counts as complete
/// only once `run_hours` is renamed into place too).
fn write_part(
    plan: &SweepPlan,
    part: &PartPlan,
    out: &Path,
    backend: &mut Backend,
    report: &mut SweepReport,
) -> Result<()> {
    let runs: Vec<PlannedRun> = (part.first_run..part.first_run + part.runs as u64)
        .map(|i| plan.run(i))
        .collect();
    let specs: Vec<_> = runs.iter().map(PlannedRun::run_spec).collect();
    let market = plan.market(part.pcc_bus).ok_or_else(|| Error::Output {
        context: "sweep plan".into(),
        message: format!("no market for pcc_bus {}", part.pcc_bus),
    })?;
    let cache = backend.curves.entry(part.pcc_bus).or_default();
    let batch = Batch::from_market_cached(market, &specs, cache)?;
    let outputs = run_batch(
        &batch,
        backend.choice,
        backend.precision,
        backend.gpu.as_ref(),
    )?;
    if let Some(n) = &outputs.notice
        && !report.notices.contains(n)
    {
        report.notices.push(n.clone());
    }
    let engine = engine_tag(&outputs.adapter, backend.precision);
    let part_no =
        u32::try_from(part.index).map_err(|_| Error::invalid("part", part.index, "< 2^32"))?;
    let runs_table = tables::runs_table(part_no, &runs, &outputs, &engine)?;
    let hours_table = tables::run_hours_table(&runs, &outputs, &engine)?;
    for (rel, table) in [
        (part.runs_path(), &runs_table),
        (part.run_hours_path(), &hours_table),
    ] {
        write_part_file(&out.join(rel), table)?;
    }
    report.parts_written += 1;
    report.runs_computed += part.runs as u64;
    report.adapter = Some(outputs.adapter);
    Ok(())
}

/// The manifest of a complete sweep: every file hashed, sorted by path.
fn build_manifest(
    spec: &SweepSpec,
    plan: &SweepPlan,
    parts: &[PartPlan],
    out: &Path,
    spec_json: &str,
    report: &SweepReport,
) -> Result<Manifest> {
    let mut paths: Vec<String> = vec![SPEC_NAME.to_string()];
    for p in parts {
        paths.push(p.runs_path());
        paths.push(p.run_hours_path());
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    let mut engines = std::collections::BTreeSet::new();
    for rel in paths {
        let path = out.join(&rel);
        let (sha256, bytes) = manifest::sha256_file(&path)?;
        let rows = if rel.ends_with(".parquet") {
            let (rows, engine) = manifest::parquet_footer(&path)?;
            engines.extend(engine);
            rows
        } else {
            0
        };
        files.push(ManifestFile {
            path: rel,
            rows,
            bytes,
            sha256,
        });
    }
    let (git_commit, git_dirty) = manifest::git_commit();
    let sweep = serde_json::from_str(spec_json).map_err(|e| Error::Output {
        context: MANIFEST_NAME.into(),
        message: e.to_string(),
    })?;
    Ok(Manifest {
        p2pmarket_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit,
        git_dirty,
        sweep_file: spec.source.display().to_string(),
        sweep_text: spec.text.clone(),
        sweep,
        seed: spec.seed,
        total_runs: plan.total_runs(),
        runs_per_part: spec.runs_per_part,
        pcc_buses: plan.pcc_buses(),
        parts: parts.len(),
        engines: engines.into_iter().collect(),
        adapter: report.adapter.as_ref().map(Into::into),
        files,
    })
}
