//! Sharding a sweep over the tasks of a job array (Slurm `--array`, Kubernetes Indexed
//! Jobs) that share one output directory, and sealing the result ([`finalize`]).
//!
//! - [`Shard`]: task `K` of `N`, from `--shard K/N` or the scheduler's environment
//!   ([`Shard::from_env`]);
//! - [`assign`]: which task computes which part: whole parts, balanced by work (runs ×
//!   hours), decided from the plan alone, so every task (and any rerun of one) agrees;
//! - [`ShardManifest`]: what a task wrote (`shards/shard-{K}-of-{N}.json`): its parts'
//!   sha256 and rows, the build, adapters, host and timings;
//! - [`finalize`]: checks that the shards' parts make the whole plan once, with the same
//!   spec and build, and writes `manifest.json` as an unsharded sweep would.
//!
//! Shared-filesystem rules: `sweep.json` is created once (`write_once`, a hard link of a
//! complete private file, so it appears whole or not at all) and every task compares it
//! with its own; a task writes only its own parts, staged under names carrying its shard
//! tag, and removes only staging files with its own tag, under the part's lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::manifest::{self, MANIFEST_NAME, ManifestAdapter, ManifestFile, SPEC_NAME};
use super::plan::PartPlan;
use crate::error::{Error, Result};
use crate::microgrid::HOURS;

/// Directory of the shard manifests in a sweep's output directory. Not part of the
/// dataset: [`super::verify_sweep`] skips it.
pub const SHARDS_DIR: &str = "shards";

/// Environment variable with the number of shards of a Kubernetes Indexed Job (its
/// `completions`), needed beside `JOB_COMPLETION_INDEX`.
pub const SHARD_COUNT_VAR: &str = "P2PMARKET_SHARD_COUNT";

/// Staging tag of an unsharded sweep's files.
pub const UNSHARDED_TAG: &str = "all";

/// One task's share of a sweep: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This task's shard, `0..count`.
    pub index: usize,
    /// Shards in the job.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`; `field` names where they came from in the error.
    pub fn new(index: u64, count: u64, field: &str) -> Result<Shard> {
        let ok = count >= 1 && index < count;
        match (usize::try_from(index), usize::try_from(count)) {
            (Ok(index), Ok(count)) if ok => Ok(Shard { index, count }),
            _ => Err(Error::invalid(
                field,
                format!("shard {index} of {count}"),
                "shard K of N with N >= 1 and 0 <= K < N",
            )),
        }
    }

    /// Parses `--shard K/N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || {
            Error::invalid(
                "--shard",
                text,
                "K/N (this task's shard K of N shards), integers with 0 <= K < N",
            )
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let k: u64 = k.trim().parse().map_err(|_| bad())?;
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n, "--shard").map_err(|_| bad())
    }

    /// The shard of a scheduler's array task, from its environment (`var` looks a variable
    /// up), or `None` outside one:
    /// - Slurm: `SLURM_ARRAY_TASK_ID`; with [`SHARD_COUNT_VAR`] set, the array index is the
    ///   shard number (so one task rerun alone, `--array=K`, is still shard K of N);
    ///   otherwise `SLURM_ARRAY_TASK_COUNT` (else from `SLURM_ARRAY_TASK_MAX`),
    ///   `SLURM_ARRAY_TASK_MIN` (default 0) and `SLURM_ARRAY_TASK_STEP` (default 1) give
    ///   shard `(ID - MIN) / STEP` of the array's task count;
    /// - Kubernetes Indexed Job: `JOB_COMPLETION_INDEX`, with [`SHARD_COUNT_VAR`].
    ///
    /// [`SHARD_COUNT_VAR`] without either index is an error: each task would otherwise
    /// run the whole sweep (or study).
    pub fn from_env(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let num = |name: &str| -> Result<Option<u64>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::invalid(name, &v, "a non-negative integer")),
            }
        };
        // The job's shard count, when given, is at least 1 (named itself, not the index).
        let shard_count = || -> Result<Option<u64>> {
            match num(SHARD_COUNT_VAR)? {
                Some(0) => Err(Error::invalid(
                    SHARD_COUNT_VAR,
                    0,
                    "a number of shards >= 1",
                )),
                n => Ok(n),
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            if let Some(count) = shard_count()? {
                return Shard::new(id, count, "SLURM_ARRAY_TASK_ID").map(Some);
            }
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let count = match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MAX")?) {
                (Some(c), _) => c,
                (None, Some(max)) if max >= min => (max - min) / step + 1,
                _ => {
                    return Err(Error::invalid(
                        "SLURM_ARRAY_TASK_COUNT",
                        "unset",
                        "the array's task count (Slurm sets it, or SLURM_ARRAY_TASK_MIN/MAX), \
                         or pass --shard K/N",
                    ));
                }
            };
            if id < min || (id - min) % step != 0 {
                return Err(Error::invalid(
                    "SLURM_ARRAY_TASK_ID",
                    id,
                    format!("one of MIN + k * STEP (MIN {min}, STEP {step})"),
                ));
            }
            return Shard::new((id - min) / step, count, "SLURM_ARRAY_TASK_ID").map(Some);
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = shard_count()?.ok_or_else(|| {
                Error::invalid(
                    SHARD_COUNT_VAR,
                    "unset",
                    "the number of shards (the Indexed Job's completions), needed with \
                     JOB_COMPLETION_INDEX, or pass --shard K/N",
                )
            })?;
            return Shard::new(index, count, "JOB_COMPLETION_INDEX").map(Some);
        }
        // A shard count without an index (a Job that is not Indexed, an `sbatch` without
        // `--array`) would have every task run the whole sweep: refused, not ignored.
        if let Some(count) = num(SHARD_COUNT_VAR)? {
            return Err(Error::invalid(
                SHARD_COUNT_VAR,
                count,
                "set only with an array task's index (SLURM_ARRAY_TASK_ID or \
                 JOB_COMPLETION_INDEX, neither of which is set): unset it to run the whole \
                 sweep or study in this process, or pass --shard K/N",
            ));
        }
        Ok(None)
    }

    /// `shard-{K}-of-{N}`: the name of its manifest and the tag of its staging files.
    pub fn tag(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Its manifest, relative to the output directory.
    pub fn manifest_path(&self) -> String {
        format!("{SHARDS_DIR}/{}.json", self.tag())
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Work of a part, for balancing: runs × hours.
fn work(part: &PartPlan) -> u64 {
    part.runs as u64 * HOURS as u64
}

/// The shard of every part of `parts` (same order), for `count` shards (see
/// [`assign_work`]).
pub fn assign(parts: &[PartPlan], count: usize) -> Vec<usize> {
    assign_work(&parts.iter().map(work).collect::<Vec<_>>(), count)
}

/// The shard of every item of work `work` (same order), for `count` shards: largest work
/// first (ties in plan order), each into the least-loaded shard (ties: the lowest).
/// Depends on the plan alone, so every task computes the same assignment.
pub fn assign_work(work: &[u64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by(|&a, &b| work[b].cmp(&work[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; count.max(1)];
    let mut shard_of = vec![0; work.len()];
    for i in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[s] += work[i];
        shard_of[i] = s;
    }
    shard_of
}

/// The parts `shard` computes, in plan order.
pub fn parts_of(parts: &[PartPlan], shard: Shard) -> Vec<PartPlan> {
    parts
        .iter()
        .zip(assign(parts, shard.count))
        .filter(|(_, s)| *s == shard.index)
        .map(|(p, _)| *p)
        .collect()
}

/// This machine's name (for staging names and shard manifests), restricted to
/// `[A-Za-z0-9.-]`.
pub fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// A name unique to this writer on a shared filesystem: host, process and a counter (two
/// threads of one process never share one).
pub(crate) fn writer_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        host(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `dir/name` if no file has that name, atomically: a private temporary file is
/// completed, then hard-linked to `name` (which fails when it exists), so readers see the
/// whole file or none. Returns whether this call created it. A filesystem without hard
/// links falls back to `create_new` (then a reader may briefly see it partly written).
pub(crate) fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool> {
    use std::io::Write;
    let target = dir.join(name);
    let tmp = dir.join(format!(
        "{}{}",
        crate::output::tmp_prefix(name),
        writer_id()
    ));
    let err = |e: std::io::Error| Error::io(format!("writing {}", target.display()), e);
    let write = |path: &Path, create_new: bool| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if create_new {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        let mut f = opts.open(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write(&tmp, false) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    let linked = std::fs::hard_link(&tmp, &target);
    // Our own private file, whatever happened.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => match write(&target, true) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(err(e)),
        },
    }
}

/// Writes `dir/name` through a private temporary name and a rename: for files that only
/// this writer's shard writes (its shard manifest), or that only [`finalize`] writes.
pub(crate) fn write_replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = format!("{}{}", crate::output::tmp_prefix(name), writer_id());
    crate::output::write_atomic_via(dir, name, &tmp, bytes)
}

/// Compares `sweep.json` in `out` (when there is one) with this task's sweep; `Err`
/// ([`Error::OutputDir`], naming the file) when it differs.
pub(crate) fn check_spec(out: &Path, shown: &Path, spec_json: &str) -> Result<()> {
    check_spec_file(
        out,
        shown,
        SPEC_NAME,
        spec_json,
        "a task of another sweep (seed, runs_per_part, samples, base or parameters differ \
         from this task's)",
        "sweep file",
    )
}

/// Compares the spec file `name` in `out` (when there is one) with this task's `spec_json`;
/// `Err` ([`Error::OutputDir`]) saying it was written by `other` when it differs, and that
/// every task needs the same `input` and binary.
pub(crate) fn check_spec_file(
    out: &Path,
    shown: &Path,
    name: &str,
    spec_json: &str,
    other: &str,
    input: &str,
) -> Result<()> {
    let path = out.join(name);
    match std::fs::read(&path) {
        Ok(found) if found == spec_json.as_bytes() => Ok(()),
        Ok(_) => Err(Error::OutputDir {
            path: shown.to_path_buf(),
            reason: format!(
                "its {name} was written by {other}; this task writes nothing there. Give \
                 every task of a job the same {input} and binary, or use a new directory"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Whether `out`'s [`SHARDS_DIR`] holds a shard manifest (any entry that is not a hidden
/// lock or staging file): some task of the job finished there.
pub(crate) fn holds_shard_manifest(out: &Path) -> bool {
    crate::output::list(&out.join(SHARDS_DIR))
        .unwrap_or_default()
        .iter()
        .any(|n| !n.starts_with('.'))
}

/// Refuses ([`Error::OutputDir`]) a job's first task in `out` (no spec file `spec_name`
/// there yet) when `out` holds anything but the entries `ours` and the spec's temporary
/// files: unless `force`, and always when one of them is in `never`.
pub(crate) fn check_first_task(
    out: &Path,
    shown: &Path,
    spec_name: &str,
    ours: &[&str],
    never: &[&str],
    force: bool,
) -> Result<()> {
    let spec_tmp = crate::output::tmp_prefix(spec_name);
    let foreign: Vec<String> = crate::output::list(out)?
        .into_iter()
        .filter(|n| !ours.contains(&n.as_str()) && !n.starts_with(&spec_tmp))
        .collect();
    if foreign.iter().any(|n| never.contains(&n.as_str())) || (!force && !foreign.is_empty()) {
        return Err(Error::OutputDir {
            path: shown.to_path_buf(),
            reason: format!(
                "it is not empty ({}) and holds no {spec_name}; nothing was written. Choose a \
                 new or empty directory, or pass --force to write beside those files",
                foreign.join(", ")
            ),
        });
    }
    Ok(())
}

/// The build a task ran: crate version and the commit embedded at build time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Version of the p2pmarket crate.
    pub p2pmarket_version: String,
    /// The commit the binary was built from ([`manifest::git_commit`]).
    pub git_commit: String,
    /// Whether its tree had uncommitted changes (absent when git could not tell).
    pub git_dirty: Option<bool>,
}

impl Build {
    /// This binary's build.
    pub fn this() -> Build {
        let (git_commit, git_dirty) = manifest::git_commit();
        Build {
            p2pmarket_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            git_dirty,
        }
    }
}

/// Who ran one task of a sharded job, on what, when and with what result: the part of a
/// shard manifest that sweeps and uncertainty studies share (flattened into theirs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// This shard, `0..shards`.
    pub shard: usize,
    /// Shards in the job.
    pub shards: usize,
    /// SHA-256 of the spec file (`sweep.json`, `uncertainty.json`) the task ran, lower-case
    /// hex.
    pub spec_sha256: String,
    /// The build that computed the parts.
    pub build: Build,
    /// Host of the task that wrote this manifest.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it started, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// When it wrote this manifest, seconds since the Unix epoch.
    pub finished_unix_s: f64,
    /// Parts this invocation computed.
    pub parts_written: usize,
    /// Parts this invocation found complete (a rerun).
    pub parts_skipped: usize,
    /// Runs in the shard.
    pub runs: u64,
}

impl TaskRecord {
    /// The record of this process running `shard` of the spec `spec_json` since
    /// `started_unix_s`, finished now.
    pub fn now(
        shard: Shard,
        spec_json: &str,
        started_unix_s: f64,
        parts: (usize, usize),
        runs: u64,
    ) -> TaskRecord {
        TaskRecord {
            shard: shard.index,
            shards: shard.count,
            spec_sha256: sha256_hex(spec_json.as_bytes()),
            build: Build::this(),
            host: host(),
            pid: std::process::id(),
            started_unix_s,
            finished_unix_s: unix_now(),
            parts_written: parts.0,
            parts_skipped: parts.1,
            runs,
        }
    }
}

/// `shards/shard-{K}-of-{N}.json`: what one task of a sharded sweep wrote, written when all
/// its parts exist (rewritten by a rerun of the same shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// The task.
    #[serde(flatten)]
    pub task: TaskRecord,
    /// The sweep file's path as the task was given it.
    pub sweep_file: String,
    /// The sweep file's text.
    pub sweep_text: String,
    /// Engines of its parts, sorted.
    pub engines: Vec<String>,
    /// Devices that computed its parts (from each part's footer), sorted.
    pub adapters: Vec<ManifestAdapter>,
    /// Its part files (`runs`, and `run_hours` unless the sweep writes none), sorted by
    /// path.
    pub files: Vec<ManifestFile>,
}

impl std::ops::Deref for ShardManifest {
    type Target = TaskRecord;

    fn deref(&self) -> &TaskRecord {
        &self.task
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// SHA-256 of bytes, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// What a shard's part files are on disk: the files sorted by path, engines, adapters.
pub(crate) fn describe_parts(
    out: &Path,
    parts: &[PartPlan],
) -> Result<(Vec<ManifestFile>, Vec<String>, Vec<ManifestAdapter>)> {
    let mut paths: Vec<String> = parts.iter().flat_map(PartPlan::files).collect();
    paths.sort();
    let mut engines = std::collections::BTreeSet::new();
    let mut adapters = std::collections::BTreeSet::new();
    let mut files = Vec::with_capacity(paths.len());
    for rel in paths {
        let path = out.join(&rel);
        let (sha256, bytes) = manifest::sha256_file(&path)?;
        let footer = manifest::parquet_footer(&path)?;
        engines.extend(footer.engine);
        adapters.extend(footer.adapter);
        files.push(ManifestFile {
            path: rel,
            rows: footer.rows,
            bytes,
            sha256,
            merkle_root: None,
        });
    }
    Ok((
        files,
        engines.into_iter().collect(),
        adapters.into_iter().collect(),
    ))
}

/// Reads and parses one shard manifest.
fn read_shard_manifest(path: &Path) -> Result<ShardManifest> {
    let text =
        std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&text).map_err(|e| Error::Output {
        context: path.display().to_string(),
        message: format!("not a shard manifest: {e}"),
    })
}

/// What [`finalize`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalizeReport {
    /// The manifest written.
    pub manifest: PathBuf,
    /// Shards of the job.
    pub shards: usize,
    /// Parts in the sweep.
    pub parts: usize,
    /// Runs in the sweep.
    pub runs: u64,
    /// Every device that computed a part.
    pub adapters: Vec<ManifestAdapter>,
    /// Notices for the user.
    pub notices: Vec<String>,
    /// An attack sweep's ledger oracle.
    pub oracle: Option<super::oracle::OracleReport>,
}

/// Seals a sharded sweep in `out`: checks that `sweep.json` is a sweep this build reads,
/// that every shard of the job left a manifest of that spec and one build, that every part
/// of the plan is listed by exactly the shard [`assign`] gives it and its two files match
/// the sha256 listed, that no other part file lies in the tables; then writes
/// `manifest.json` (atomically), as an unsharded run of the sweep would, its `adapters`
/// listing every device that computed a part. Any failure names what is wrong (all the
/// missing parts) and writes nothing ([`Error::SealDir`]).
pub fn finalize(out: &Path) -> Result<FinalizeReport> {
    use crate::output::lock::{Lock, LockMode};
    let shown = out;
    let out = &crate::output::resolve_sealed(out)?;
    if !out.is_dir() {
        return Err(Error::SealDir {
            path: shown.to_path_buf(),
            reason: "it is not a directory: no sweep ran there".into(),
        });
    }
    // Shared, like a task's: a last task out then leaves this process's temporary
    // manifest alone. The lock file goes with the last process out, as after a sweep.
    let lock_path = out.join(crate::output::LOCK_NAME);
    let lock = Lock::acquire(&lock_path, LockMode::Shared, &mut || {})?;
    let result = finalize_locked(out, shown);
    drop(lock);
    if let Ok(Some(last)) = Lock::try_acquire(&lock_path, LockMode::Exclusive) {
        last.release_and_remove();
    }
    result
}

fn finalize_locked(out: &Path, shown: &Path) -> Result<FinalizeReport> {
    let refuse = |reason: String| Error::SealDir {
        path: shown.to_path_buf(),
        reason,
    };
    let spec_path = out.join(SPEC_NAME);
    let spec_json = match std::fs::read_to_string(&spec_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(format!(
                "it holds no {SPEC_NAME}: no task of a sweep ran there; nothing was written"
            )));
        }
        Err(e) => return Err(Error::io(format!("reading {}", spec_path.display()), e)),
    };
    let mut spec: super::SweepSpec = serde_json::from_str(&spec_json).map_err(|e| {
        refuse(format!(
            "its {SPEC_NAME} is not a sweep this build reads ({e}); nothing was written"
        ))
    })?;
    let again = serde_json::to_string_pretty(&spec).map_err(|e| Error::Output {
        context: SPEC_NAME.into(),
        message: e.to_string(),
    })?;
    if again != spec_json {
        return Err(refuse(format!(
            "its {SPEC_NAME} was written by another version of p2pmarket (it does not read \
             back to the same sweep); finalize with the build that ran the tasks. Nothing \
             was written"
        )));
    }
    let spec_sha256 = sha256_hex(spec_json.as_bytes());

    // The shard manifests.
    let shards_dir = out.join(SHARDS_DIR);
    let names: Vec<String> = if shards_dir.is_dir() {
        crate::output::list(&shards_dir)?
            .into_iter()
            .filter(|n| n.starts_with("shard-") && n.ends_with(".json"))
            .collect()
    } else {
        Vec::new()
    };
    if names.is_empty() {
        return Err(refuse(format!(
            "it holds no shard manifest ({SHARDS_DIR}/shard-K-of-N.json): no task of a \
             sharded sweep finished there; nothing was written"
        )));
    }
    let mut manifests = Vec::with_capacity(names.len());
    for n in &names {
        let m = read_shard_manifest(&shards_dir.join(n))?;
        let expected = format!("shard-{}-of-{}.json", m.shard, m.shards);
        if *n != expected {
            return Err(refuse(format!(
                "{SHARDS_DIR}/{n} describes shard {}/{}: not its name; nothing was written",
                m.shard, m.shards
            )));
        }
        manifests.push(m);
    }
    let count = manifests[0].shards;
    if let Some(m) = manifests.iter().find(|m| m.shards != count) {
        return Err(refuse(format!(
            "its shards were run with different shard counts ({} and {}: {SHARDS_DIR}/{} and \
             {SHARDS_DIR}/{}); remove the manifests of the job that is not wanted, with its \
             parts; nothing was written",
            count,
            m.shards,
            names[0],
            Shard {
                index: m.shard,
                count: m.shards
            }
            .tag()
                + ".json"
        )));
    }
    let tag_of = |m: &ShardManifest| format!("{SHARDS_DIR}/shard-{}-of-{}.json", m.shard, m.shards);
    if let Some(m) = manifests.iter().find(|m| m.spec_sha256 != spec_sha256) {
        return Err(refuse(format!(
            "{} ran another sweep than its {SPEC_NAME} (spec sha256 {}, {SPEC_NAME} has \
             {spec_sha256}); nothing was written",
            tag_of(m),
            m.spec_sha256
        )));
    }
    let build = manifests[0].build.clone();
    if let Some(m) = manifests.iter().find(|m| m.build != build) {
        return Err(refuse(format!(
            "its shards ran different builds ({} ran {} {}, {} ran {} {}); rerun them with \
             one build; nothing was written",
            tag_of(&manifests[0]),
            build.p2pmarket_version,
            build.git_commit,
            tag_of(m),
            m.build.p2pmarket_version,
            m.build.git_commit
        )));
    }

    // Every part of the plan: listed once, by its shard, and on disk with that hash.
    let plan = spec.plan()?;
    let parts = plan.parts();
    let shard_of = assign(&parts, count);
    let mut listed: std::collections::BTreeMap<&str, (usize, &ManifestFile)> =
        std::collections::BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    for m in &manifests {
        for f in &m.files {
            if let Some((other, _)) = listed.insert(f.path.as_str(), (m.shard, f)) {
                problems.push(format!(
                    "{} is listed by shards {other} and {}",
                    f.path, m.shard
                ));
            }
        }
    }
    let mut missing: Vec<String> = Vec::new();
    let mut expected: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (part, &s) in parts.iter().zip(&shard_of) {
        for rel in part.files() {
            expected.insert(rel.clone());
            let path = out.join(&rel);
            match listed.get(rel.as_str()) {
                None => {
                    let why = if manifests.iter().any(|m| m.shard == s) {
                        "not in its shard manifest"
                    } else {
                        "its shard has no manifest"
                    };
                    missing.push(format!("{rel} (shard {s}/{count}: {why})"));
                }
                Some((by, _)) if *by != s => problems.push(format!(
                    "{rel} is listed by shard {by} but belongs to shard {s} of {count}"
                )),
                Some((_, f)) => {
                    if !path.is_file() {
                        missing.push(format!("{rel} (shard {s}/{count}: listed, not on disk)"));
                        continue;
                    }
                    let (sha256, bytes) = manifest::sha256_file(&path)?;
                    if sha256 != f.sha256 || bytes != f.bytes {
                        problems.push(format!(
                            "{rel} differs from what shard {s} wrote (sha256 {sha256}, its \
                             manifest says {})",
                            f.sha256
                        ));
                    }
                }
            }
        }
    }
    for path in listed.keys() {
        if !expected.contains(*path) {
            problems.push(format!(
                "{path} is listed by a shard but is no part of the plan"
            ));
        }
    }
    for table in ["runs", "run_hours"] {
        let dir = out.join(table);
        if !dir.is_dir() {
            continue;
        }
        for partition in crate::output::list(&dir)? {
            let sub = dir.join(&partition);
            if !sub.is_dir() {
                continue;
            }
            for n in crate::output::list(&sub)? {
                let rel = format!("{table}/{partition}/{n}");
                if !n.starts_with('.') && !expected.contains(&rel) {
                    problems.push(format!("{rel} is no part of the plan"));
                }
            }
        }
    }
    if !missing.is_empty() || !problems.is_empty() {
        let mut lines = Vec::new();
        if !missing.is_empty() {
            lines.push(format!(
                "{} part file(s) missing: {}",
                missing.len(),
                clip_list(&missing)
            ));
        }
        if !problems.is_empty() {
            lines.push(clip_list(&problems));
        }
        return Err(refuse(format!(
            "the sweep is not complete: {}; rerun the shards named, then finalize again. \
             Nothing was written",
            lines.join("; ")
        )));
    }

    spec.source = PathBuf::from(&manifests[0].sweep_file);
    spec.text = manifests[0].sweep_text.clone();
    let sealed = super::seal(&spec, &plan, &parts, out, &spec_json, &build)?;
    let mut manifest = sealed.manifest;
    manifest.shards = manifests
        .iter()
        .map(|m| super::manifest::ShardRecord {
            shard: m.shard,
            shards: m.shards,
            host: m.host.clone(),
            started_unix_s: m.started_unix_s,
            finished_unix_s: m.finished_unix_s,
            parts_written: m.parts_written,
            parts_skipped: m.parts_skipped,
            runs: m.runs,
        })
        .collect();
    let mut notices = sealed.notices;
    let this = Build::this();
    if this != build {
        notices.push(format!(
            "this finalize binary ({} {}) is not the build that ran the shards ({} {}); the \
             manifest records the shards' build",
            this.p2pmarket_version, this.git_commit, build.p2pmarket_version, build.git_commit
        ));
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Output {
        context: MANIFEST_NAME.into(),
        message: e.to_string(),
    })?;
    write_replace(out, MANIFEST_NAME, &json)?;
    Ok(FinalizeReport {
        manifest: out.join(MANIFEST_NAME),
        shards: count,
        parts: parts.len(),
        runs: plan.total_runs(),
        adapters: manifest.adapters.clone(),
        notices,
        oracle: manifest.ledger_oracle.clone(),
    })
}

/// The first 20 items, then how many more.
fn clip_list(items: &[String]) -> String {
    let mut s = items
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 20 {
        s.push_str(&format!(" and {} more", items.len() - 20));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: usize, runs: usize) -> PartPlan {
        PartPlan {
            pcc_bus: 7,
            index,
            first_run: 0,
            runs,
            run_hours: true,
        }
    }

    #[test]
    fn shard_flag_is_validated() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "0/0", "x/2", "1", "-1/3", "1/2/3", ""] {
            match Shard::parse(bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "--shard", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn shard_comes_from_slurm_or_kubernetes() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let get = |vars: &'static [(&'static str, &'static str)]| Shard::from_env(&env(vars));
        assert_eq!(get(&[]).unwrap(), None);
        assert_eq!(
            get(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ])
            .unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        // --array=1-4: MIN 1, MAX 4.
        assert_eq!(
            get(&[
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_MAX", "4")
            ])
            .unwrap(),
            Some(Shard { index: 0, count: 4 })
        );
        // --array=0-12:4: tasks 0, 4, 8, 12.
        assert_eq!(
            get(&[
                ("SLURM_ARRAY_TASK_ID", "8"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "12"),
                ("SLURM_ARRAY_TASK_STEP", "4")
            ])
            .unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        let field = |r: Result<Option<Shard>>| match r {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(get(&[("SLURM_ARRAY_TASK_ID", "0")])),
            "SLURM_ARRAY_TASK_COUNT"
        );
        assert_eq!(
            field(get(&[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ])),
            "SLURM_ARRAY_TASK_ID"
        );
        // A rerun of task 2 alone (--array=2) with the job's shard count.
        assert_eq!(
            get(&[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "1"),
                ("SLURM_ARRAY_TASK_MIN", "2"),
                (SHARD_COUNT_VAR, "4")
            ])
            .unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            get(&[("JOB_COMPLETION_INDEX", "1"), (SHARD_COUNT_VAR, "3")]).unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
        // A count of 0 is the count's fault, whichever index comes with it.
        assert_eq!(
            field(get(&[
                ("JOB_COMPLETION_INDEX", "0"),
                (SHARD_COUNT_VAR, "0")
            ])),
            SHARD_COUNT_VAR
        );
        assert_eq!(
            field(get(&[("SLURM_ARRAY_TASK_ID", "0"), (SHARD_COUNT_VAR, "0")])),
            SHARD_COUNT_VAR
        );
        assert_eq!(
            field(get(&[("JOB_COMPLETION_INDEX", "1")])),
            SHARD_COUNT_VAR
        );
        assert_eq!(
            field(get(&[
                ("JOB_COMPLETION_INDEX", "x"),
                (SHARD_COUNT_VAR, "3")
            ])),
            "JOB_COMPLETION_INDEX"
        );
        // A shard count alone (a Job that is not Indexed, `sbatch` without `--array`) is
        // refused rather than ignored; empty variables count as unset.
        assert_eq!(field(get(&[(SHARD_COUNT_VAR, "4")])), SHARD_COUNT_VAR);
        assert_eq!(
            get(&[
                (SHARD_COUNT_VAR, " "),
                ("JOB_COMPLETION_INDEX", ""),
                ("SLURM_ARRAY_TASK_ID", "")
            ])
            .unwrap(),
            None
        );
    }

    #[test]
    fn shards_are_disjoint_whole_and_balanced_by_work() {
        // Ten full parts and a short last one: largest first into the least-loaded shard.
        let mut parts: Vec<PartPlan> = (0..10).map(|k| part(k, 8)).collect();
        parts.push(part(10, 3));
        let of = assign(&parts, 3);
        assert_eq!(of, vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]);
        for n in 1..6 {
            let of = assign(&parts, n);
            let mut load = vec![0u64; n];
            for (p, s) in parts.iter().zip(&of) {
                load[*s] += work(p);
            }
            let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            assert!(hi - lo <= 8 * HOURS as u64, "{n}: {load:?}");
            let total: usize = (0..n)
                .map(|k| parts_of(&parts, Shard { index: k, count: n }).len())
                .sum();
            assert_eq!(total, parts.len());
        }
        // Unequal parts: work, not count, is balanced.
        let parts = vec![part(0, 10), part(1, 1), part(2, 1), part(3, 1), part(4, 7)];
        assert_eq!(assign(&parts, 2), vec![0, 1, 1, 1, 1]);
    }

    #[test]
    fn write_once_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_once(dir.path(), "a.json", b"one").unwrap());
        assert!(!write_once(dir.path(), "a.json", b"two").unwrap());
        assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"one");
        assert_eq!(crate::output::list(dir.path()).unwrap(), vec!["a.json"]);
    }
}
