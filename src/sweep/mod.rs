//! Parameter sweeps: many market days over a grid of settings and random draws, evaluated
//! part by part on the batch engine and written as hive-partitioned Parquet datasets.
//!
//! - [`spec`]: the sweep file (TOML) and its validation;
//! - [`plan`]: the deterministic run list and each run's ChaCha stream;
//! - [`tables`]: the `runs` and `run_hours` schemas and tables;
//! - [`manifest`]: `manifest.json`, sha256 of every file, the source commit, each `runs`
//!   part's Merkle root and the signature over them;
//! - [`verify`]: [`verify_sweep`], which re-checks all of that from the files.
//!
//! An attack sweep (any `attack.*` parameter, see [`spec`]) gives every run one
//! false-data injection on one hour; its `runs` table carries the attack columns of
//! [`attack_runs_schema`] after the usual ones: the attack's parameters, then the attacked
//! hour's outcome against the run's attack-free twin (the same values without the attack,
//! negotiated once per distinct set of those values on the same backend). A sweep without
//! attacks writes exactly what it always did. Before its manifest, an attack sweep runs
//! its ledger [`oracle`]: a seeded sample of its defended runs (`ledger_sample`, default
//! 100) replayed through the real ledger and compared with the published outcomes; any
//! disagreement fails the sweep (no manifest, an error naming the run), and the manifest's
//! `ledger_oracle` lists the sample, the agreements and the false alarms.
//!
//! Output layout of [`run_sweep`] in `out`:
//! ```text
//! sweep.json                                   the parsed sweep (its identity)
//! runs/pcc_bus={b}/part-{k:05}.parquet         one row per run
//! run_hours/pcc_bus={b}/part-{k:05}.parquet    one row per run and hour (not with
//!                                              `run_hours = false`)
//! manifest.json                                written last, when every part exists
//! ```
//! Every file appears atomically (a hidden staging name unique to the writing process, that
//! dataset readers skip, then a rename), so a part whose two files exist is complete: a
//! restarted sweep verifies and skips it and ends with the same bytes as an uninterrupted
//! one (the CPU backend is bit-reproducible whatever the thread count).
//!
//! Several processes may run the same sweep into one directory at once. Each holds a shared
//! lock on `out/.p2pmarket.lock` while it works (claiming the directory, or giving up a
//! claim, takes it exclusively), and an exclusive lock on `runs/pcc_bus={b}/.part-{k:05}.lock`
//! while it checks or writes part `k`. A part another process is writing is left for later
//! and then waited for, so the processes share the parts; staging files are removed only
//! by the holder of their part's lock, so never under a live writer.

pub mod manifest;
pub mod oracle;
pub mod plan;
pub mod shard;
pub mod spec;
pub mod tables;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

pub use manifest::{
    MANIFEST_NAME, Manifest, ManifestAdapter, ManifestFile, ManifestIntegrity, SPEC_NAME,
};
pub use plan::{PartPlan, PlannedRun, RunValues, SweepPlan, TwinKey};
pub use shard::{FinalizeReport, Shard, ShardManifest, finalize};
pub use spec::{
    AttackParameters, GridParam, IntParam, Parameters, RciParameters, RealParam, RunAttack,
    SweepSpec,
};
pub use tables::{
    AttackFigures, attack_runs_schema, run_hours_schema, runs_schema, runs_schema_for,
};
pub use verify::{SweepVerified, SweepVerifyError, SweepVerifyErrorKind, verify_sweep};

use crate::engine::{AdapterInfo, BackendChoice, GpuContext, HourRecord, Precision, run_batch};
use crate::error::{Error, Result};
use crate::output::lock::{Lock, LockMode};
use crate::output::{
    LOCK_NAME, list, remove_file_if_present, remove_stale_tmp, resolve_out, write_atomic,
    write_parquet_via,
};

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
    /// Also write into a non-empty directory that holds no sweep. Its files are never
    /// deleted or overwritten: `runs/`, `run_hours/` or `manifest.json` there is refused.
    pub force: bool,
    /// Compute only this shard's parts (a task of a job array, see [`shard`]) and write
    /// its shard manifest instead of `manifest.json`; `None`: the whole sweep.
    pub shard: Option<Shard>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            backend: BackendChoice::Auto,
            precision: Precision::F64,
            adapter: None,
            max_parts: None,
            force: false,
            shard: None,
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
    /// Parts in the sweep (in this shard, when sharded).
    pub parts_total: usize,
    /// Runs in the parts handled so far.
    pub runs_done: u64,
    /// Runs in the sweep (in this shard, when sharded).
    pub runs_total: u64,
    /// Seconds since the sweep started.
    pub elapsed_s: f64,
}

/// What [`run_sweep`] reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepEvent {
    /// A part was handled (written, or found complete).
    Part(Progress),
    /// This process waits for another one that holds a lock it needs (said once per wait).
    Waiting(String),
    /// A note for the user as soon as it is known: why `Auto` fell back to the CPU
    /// backend, or which tolerances an f32 kernel cannot meet. It is also one of
    /// [`SweepReport::notices`].
    Notice(String),
}

/// What [`run_sweep`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepReport {
    /// Runs in the sweep (in this shard, when sharded).
    pub runs: u64,
    /// Runs computed by this invocation.
    pub runs_computed: u64,
    /// Parts in the sweep (in this shard, when sharded).
    pub parts_total: usize,
    /// Parts computed and written by this invocation.
    pub parts_written: usize,
    /// Parts found complete on disk and skipped.
    pub parts_skipped: usize,
    /// Every part exists and `manifest.json` was written, or, sharded, every part of the
    /// shard exists and its shard manifest was written (false after `max_parts`).
    pub complete: bool,
    /// The manifest's path, when complete (never when sharded: see [`finalize`]).
    pub manifest: Option<PathBuf>,
    /// The shard this invocation ran, when sharded.
    pub shard: Option<Shard>,
    /// Its shard manifest's path, when the shard is complete.
    pub shard_manifest: Option<PathBuf>,
    /// Notices for the user, e.g. a GPU fallback, mixed engines or a corrupt part recomputed.
    pub notices: Vec<String>,
    /// The device of this invocation, when it computed any part.
    pub adapter: Option<AdapterInfo>,
    /// An attack sweep's ledger oracle, when this invocation wrote the manifest.
    pub oracle: Option<oracle::OracleReport>,
    /// Attack-free twins computed by this invocation (an attack sweep computes one per
    /// distinct set of the other parameters, not one per run).
    pub twins_computed: u64,
    /// Parts written by this invocation whose runs were reduced and hashed on the device
    /// (a runs-only sweep on a GPU with f64: no hour record was read back).
    pub parts_reduced_on_device: usize,
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

/// Whether the sweep directory `out` holds any part file or a manifest (a claim that did
/// produce data, as opposed to a `sweep.json` alone).
fn holds_data(out: &Path) -> Result<bool> {
    if out.join(MANIFEST_NAME).exists() {
        return Ok(true);
    }
    for table in TABLES {
        let dir = out.join(table);
        if !dir.is_dir() {
            continue;
        }
        for partition in list(&dir)? {
            let sub = dir.join(&partition);
            if sub.is_dir()
                && list(&sub)?
                    .iter()
                    .any(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The two tables' directories, which a sweep owns in its output directory.
const TABLES: [&str; 2] = ["runs", "run_hours"];

/// What may be done with an output directory.
#[derive(Debug, PartialEq)]
enum DirUse {
    /// It holds this sweep: resume it.
    Join,
    /// Write `sweep.json` (a missing or empty directory, `--force`, or an abandoned claim
    /// of another sweep that produced no data).
    Claim,
}

/// Decides how `out` (resolved) may be used by the sweep `spec_json`; `shown` is the
/// directory as given. Refusals are [`Error::OutputDir`].
fn decide(out: &Path, shown: &Path, spec_json: &str, force: bool) -> Result<DirUse> {
    decide_looking(out, shown, spec_json, force, true)
}

/// [`decide`], looking at the directory once more (`again`) when `sweep.json` appears
/// between reading it and listing the directory.
fn decide_looking(
    out: &Path,
    shown: &Path,
    spec_json: &str,
    force: bool,
    again: bool,
) -> Result<DirUse> {
    let refuse = |reason: String| Error::OutputDir {
        path: shown.to_path_buf(),
        reason,
    };
    if !out.is_dir() {
        return Ok(DirUse::Claim);
    }
    let spec_path = out.join(SPEC_NAME);
    match std::fs::read(&spec_path) {
        Ok(existing) if existing == spec_json.as_bytes() => return Ok(DirUse::Join),
        // Not a sweep's: a file of the user's that merely has the name. Never replaced,
        // with or without --force.
        Ok(existing) if serde_json::from_slice::<SweepSpec>(&existing).is_err() => {
            return Err(refuse(format!(
                "it holds a {SPEC_NAME} that is not a p2pmarket sweep's (it does not read as \
                 one), which a sweep would replace; nothing was written. Move it away or \
                 choose another directory"
            )));
        }
        Ok(_) if holds_data(out)? => {
            return Err(refuse(format!(
                "it holds another sweep (its {SPEC_NAME} differs: seed, runs_per_part, samples, \
                 base or parameters); nothing was written. Use a new directory, or remove this \
                 one to replace that sweep"
            )));
        }
        // A claim that never produced a part: the sweep that made it failed or was killed.
        Ok(_) => return Ok(DirUse::Claim),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("reading {}", spec_path.display()), e)),
    }
    let transient = [
        crate::output::tmp_prefix(SPEC_NAME),
        crate::output::tmp_prefix(MANIFEST_NAME),
    ];
    let entries: Vec<String> = list(out)?
        .into_iter()
        .filter(|n| n != LOCK_NAME && !transient.iter().any(|t| n.starts_with(t.as_str())))
        .collect();
    if entries.is_empty() {
        return Ok(DirUse::Claim);
    }
    if again && entries.iter().any(|n| n == SPEC_NAME) {
        // It appeared after the read above said it was missing: another process claimed
        // the directory meanwhile (`run_sweep`'s early check holds no lock). Look once
        // more, rather than refuse a directory for holding "no sweep.json" beside its
        // sweep.json. (Once: a dangling link of that name reads as missing every time.)
        return decide_looking(out, shown, spec_json, force, false);
    }
    if !force {
        let shown_entries: Vec<&str> = entries.iter().take(5).map(String::as_str).collect();
        return Err(refuse(format!(
            "it is not empty ({}{}) and holds no sweep (no {SPEC_NAME}); nothing was written. \
             Choose a new or empty directory, or pass --force to write beside those files \
             (they are never deleted or overwritten)",
            shown_entries.join(", "),
            if entries.len() > 5 { ", ..." } else { "" }
        )));
    }
    // A `sweep.json` listed here did not read (a dangling link, say): not a sweep's.
    let clashes: Vec<&str> = [SPEC_NAME, MANIFEST_NAME, TABLES[0], TABLES[1]]
        .into_iter()
        .filter(|n| entries.iter().any(|e| e == n))
        .collect();
    if !clashes.is_empty() {
        return Err(refuse(format!(
            "it holds {} that p2pmarket did not write and a sweep would write into; nothing \
             was written. Move them away or choose another directory",
            clashes.join(", ")
        )));
    }
    Ok(DirUse::Claim)
}

/// This process's hold on a sweep directory.
struct Claim {
    /// Shared lock on [`LOCK_NAME`], held while the sweep works.
    lock: Option<Lock>,
    /// The directory did not exist before this process.
    created_out: bool,
    /// This process wrote `sweep.json`.
    created_spec: bool,
}

/// Takes `out` for the sweep `spec_json`: joins the same sweep, or writes `sweep.json`
/// into a directory [`decide`] allows, and returns holding the shared directory lock.
fn claim(
    out: &Path,
    shown: &Path,
    spec_json: &str,
    force: bool,
    events: &mut dyn FnMut(SweepEvent),
) -> Result<Claim> {
    let created_out = !out.exists();
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    let lock_path = out.join(LOCK_NAME);
    let mut wait = || {
        events(SweepEvent::Waiting(format!(
            "waiting for {}: another p2pmarket process is claiming it",
            shown.display()
        )))
    };
    let mut created_spec = false;
    let same = |out: &Path| std::fs::read(out.join(SPEC_NAME)).ok();
    loop {
        let shared = Lock::acquire(&lock_path, LockMode::Shared, &mut wait)?;
        let found = same(out);
        if found.as_deref() == Some(spec_json.as_bytes()) {
            return Ok(Claim {
                lock: Some(shared),
                created_out,
                created_spec,
            });
        }
        drop(shared);
        let exclusive = match found {
            // Another sweep's: only claimable when no process works on it.
            Some(_) => Lock::try_acquire(&lock_path, LockMode::Exclusive)?.ok_or_else(|| {
                Error::OutputDir {
                    path: shown.to_path_buf(),
                    reason: format!(
                        "it holds another sweep (its {SPEC_NAME} differs), which a process is \
                         running now; nothing was written. Use a new directory"
                    ),
                }
            })?,
            None => Lock::acquire(&lock_path, LockMode::Exclusive, &mut wait)?,
        };
        let mut exclusive = match decide(out, shown, spec_json, force) {
            Ok(DirUse::Join) => continue,
            Ok(DirUse::Claim) => exclusive,
            Err(e) => {
                exclusive.release_and_remove();
                if created_out {
                    // Best effort: only an empty directory is removed.
                    let _ = std::fs::remove_dir(out);
                }
                return Err(e);
            }
        };
        remove_stale_tmp(out, &[SPEC_NAME, MANIFEST_NAME])?;
        write_atomic(out, SPEC_NAME, spec_json.as_bytes())?;
        created_spec = true;
        // Not atomic (see `Lock::downgrade`): the loop re-checks sweep.json under it.
        exclusive.downgrade()?;
        if same(out).as_deref() == Some(spec_json.as_bytes()) {
            return Ok(Claim {
                lock: Some(exclusive),
                created_out,
                created_spec,
            });
        }
    }
}

/// Takes `out` for one shard of the sweep `spec_json`: `sweep.json` is created once by
/// whichever task comes first ([`shard::write_once`]) and compared by every other, which
/// refuses a different one; a shard never takes over another sweep's claim. Returns
/// holding the shared directory lock, like [`claim`].
fn claim_shard(
    out: &Path,
    shown: &Path,
    spec_json: &str,
    force: bool,
    tag: &str,
    events: &mut dyn FnMut(SweepEvent),
) -> Result<Claim> {
    let created_out = !out.exists();
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    let lock = Lock::acquire(&out.join(LOCK_NAME), LockMode::Shared, &mut || {
        events(SweepEvent::Waiting(format!(
            "waiting for {}: another p2pmarket process is claiming it",
            shown.display()
        )))
    })?;
    let mut claim = Claim {
        lock: Some(lock),
        created_out,
        created_spec: false,
    };
    let checked = (|| {
        if !out.join(SPEC_NAME).exists() {
            // What a first task may find beside it: other tasks' work in progress.
            let ours = [LOCK_NAME, TABLES[0], TABLES[1], shard::SHARDS_DIR];
            shard::check_first_task(out, shown, SPEC_NAME, &ours, &[MANIFEST_NAME], force)?;
        }
        claim.created_spec = shard::write_once(out, SPEC_NAME, spec_json.as_bytes())?;
        shard::check_spec(out, shown, spec_json)
    })();
    match checked {
        Ok(()) => Ok(claim),
        Err(e) => {
            // A refused task leaves nothing: the lock file when it was the last process
            // there, and the directory when it created it.
            claim.release(out, true, tag);
            Err(e)
        }
    }
}

impl Claim {
    /// Lets go of the directory. The last process out removes the lock file and the
    /// temporary files of dead processes; with `undo` (this process failed before writing a
    /// part), a claim that never produced data is removed too: `sweep.json` when this
    /// process wrote it, empty table directories, and `out` when this process created it.
    /// Only staging files carrying `tag` (this process's shard, or [`shard::UNSHARDED_TAG`])
    /// are removed: other shards' tasks, on other nodes of a shared filesystem, may be
    /// writing theirs.
    fn release(mut self, out: &Path, undo: bool, tag: &str) {
        drop(self.lock.take());
        let Ok(Some(exclusive)) = Lock::try_acquire(&out.join(LOCK_NAME), LockMode::Exclusive)
        else {
            return;
        };
        // Best effort throughout: the sweep's own result or error is what gets reported.
        let _ = remove_stale_tmp(out, &[SPEC_NAME, MANIFEST_NAME]);
        let own = format!(".parquet.{tag}.");
        for table in TABLES {
            let dir = out.join(table);
            for partition in list(&dir).unwrap_or_default() {
                let sub = dir.join(partition);
                for n in list(&sub).unwrap_or_default() {
                    if n.starts_with(".part-") && n.contains(&own) {
                        let _ = std::fs::remove_file(sub.join(n));
                    }
                }
            }
        }
        let undo = undo && !holds_data(out).unwrap_or(true);
        if undo {
            if self.created_spec {
                let _ = std::fs::remove_file(out.join(SPEC_NAME));
            }
            for table in TABLES {
                let dir = out.join(table);
                for partition in list(&dir).unwrap_or_default() {
                    let sub = dir.join(partition);
                    // Only an empty directory goes (this process's staging is gone above).
                    let _ = std::fs::remove_dir(&sub);
                }
                let _ = std::fs::remove_dir(&dir);
            }
            let _ = std::fs::remove_dir(out.join(shard::SHARDS_DIR));
        }
        exclusive.release_and_remove();
        if undo && self.created_out {
            let _ = std::fs::remove_dir(out);
        }
    }
}

/// Where part `part`'s lock lives: beside its `runs` file.
fn part_lock_path(out: &Path, part: &PartPlan) -> PathBuf {
    out.join(format!("runs/pcc_bus={}", part.pcc_bus))
        .join(format!(".part-{:05}.lock", part.index))
}

/// The state of a part on disk (checked under its lock).
enum PartState {
    /// Both files exist and verify.
    Complete,
    /// A file is missing: compute the part.
    Missing,
    /// A file exists but is not the part (truncated, corrupt, other rows): recompute it.
    Corrupt(String),
}

/// Verifies part `part` in `out` completely (see [`manifest::verify_part_file`]).
fn part_state(out: &Path, part: &PartPlan, attacks: bool) -> PartState {
    let mut files = vec![(part.runs_path(), part.runs as u64, runs_schema_for(attacks))];
    if part.run_hours {
        files.push((
            part.run_hours_path(),
            part.runs as u64 * crate::microgrid::HOURS as u64,
            run_hours_schema(),
        ));
    }
    if files.iter().any(|(rel, ..)| !out.join(rel).is_file()) {
        return PartState::Missing;
    }
    for (rel, rows, schema) in &files {
        if let Err(why) = manifest::verify_part_file(&out.join(rel), *rows, schema) {
            return PartState::Corrupt(format!("{rel}: {why}"));
        }
    }
    PartState::Complete
}

/// Removes the staging files of part `part` that a process with the staging tag `tag` left
/// (call it holding the part's lock: no live process then writes them). They are the
/// hidden names `.part-{k:05}.parquet.{tag}....` in the part's two partition directories;
/// another shard's (another tag) are never touched, whoever holds which lock.
fn remove_part_staging(out: &Path, part: &PartPlan, tag: &str) -> Result<()> {
    let prefix = format!(".part-{:05}.parquet.{tag}.", part.index);
    for rel in part.files() {
        let Some(dir) = out.join(rel).parent().map(Path::to_path_buf) else {
            continue;
        };
        for n in list(&dir)? {
            if n.starts_with(&prefix) {
                remove_file_if_present(&dir.join(n))?;
            }
        }
    }
    Ok(())
}

/// The backend state of one invocation: the GPU context is created before the output
/// directory is claimed when a device was named or `--backend gpu` asked for one (so that a
/// missing one writes nothing), else on the first part that needs computing (a fully
/// resumed sweep on `auto` touches no device).
struct Backend {
    choice: BackendChoice,
    precision: Precision,
    adapter: Option<String>,
    gpu: Option<GpuContext>,
    started: bool,
    /// Which of the sweep's tolerances an f32 kernel cannot meet, said once the backend
    /// opens on a GPU at f32 ([`crate::rci::RciSettings::f32_note`]).
    f32_note: Option<String>,
    /// Smart-grid curve sets built so far, per PCC bus: each load scale is built once per
    /// sweep, not once per part.
    curves: std::collections::HashMap<usize, crate::engine::CurveCache>,
    /// An attack sweep's attack-free twins computed so far, by their values: each one's
    /// hour records, once per sweep invocation.
    twins: std::collections::HashMap<TwinKey, Vec<HourRecord>>,
}

impl Backend {
    /// Whether the device must be found before anything is written: it was named, or the
    /// GPU backend has no fallback.
    fn explicit(&self) -> bool {
        self.choice == BackendChoice::Gpu || self.adapter.is_some()
    }

    /// Opens the backend once (see [`crate::engine::open_backend`]): `Auto` is decided
    /// here rather than per part by `run_batch`, which would retry the adapter search for
    /// every part. A named adapter that is missing is an error, as in `run`: the user asked
    /// for that device. The fallback's reason, and which tolerances an f32 kernel cannot
    /// meet, are said through `events` and kept in `notices`.
    fn ensure(
        &mut self,
        notices: &mut Vec<String>,
        events: &mut dyn FnMut(SweepEvent),
    ) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let opened =
            crate::engine::open_backend(self.choice, self.precision, self.adapter.as_deref())?;
        let f32_note = match opened.precision(self.precision) {
            Precision::F32 => self.f32_note.take(),
            Precision::F64 => None,
        };
        for note in opened.notice.into_iter().chain(f32_note) {
            events(SweepEvent::Notice(note.clone()));
            notices.push(note);
        }
        self.choice = opened.choice;
        self.gpu = opened.gpu;
        Ok(())
    }
}

/// The GPU that evaluates the sweep's parts (once [`Backend::ensure`] has decided `Auto`),
/// if it can also reduce and hash them: it has the f64 the settlement passes need.
fn device_reduction(backend: &Backend) -> Option<&GpuContext> {
    let ctx = backend.gpu.as_ref()?;
    ctx.supports_f64().then_some(ctx)
}

/// What handling one part came to.
enum PartOutcome {
    /// Found complete (and verified).
    Skipped,
    /// Computed and written by this process.
    Written,
    /// Another process holds its lock (it is writing or checking it).
    Busy,
    /// Not computed: `max_parts` was reached.
    Stopped,
}

/// One sweep invocation's working state.
struct Sweeper<'a> {
    plan: &'a SweepPlan,
    out: &'a Path,
    shown: &'a Path,
    options: &'a SweepOptions,
    backend: Backend,
    report: SweepReport,
    /// Tag of this process's staging files: its shard's, or [`shard::UNSHARDED_TAG`].
    tag: String,
}

impl Sweeper<'_> {
    /// Checks part `part` under its lock (waiting for it when `block`) and computes it when
    /// it is missing or corrupt.
    fn handle(
        &mut self,
        part: &PartPlan,
        block: bool,
        events: &mut dyn FnMut(SweepEvent),
    ) -> Result<PartOutcome> {
        for rel in part.files() {
            if let Some(dir) = self.out.join(rel).parent() {
                std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
            }
        }
        let lock_path = part_lock_path(self.out, part);
        let lock = if block {
            Lock::acquire(&lock_path, LockMode::Exclusive, &mut || {
                events(SweepEvent::Waiting(format!(
                    "waiting for part {} of pcc_bus={} in {}: another p2pmarket process is \
                     writing it",
                    part.index,
                    part.pcc_bus,
                    self.shown.display()
                )))
            })?
        } else {
            match Lock::try_acquire(&lock_path, LockMode::Exclusive)? {
                Some(lock) => lock,
                None => return Ok(PartOutcome::Busy),
            }
        };
        let result = self.handle_locked(part, events);
        lock.release_and_remove();
        result
    }

    fn handle_locked(
        &mut self,
        part: &PartPlan,
        events: &mut dyn FnMut(SweepEvent),
    ) -> Result<PartOutcome> {
        remove_part_staging(self.out, part, &self.tag)?;
        match part_state(self.out, part, self.plan.has_attacks()) {
            PartState::Complete => return Ok(PartOutcome::Skipped),
            PartState::Missing => {}
            PartState::Corrupt(why) => self.report.notices.push(format!(
                "part {} of pcc_bus={} was not a complete part ({why}); it is recomputed",
                part.index, part.pcc_bus
            )),
        }
        if self
            .options
            .max_parts
            .is_some_and(|m| self.report.parts_written >= m)
        {
            return Ok(PartOutcome::Stopped);
        }
        self.backend.ensure(&mut self.report.notices, events)?;
        // A manifest describes a complete dataset; this one no longer is until the end.
        remove_file_if_present(&self.out.join(MANIFEST_NAME))?;
        write_part(
            self.plan,
            part,
            self.out,
            &self.tag,
            &mut self.backend,
            &mut self.report,
        )?;
        Ok(PartOutcome::Written)
    }

    /// Handles every part: first those no other process holds, then waits for the rest.
    /// Returns false when `max_parts` stopped it.
    fn all_parts(
        &mut self,
        parts: &[PartPlan],
        start: Instant,
        events: &mut dyn FnMut(SweepEvent),
    ) -> Result<bool> {
        let mut runs_done = 0u64;
        let mut done = 0;
        let mut busy = Vec::new();
        for pass in [false, true] {
            let todo: Vec<PartPlan> = if pass {
                std::mem::take(&mut busy)
            } else {
                parts.to_vec()
            };
            for part in &todo {
                let skipped = match self.handle(part, pass, events)? {
                    PartOutcome::Busy => {
                        busy.push(*part);
                        continue;
                    }
                    PartOutcome::Stopped => return Ok(false),
                    PartOutcome::Skipped => true,
                    PartOutcome::Written => false,
                };
                if skipped {
                    self.report.parts_skipped += 1;
                }
                done += 1;
                runs_done += part.runs as u64;
                events(SweepEvent::Part(Progress {
                    part: *part,
                    skipped,
                    parts_done: done,
                    parts_total: parts.len(),
                    runs_done,
                    runs_total: self.report.runs,
                    elapsed_s: start.elapsed().as_secs_f64(),
                }));
            }
        }
        Ok(true)
    }
}

/// Runs (or resumes) a sweep into `out`, reporting every part, wait and note to `events`.
/// Parts already complete on disk are verified and skipped (a corrupt one is recomputed,
/// with a notice); `manifest.json` is written once every part exists.
///
/// `out` must be missing, empty, or hold this same sweep or another's abandoned claim (or,
/// with `options.force`, any directory without `runs/`, `run_hours/`, `manifest.json` and
/// a `sweep.json` that does not read as a sweep's); anything else is refused
/// with [`Error::OutputDir`] before anything is written. Everything that can be checked
/// (the plan, a named or required GPU) is checked before `out` is touched; when this
/// process fails before writing any part, it removes what it created.
pub fn run_sweep(
    spec: &SweepSpec,
    out: &Path,
    options: &SweepOptions,
    events: &mut dyn FnMut(SweepEvent),
) -> Result<SweepReport> {
    let start = Instant::now();
    let plan = spec.plan()?;
    let spec_json = serde_json::to_string_pretty(spec).map_err(|e| Error::Output {
        context: SPEC_NAME.into(),
        message: e.to_string(),
    })?;
    let shown = out;
    let out = &resolve_out(out)?;
    let tag = options
        .shard
        .map_or_else(|| shard::UNSHARDED_TAG.to_string(), |s| s.tag());
    match options.shard {
        None => {
            decide(out, shown, &spec_json, options.force)?;
        }
        Some(_) => shard::check_spec(out, shown, &spec_json)?,
    }
    let started_unix_s = shard::unix_now();

    let parts = match options.shard {
        None => plan.parts(),
        Some(s) => shard::parts_of(&plan.parts(), s),
    };
    let mut notices = Vec::new();
    if let Some(RealParam {
        uniform: Some(_),
        table_tol_mw: None,
        ..
    }) = &spec.parameters.load_scale
    {
        notices.push(
            "parameters.load_scale is drawn uniformly: every run needs its own network-exact \
             smart-grid offer curves (about 20 ms per run on RTS-24, 2 cores), by far the costliest \
             part of a batch; `table_tol_mw = 0.01` in parameters.load_scale answers them \
             from a load table built once, and a grid of load_scale values builds each \
             value's curves once"
                .to_string(),
        );
    }
    let mut backend = Backend {
        choice: options.backend,
        precision: options.precision,
        adapter: options.adapter.clone(),
        gpu: None,
        started: false,
        f32_note: spec.tightest_rci().f32_note("the sweep's smallest rci"),
        curves: Default::default(),
        twins: Default::default(),
    };
    if backend.explicit() {
        backend.ensure(&mut notices, events)?;
    }
    let mut sweeper = Sweeper {
        plan: &plan,
        out,
        shown,
        options,
        backend,
        tag: tag.clone(),
        report: SweepReport {
            runs: match options.shard {
                None => plan.total_runs(),
                Some(_) => parts.iter().map(|p| p.runs as u64).sum(),
            },
            runs_computed: 0,
            parts_total: parts.len(),
            parts_written: 0,
            parts_skipped: 0,
            complete: false,
            manifest: None,
            notices,
            adapter: None,
            twins_computed: 0,
            parts_reduced_on_device: 0,
            oracle: None,
            wall_s: 0.0,
            shard: options.shard,
            shard_manifest: None,
        },
    };
    let claim = match options.shard {
        None => claim(out, shown, &spec_json, options.force, events)?,
        Some(_) => claim_shard(out, shown, &spec_json, options.force, &tag, events)?,
    };
    let result = sweeper
        .all_parts(&parts, start, events)
        .and_then(|complete| {
            if !complete {
                return Ok(());
            }
            match options.shard {
                None => finish(spec, &plan, &parts, out, &spec_json, &mut sweeper.report),
                Some(s) => {
                    let report = &mut sweeper.report;
                    report.wall_s = start.elapsed().as_secs_f64();
                    let path = write_shard_manifest(
                        spec,
                        s,
                        &parts,
                        out,
                        &spec_json,
                        report,
                        started_unix_s,
                    )?;
                    report.shard_manifest = Some(path);
                    report.complete = true;
                    Ok(())
                }
            }
        });
    // A failed task that wrote nothing undoes its claim when it is the last process there
    // (`release` checks) and the directory holds no data. A shard's task also needs no
    // other shard's manifest there: a task that checked this sweep.json and finished
    // without a part (an empty shard) still counts on it.
    let undo = result.is_err()
        && sweeper.report.parts_written == 0
        && (options.shard.is_none() || !shard::holds_shard_manifest(out));
    claim.release(out, undo, &tag);
    result?;
    let mut report = sweeper.report;
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes shard `shard`'s manifest once all its parts exist; returns its path.
fn write_shard_manifest(
    spec: &SweepSpec,
    shard: Shard,
    parts: &[PartPlan],
    out: &Path,
    spec_json: &str,
    report: &SweepReport,
    started_unix_s: f64,
) -> Result<PathBuf> {
    // Another sweep's task must not have replaced the spec meanwhile.
    shard::check_spec(out, out, spec_json)?;
    let (files, engines, adapters) = shard::describe_parts(out, parts)?;
    let m = ShardManifest {
        task: shard::TaskRecord::now(
            shard,
            spec_json,
            started_unix_s,
            (report.parts_written, report.parts_skipped),
            report.runs,
        ),
        sweep_file: spec.source.display().to_string(),
        sweep_text: spec.text.clone(),
        engines,
        adapters,
        files,
    };
    let json = serde_json::to_vec_pretty(&m).map_err(|e| Error::Output {
        context: shard.manifest_path(),
        message: e.to_string(),
    })?;
    let dir = out.join(shard::SHARDS_DIR);
    std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    let name = format!("{}.json", shard.tag());
    shard::write_replace(&dir, &name, &json)?;
    Ok(dir.join(name))
}

/// The manifest of a complete sweep, signed, with an attack sweep's ledger oracle checked.
pub(crate) struct Sealed {
    /// The signed manifest.
    pub manifest: Manifest,
    /// Notices for the user (mixed engines).
    pub notices: Vec<String>,
}

/// Writes the manifest of a sweep whose parts all exist.
fn finish(
    spec: &SweepSpec,
    plan: &SweepPlan,
    parts: &[PartPlan],
    out: &Path,
    spec_json: &str,
    report: &mut SweepReport,
) -> Result<()> {
    let sealed = seal(spec, plan, parts, out, spec_json, &shard::Build::this())?;
    report.notices.extend(sealed.notices);
    report.oracle = sealed.manifest.ledger_oracle.clone();
    let json = serde_json::to_vec_pretty(&sealed.manifest).map_err(|e| Error::Output {
        context: MANIFEST_NAME.into(),
        message: e.to_string(),
    })?;
    write_atomic(out, MANIFEST_NAME, &json)?;
    report.complete = true;
    report.manifest = Some(out.join(MANIFEST_NAME));
    Ok(())
}

/// The signed manifest of a sweep whose parts all exist in `out`, computed by `build`:
/// every file hashed, an attack sweep's ledger oracle run (a disagreement is an error).
/// Written by [`finish`] (one process) and by [`finalize`] (a sharded sweep), so that both
/// describe the same parts the same way.
pub(crate) fn seal(
    spec: &SweepSpec,
    plan: &SweepPlan,
    parts: &[PartPlan],
    out: &Path,
    spec_json: &str,
    build: &shard::Build,
) -> Result<Sealed> {
    let mut notices = Vec::new();
    let mut manifest = build_manifest(spec, plan, parts, out, spec_json, build)?;
    if plan.has_attacks() {
        let n = spec.ledger_sample.unwrap_or(oracle::DEFAULT_LEDGER_SAMPLE);
        let sample = oracle::sample_runs(plan, n, spec.seed);
        let modelled = oracle::read_modelled(parts, out, &sample)?;
        let found = oracle::check(plan, &modelled)?;
        if let Some(first) = found.disagreements.first() {
            return Err(Error::Solver {
                problem: "ledger oracle".into(),
                message: format!(
                    "{} of {} sampled runs disagree with their ledger replay; run {}: {}. \
                     No manifest was written",
                    found.disagreements.len(),
                    found.sample.len(),
                    first.run,
                    first.what
                ),
            });
        }
        manifest.ledger_oracle = Some(found);
    }
    manifest::sign(&mut manifest).map_err(|message| Error::Output {
        context: MANIFEST_NAME.into(),
        message,
    })?;
    if manifest.engines.len() > 1 {
        notices.push(format!(
            "the parts were computed by different engines ({}); results of a resumed sweep \
             are only reproducible on one engine",
            manifest.engines.join(", ")
        ));
    }
    Ok(Sealed { manifest, notices })
}

/// `batch` with the record of the device that computed it in its schema metadata
/// ([`manifest::ADAPTER_KEY`]).
fn with_adapter(
    batch: arrow::record_batch::RecordBatch,
    adapter: &AdapterInfo,
) -> Result<arrow::record_batch::RecordBatch> {
    let record =
        serde_json::to_string(&ManifestAdapter::from(adapter)).map_err(|e| Error::Output {
            context: "part metadata".into(),
            message: e.to_string(),
        })?;
    let mut meta = batch.schema().metadata().clone();
    meta.insert(manifest::ADAPTER_KEY.to_string(), record);
    let schema = std::sync::Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
    batch.with_schema(schema).map_err(|e| Error::Output {
        context: "part metadata".into(),
        message: e.to_string(),
    })
}

/// Computes one part and writes its files (`runs` first; the part counts as complete
/// only once `run_hours`, when the sweep writes it, is renamed into place too). Each is
/// staged under a hidden name unique to this writer and carrying its staging tag,
/// `.part-{k:05}.parquet.{tag}.{host}-{pid}-{n}.tmp`, which dataset readers skip.
fn write_part(
    plan: &SweepPlan,
    part: &PartPlan,
    out: &Path,
    tag: &str,
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
    note_table(plan, part.pcc_bus, report)?;
    let cache = backend.curves.entry(part.pcc_bus).or_default();
    let batch = plan.batch(part.pcc_bus, &specs, cache)?;
    let part_no =
        u32::try_from(part.index).map_err(|_| Error::invalid("part", part.index, "< 2^32"))?;
    // A runs-only part on a GPU with f64 is reduced and hashed on the device: one summary
    // and one settlement head per run come back instead of every hour's record.
    let device = (!part.run_hours && !plan.has_attacks())
        .then(|| device_reduction(backend))
        .flatten();
    let (files, adapter) = if let Some(ctx) = device {
        let ids: Vec<u64> = runs.iter().map(|r| r.run).collect();
        let mut results = tables::RunResults {
            hours: batch.hours(),
            summaries: Vec::with_capacity(runs.len()),
            heads: Vec::with_capacity(runs.len()),
        };
        let adapter = ctx.run_summaries_with_heads(
            &batch,
            backend.precision,
            &ids,
            crate::engine::gpu::DEFAULT_RUNS_PER_CHUNK,
            |c| {
                results.summaries.extend_from_slice(&c.summaries);
                results.heads.extend_from_slice(&c.heads);
                Ok(())
            },
        )?;
        let engine = engine_tag(&adapter, backend.precision);
        let table = tables::runs_table_of(part_no, &runs, &results, &engine, None)?;
        report.parts_reduced_on_device += 1;
        (
            vec![(part.runs_path(), with_adapter(table, &adapter)?)],
            adapter,
        )
    } else {
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
        let figures = if plan.has_attacks() {
            Some(attack_figures(
                plan, &runs, &outputs, market, backend, report,
            )?)
        } else {
            None
        };
        let runs_table = with_adapter(
            tables::runs_table(part_no, &runs, &outputs, &engine, figures.as_deref())?,
            &outputs.adapter,
        )?;
        let mut files = vec![(part.runs_path(), runs_table)];
        if part.run_hours {
            let hours_table = with_adapter(
                tables::run_hours_table(&runs, &outputs, &engine)?,
                &outputs.adapter,
            )?;
            files.push((part.run_hours_path(), hours_table));
        }
        (files, outputs.adapter)
    };
    for (rel, table) in &files {
        let path = out.join(rel);
        let staged = path.with_file_name(format!(
            ".part-{:05}.parquet.{tag}.{}.tmp",
            part.index,
            shard::writer_id()
        ));
        write_parquet_via(&path, &staged, table)?;
    }
    report.parts_written += 1;
    report.runs_computed += part.runs as u64;
    report.adapter = Some(adapter);
    Ok(())
}

/// Builds the load table of a pcc bus's market on its first use, if the sweep reads one,
/// and says so in the report: levels, the error bounds the build met, and its time.
fn note_table(plan: &SweepPlan, pcc_bus: usize, report: &mut SweepReport) -> Result<()> {
    let start = std::time::Instant::now();
    if let Some((t, true)) = plan.table(pcc_bus)? {
        let (lo, hi) = t.scale_range();
        report.notices.push(format!(
            "pcc_bus {pcc_bus}: load table over load scales [{lo}, {hi}] built in {:.1} s: \
             {} levels ({} in the fullest hour), exports within {:.2e} MW of the exact \
             curves (table_tol_mw {}), costs within {:.3e} relative",
            start.elapsed().as_secs_f64(),
            t.levels_total(),
            t.levels_max(),
            t.export_error_mw(),
            t.tol_mw(),
            t.cost_error_rel(),
        ));
    }
    Ok(())
}

/// Most attack-free twins kept between parts (24 hour records each).
const MAX_TWINS: usize = 1 << 16;

/// The attack figures of a part's runs against their attack-free twins: the twins not yet
/// computed by this invocation are negotiated in one batch on the same backend (one per
/// distinct set of the non-attack values), then each run's attacked hour is compared with
/// its twin's.
fn attack_figures(
    plan: &SweepPlan,
    runs: &[PlannedRun],
    outputs: &crate::engine::BatchOutputs,
    market: &crate::market::Market,
    backend: &mut Backend,
    report: &mut SweepReport,
) -> Result<Vec<AttackFigures>> {
    let keys: Vec<TwinKey> = runs.iter().map(|r| r.values.twin_key()).collect();
    let mut missing: Vec<(TwinKey, RunValues)> = Vec::new();
    for (r, key) in runs.iter().zip(&keys) {
        if !backend.twins.contains_key(key) && !missing.iter().any(|(k, _)| k == key) {
            missing.push((key.clone(), r.values.attack_free()));
        }
    }
    if !missing.is_empty() {
        let specs: Vec<_> = missing.iter().map(|(_, v)| v.run_spec()).collect();
        let pcc_bus = missing[0].1.pcc_bus;
        let cache = backend.curves.entry(pcc_bus).or_default();
        let batch = plan.batch(pcc_bus, &specs, cache)?;
        let free = run_batch(
            &batch,
            backend.choice,
            backend.precision,
            backend.gpu.as_ref(),
        )?;
        let h = free.hours;
        // Bounds the host memory of a sweep whose twins are all distinct (a drawn load
        // scale): they are then used once each, and dropping them changes no result.
        if backend.twins.len() + missing.len() > MAX_TWINS {
            backend.twins.clear();
        }
        for (k, (key, _)) in missing.into_iter().enumerate() {
            backend
                .twins
                .insert(key, free.records[k * h..(k + 1) * h].to_vec());
            report.twins_computed += 1;
        }
    }
    let agents = if market.microgrid.config.enabled {
        2
    } else {
        1
    };
    runs.iter()
        .zip(&keys)
        .enumerate()
        .map(|(k, (r, key))| {
            let hour = r.values.attack.map_or(0, |(a, _)| a.hour) as usize;
            let twin = &backend.twins[key];
            Ok(AttackFigures::of(
                outputs.record(k, hour),
                &twin[hour],
                agents,
            ))
        })
        .collect()
}

/// The manifest of a complete sweep, from what is on disk (so every process that finishes
/// the same sweep writes the same bytes): every file hashed, sorted by path, and the
/// engines and devices recorded in the parts.
fn build_manifest(
    spec: &SweepSpec,
    plan: &SweepPlan,
    parts: &[PartPlan],
    out: &Path,
    spec_json: &str,
    build: &shard::Build,
) -> Result<Manifest> {
    let mut paths: Vec<String> = vec![SPEC_NAME.to_string()];
    for p in parts {
        paths.extend(p.files());
    }
    paths.sort();
    // Every file is read, hashed and (a runs part) decoded for its Merkle root on the
    // pool's threads; the entries are collected in path order, so the bytes are the same.
    type Entry = (ManifestFile, Option<String>, Option<ManifestAdapter>);
    let entries: Vec<Entry> = paths
        .into_par_iter()
        .map(|rel| -> Result<Entry> {
            let path = out.join(&rel);
            let (sha256, bytes) = manifest::sha256_file(&path)?;
            let (rows, engine, adapter) = if rel.ends_with(".parquet") {
                let footer = manifest::parquet_footer(&path)?;
                (footer.rows, footer.engine, footer.adapter)
            } else {
                (0, None, None)
            };
            let merkle_root = if rel.starts_with("runs/") && rel.ends_with(".parquet") {
                let rows = verify::read_runs_rows(&path, &rel).map_err(|e| Error::Output {
                    context: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Some(hex::encode(crate::ledger::part_root(&rows)))
            } else {
                None
            };
            let file = ManifestFile {
                path: rel,
                rows,
                bytes,
                sha256,
                merkle_root,
            };
            Ok((file, engine, adapter))
        })
        .collect::<Result<_>>()?;
    let mut files = Vec::with_capacity(entries.len());
    let mut engines = std::collections::BTreeSet::new();
    let mut adapters = std::collections::BTreeSet::new();
    for (file, engine, adapter) in entries {
        engines.extend(engine);
        adapters.extend(adapter);
        files.push(file);
    }
    let sweep = serde_json::from_str(spec_json).map_err(|e| Error::Output {
        context: MANIFEST_NAME.into(),
        message: e.to_string(),
    })?;
    Ok(Manifest {
        p2pmarket_version: build.p2pmarket_version.clone(),
        git_commit: build.git_commit.clone(),
        git_dirty: build.git_dirty,
        sweep_file: spec.source.display().to_string(),
        sweep_text: spec.text.clone(),
        sweep,
        seed: spec.seed,
        total_runs: plan.total_runs(),
        runs_per_part: spec.runs_per_part,
        pcc_buses: plan.pcc_buses(),
        parts: parts.len(),
        engines: engines.into_iter().collect(),
        adapters: adapters.into_iter().collect(),
        files,
        ledger_oracle: None,
        shards: Vec::new(),
        integrity: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sweep_removes_only_what_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory this process created: everything goes, staging included.
        let out = tmp.path().join("new");
        let c = claim(&out, &out, "{}", false, &mut |_| {}).unwrap();
        assert!(c.created_out && c.created_spec);
        std::fs::create_dir_all(out.join("runs/pcc_bus=7")).unwrap();
        std::fs::write(
            out.join("runs/pcc_bus=7/.part-00000.parquet.all.h-1-0.tmp"),
            b"x",
        )
        .unwrap();
        c.release(&out, true, shard::UNSHARDED_TAG);
        assert!(!out.exists());

        // Beside a user's files (--force): only the sweep's go.
        let mine = tmp.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("notes.txt"), b"keep").unwrap();
        assert!(claim(&mine, &mine, "{}", false, &mut |_| {}).is_err());
        assert_eq!(list(&mine).unwrap(), vec!["notes.txt"]);
        let c = claim(&mine, &mine, "{}", true, &mut |_| {}).unwrap();
        c.release(&mine, true, shard::UNSHARDED_TAG);
        assert_eq!(list(&mine).unwrap(), vec!["notes.txt"]);

        // A claim that produced data is kept (the sweep resumes there), lock file aside.
        let c = claim(&mine, &mine, "{}", true, &mut |_| {}).unwrap();
        std::fs::create_dir_all(mine.join("runs/pcc_bus=7")).unwrap();
        std::fs::write(mine.join("runs/pcc_bus=7/part-00000.parquet"), b"x").unwrap();
        c.release(&mine, true, shard::UNSHARDED_TAG);
        assert_eq!(list(&mine).unwrap(), vec!["notes.txt", "runs", SPEC_NAME]);

        // A process that joined an existing claim never removes it.
        let joined = tmp.path().join("joined");
        claim(&joined, &joined, "{}", false, &mut |_| {})
            .unwrap()
            .release(&joined, false, shard::UNSHARDED_TAG);
        let c = claim(&joined, &joined, "{}", false, &mut |_| {}).unwrap();
        assert!(!c.created_out && !c.created_spec);
        c.release(&joined, true, shard::UNSHARDED_TAG);
        assert_eq!(list(&joined).unwrap(), vec![SPEC_NAME]);
    }

    /// `decide` looks again when `sweep.json` is listed but read as missing (it appeared
    /// in between), and only once: a dangling link of that name reads as missing every
    /// time, and is refused as a file that is not a sweep's, without `--force`.
    #[cfg(unix)]
    #[test]
    fn a_spec_listed_but_unreadable_is_looked_at_once_more_then_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), out.join(SPEC_NAME)).unwrap();
        let err = decide(&out, &out, "{}", false).unwrap_err().to_string();
        assert!(err.contains("it is not empty (sweep.json)"), "{err}");
        // Once sweep.json is there, the same spec joins it.
        std::fs::remove_file(out.join(SPEC_NAME)).unwrap();
        std::fs::write(out.join(SPEC_NAME), "{}").unwrap();
        assert_eq!(decide(&out, &out, "{}", false).unwrap(), DirUse::Join);
    }

    /// A `sweep.json` that does not read as a sweep's is the user's: refused with or
    /// without `--force`, and left as it was, as is a dangling link of that name with
    /// `--force`. Another sweep's spec without data (an abandoned claim) is taken over.
    #[test]
    fn a_users_sweep_json_is_never_replaced() {
        let spec = |seed: u64| {
            let s = SweepSpec::from_toml(&format!("seed = {seed}\n"), Path::new("s.toml")).unwrap();
            serde_json::to_string_pretty(&s).unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mine = b"{\"my\": \"results\"}\n";
        std::fs::write(out.join(SPEC_NAME), mine).unwrap();
        for force in [false, true] {
            let err = decide(&out, &out, &spec(1), force).unwrap_err().to_string();
            assert!(err.contains("not a p2pmarket sweep's"), "{err}");
            let err = claim(&out, &out, &spec(1), force, &mut |_| {})
                .err()
                .expect("claimed a user's sweep.json")
                .to_string();
            assert!(err.contains("not a p2pmarket sweep's"), "{err}");
            assert_eq!(std::fs::read(out.join(SPEC_NAME)).unwrap(), mine);
            assert_eq!(list(&out).unwrap(), vec![SPEC_NAME]);
        }
        // Another sweep's abandoned claim reads as a sweep: a new sweep takes it over.
        std::fs::write(out.join(SPEC_NAME), spec(2)).unwrap();
        assert_eq!(decide(&out, &out, &spec(1), false).unwrap(), DirUse::Claim);
        assert_eq!(decide(&out, &out, &spec(2), false).unwrap(), DirUse::Join);

        #[cfg(unix)]
        {
            let linked = tmp.path().join("linked");
            std::fs::create_dir(&linked).unwrap();
            let target = tmp.path().join("nowhere");
            std::os::unix::fs::symlink(&target, linked.join(SPEC_NAME)).unwrap();
            let err = decide(&linked, &linked, &spec(1), true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("holds sweep.json that p2pmarket did not write"),
                "{err}"
            );
            assert_eq!(std::fs::read_link(linked.join(SPEC_NAME)).unwrap(), target);
        }
    }
}
