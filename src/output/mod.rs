//! Writing a run to disk: Parquet tables, `summary.json`, the effective `scenario.toml`
//! and the figures, published atomically as one directory.
//!
//! - [`tables`]: the Arrow tables (`hourly`, `trajectories`) and the cost per iteration;
//! - [`parquet`]: atomic Parquet files and the [`Sink`] abstraction (directory or memory);
//! - [`integers`]: counts and indices written as signed integers and read back unsigned;
//! - [`plots`]: figures as PNG, SVG and PDF;
//! - [`attack_figures`]: the heat maps of an attack sweep;
//! - [`summary`]: the JSON summary;
//! - [`lock`]: advisory locks that tell a live writer from a dead one.

pub mod attack_figures;
pub mod integers;
pub mod ledger;
pub mod lock;
pub mod network;
pub mod parquet;
pub mod plots;
pub mod summary;
pub mod tables;
#[cfg(test)]
pub(crate) mod test_support;
pub mod uncertainty;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::parquet::{DirSink, MemorySink, Sink, write_parquet, write_parquet_via};
pub use self::plots::{ATTACK_PLOT_NAME, FigureOptions, PLOT_NAMES, write_plots};
pub use self::summary::summary_json;
pub use self::tables::{
    cost_by_iteration, hourly_schema, hourly_table, trajectory_schema, trajectory_table,
};

use crate::error::{Error, Result};
use crate::market::DayResult;
use crate::scenario::Scenario;

/// Writes every output of a run into `sink`: `hourly.parquet`, `trajectories.parquet`
/// (empty when no trajectories were kept), `summary.json`, the figures when
/// `scenario.output.plots` (drawn with `figures`), and `scenario.toml`. Returns the file
/// names written.
pub fn write_outputs(
    sink: &mut dyn Sink,
    scenario: &Scenario,
    day: &DayResult,
    extra: serde_json::Value,
    figures: &FigureOptions,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    sink.write_table("hourly", &hourly_table(day)?)?;
    names.push("hourly.parquet".to_string());
    sink.write_table("trajectories", &trajectory_table(day)?)?;
    names.push("trajectories.parquet".to_string());
    for (name, table) in [
        ("network_buses", network::buses_table(day)?),
        ("network_branches", network::branches_table(day)?),
        ("network_units", network::units_table(day)?),
    ] {
        sink.write_table(name, &table)?;
        names.push(format!("{name}.parquet"));
    }
    sink.write_bytes("summary.json", &summary_json(day, scenario, extra)?)?;
    names.push("summary.json".to_string());
    if scenario.output.plots {
        names.extend(write_plots(sink, day, figures)?);
    }
    names.push(write_scenario_toml(sink, scenario)?);
    Ok(names)
}

/// Writes the effective scenario as `scenario.toml` (with it, `run --config` reproduces
/// the output) and returns the file name.
pub fn write_scenario_toml(sink: &mut dyn Sink, scenario: &Scenario) -> Result<String> {
    let toml = toml::to_string_pretty(scenario).map_err(|e| Error::Output {
        context: "scenario.toml".into(),
        message: e.to_string(),
    })?;
    sink.write_bytes("scenario.toml", toml.as_bytes())?;
    Ok("scenario.toml".to_string())
}

/// Marker of a `run` output directory: the files the run wrote, so that a later run
/// recognises its own output and replaces only those.
pub const RUN_MARKER: &str = ".p2pmarket-run.json";
/// Lock file of an output directory (`run` and `sweep`), held while a process writes there.
pub const LOCK_NAME: &str = ".p2pmarket.lock";
/// `written_by` of a run's marker.
const RUN_WRITTEN_BY: &str = "p2pmarket run";

/// The command that writes an output directory, named in its marker's `written_by`: a
/// command writes into a previous output of its own, and treats another command's output
/// as a directory of files it did not write (refused without `--force`), so that
/// `uncertainty --out` of a run's directory cannot replace the run's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputWriter {
    /// `p2pmarket run`.
    #[default]
    Run,
    /// `p2pmarket uncertainty` (and `finalize` of a sharded study).
    Uncertainty,
    /// `p2pmarket attack-figures`.
    AttackFigures,
}

impl OutputWriter {
    /// The marker's `written_by`.
    pub fn written_by(self) -> &'static str {
        match self {
            OutputWriter::Run => RUN_WRITTEN_BY,
            OutputWriter::Uncertainty => "p2pmarket uncertainty",
            OutputWriter::AttackFigures => "p2pmarket attack-figures",
        }
    }

    /// The writer of a marker. Markers written before they named the command say
    /// `p2pmarket run` for every command's output: a run's always lists `summary.json`, a
    /// study's `study.json`, and attack figures' neither.
    fn of(m: &RunMarker) -> Option<OutputWriter> {
        let lists = |name: &str| m.files.iter().any(|f| f == name);
        [
            OutputWriter::Run,
            OutputWriter::Uncertainty,
            OutputWriter::AttackFigures,
        ]
        .into_iter()
        .find(|w| w.written_by() == m.written_by)
        .map(|w| match w {
            OutputWriter::Run if lists("study.json") => OutputWriter::Uncertainty,
            OutputWriter::Run if !lists("summary.json") => OutputWriter::AttackFigures,
            w => w,
        })
    }
}

/// The content of [`RUN_MARKER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunMarker {
    /// The command that wrote the files ([`OutputWriter::written_by`]).
    written_by: String,
    /// Version of the crate that wrote the files.
    version: String,
    /// False while a run replaces the files (`files` then lists the old and the new ones).
    complete: bool,
    /// Names of the files the run wrote, in the directory.
    files: Vec<String>,
}

impl RunMarker {
    fn new(writer: OutputWriter, files: Vec<String>, complete: bool) -> Self {
        RunMarker {
            written_by: writer.written_by().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            complete,
            files,
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Output {
            context: RUN_MARKER.into(),
            message: e.to_string(),
        })
    }
}

/// Whether `dir` holds a run's output whose marker lists the file `name` (read
/// leniently: any unreadable or foreign marker is `false`).
pub fn run_lists(dir: &Path, name: &str) -> bool {
    std::fs::read(dir.join(RUN_MARKER))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<RunMarker>(&bytes).ok())
        .is_some_and(|m| {
            OutputWriter::of(&m) == Some(OutputWriter::Run) && m.files.iter().any(|f| f == name)
        })
}

/// How a run may use an output directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutputOptions {
    /// Also write into a non-empty directory that is not a previous run's output. Files the
    /// tool did not write are still never deleted or overwritten (a name clash is refused).
    pub force: bool,
    /// The command writing (whose previous outputs it may replace).
    pub writer: OutputWriter,
}

/// What an output directory holds.
enum DirState {
    Missing,
    /// Exists and holds nothing but a lock or stale temporary files of the tool.
    Empty,
    /// A previous run's output (its marker).
    PreviousRun(RunMarker),
    /// Anything else: some of its entries, and why its marker (if any) was not accepted.
    Foreign {
        sample: Vec<String>,
        marker: Option<String>,
    },
}

/// The temporary name [`write_atomic`] writes `name` under in this process: hidden, and
/// unique per process so that two writers never share one.
fn tmp_name(name: &str) -> String {
    format!("{}{}", tmp_prefix(name), std::process::id())
}

/// What every process's temporary name for `name` starts with.
pub(crate) fn tmp_prefix(name: &str) -> String {
    format!(".{}.tmp-", name.trim_start_matches('.'))
}

/// Writes `bytes` to `dir/name` through a hidden per-process temporary file, synced and
/// renamed into place. Callers that share a directory hold its lock, so the temporary
/// files of dead processes can be removed with [`remove_stale_tmp`].
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    write_atomic_via(dir, name, &tmp_name(name), bytes)
}

/// [`write_atomic`] through the temporary name `tmp` (hidden, in `dir`), for writers that
/// need one unique beyond the process (another host on a shared filesystem, a thread).
pub(crate) fn write_atomic_via(dir: &Path, name: &str, tmp: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(tmp);
    let target = dir.join(name);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        // Best effort: the write error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("writing {}", target.display()), e));
    }
    Ok(())
}

/// Removes the temporary files [`write_atomic`] left in `dir` for `names` (call it with the
/// directory's lock held exclusively, so that no live writer owns them).
pub(crate) fn remove_stale_tmp(dir: &Path, names: &[&str]) -> Result<()> {
    let prefixes: Vec<String> = names.iter().map(|n| tmp_prefix(n)).collect();
    for entry in list(dir)? {
        if prefixes.iter().any(|p| entry.starts_with(p.as_str())) {
            remove_file_if_present(&dir.join(&entry))?;
        }
    }
    Ok(())
}

/// Entry names of `dir`, sorted.
pub(crate) fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Removes a file; one already gone is fine.
pub(crate) fn remove_file_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// `out_dir` made usable: an existing directory (or a link to one) by its canonical path,
/// so that renames replace the directory itself; a missing one as given. Refuses a path
/// that is a file, a broken link, or has no final name (`/`, `..`).
pub(crate) fn resolve_out(out_dir: &Path) -> Result<PathBuf> {
    let refuse = |reason: &str| Error::OutputDir {
        path: out_dir.to_path_buf(),
        reason: reason.into(),
    };
    let resolved = match std::fs::symlink_metadata(out_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out_dir.to_path_buf(),
        Err(e) => return Err(Error::io(format!("inspecting {}", out_dir.display()), e)),
        Ok(_) => match std::fs::metadata(out_dir) {
            Ok(m) if m.is_dir() => std::fs::canonicalize(out_dir)
                .map_err(|e| Error::io(format!("resolving {}", out_dir.display()), e))?,
            Ok(_) => return Err(refuse("exists and is not a directory")),
            Err(_) => return Err(refuse("is a broken symbolic link")),
        },
    };
    match resolved.file_name() {
        Some(n) if n != ".." => Ok(resolved),
        _ => Err(refuse("must end in a directory name")),
    }
}

/// [`resolve_out`] for `p2pmarket finalize DIR`: its refusals name `DIR`
/// ([`Error::SealDir`]), the argument it is.
pub(crate) fn resolve_sealed(dir: &Path) -> Result<PathBuf> {
    resolve_out(dir).map_err(|e| match e {
        Error::OutputDir { path, reason } => Error::SealDir { path, reason },
        other => other,
    })
}

/// Whether `name`, in an output directory, is the tool's lock or one of its temporary
/// files (which do not make a directory non-empty).
fn is_transient(name: &str) -> bool {
    name == LOCK_NAME || name.starts_with(&tmp_prefix(RUN_MARKER))
}

/// A file name inside the directory (a marker listing `../x` must not reach outside it).
fn is_plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

/// What the directory `out` (resolved) holds, for the command `writer`.
fn inspect(out: &Path, writer: OutputWriter) -> Result<DirState> {
    if !out.is_dir() {
        return Ok(DirState::Missing);
    }
    let entries: Vec<String> = list(out)?
        .into_iter()
        .filter(|n| !is_transient(n))
        .collect();
    if entries.is_empty() {
        return Ok(DirState::Empty);
    }
    let mut marker = None;
    if entries.iter().any(|n| n == RUN_MARKER) {
        let parsed = std::fs::read(out.join(RUN_MARKER))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<RunMarker>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(m)
                if OutputWriter::of(&m) == Some(writer) && m.files.iter().all(|f| is_plain(f)) =>
            {
                return Ok(DirState::PreviousRun(m));
            }
            Ok(m) if OutputWriter::of(&m) == Some(writer) => {
                marker = Some(format!("its {RUN_MARKER} lists paths, not file names"))
            }
            Ok(m) => match OutputWriter::of(&m) {
                Some(other) => {
                    marker = Some(format!(
                        "it is an output of `{}`, by its {RUN_MARKER}",
                        other.written_by()
                    ))
                }
                None => marker = Some(format!("its {RUN_MARKER} names {:?}", m.written_by)),
            },
            Err(e) => marker = Some(format!("its {RUN_MARKER} cannot be read: {e}")),
        }
    }
    let sample = entries.into_iter().filter(|n| n != RUN_MARKER).collect();
    Ok(DirState::Foreign { sample, marker })
}

/// The refusal of a directory holding files the command `writer` did not write.
fn foreign_refusal(
    out: &Path,
    writer: OutputWriter,
    sample: &[String],
    marker: Option<&str>,
) -> Error {
    let shown: Vec<&str> = sample.iter().take(5).map(String::as_str).collect();
    let more = if sample.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    Error::OutputDir {
        path: out.to_path_buf(),
        reason: format!(
            "it holds files this command did not write ({}{more}) and is not a previous output \
             of `{}` ({}); nothing was written. Choose a new or empty directory, or pass \
             --force to write beside those files (they are never deleted or overwritten)",
            shown.join(", "),
            writer.written_by(),
            marker.unwrap_or(&format!("it has no {RUN_MARKER}")),
        ),
    }
}

/// Checks, without writing anything, that a run may write into `out_dir`: it is missing,
/// empty, a previous run's output, or (with `force`) any directory. The CLI calls it before
/// computing; [`write_run_with`] checks again under the directory's lock.
pub fn check_run_out(out_dir: &Path, options: RunOutputOptions) -> Result<()> {
    let out = resolve_out(out_dir)?;
    match inspect(&out, options.writer)? {
        DirState::Foreign { sample, marker } if !options.force => Err(foreign_refusal(
            out_dir,
            options.writer,
            &sample,
            marker.as_deref(),
        )),
        _ => Ok(()),
    }
}

/// Writes a run (see [`write_outputs`]) to `out_dir`, which must be missing, empty or a
/// previous run's output (see [`write_run_with`]), and returns the final paths of its files.
pub fn write_run(
    out_dir: &Path,
    scenario: &Scenario,
    day: &DayResult,
    extra: serde_json::Value,
) -> Result<Vec<PathBuf>> {
    write_run_with(
        out_dir,
        RunOutputOptions::default(),
        &mut |_| {},
        scenario,
        day,
        extra,
    )
}

/// Writes a run (see [`write_outputs`]) to `out_dir` and returns the final paths of its
/// files. `on_wait` hears (once) that another process is writing the directory, before
/// this one waits for it.
///
/// Everything is first written into a sibling staging directory
/// `{out_dir}.partial-{pid}-{n}` (missing parent directories are created), which this
/// process keeps locked; staging directories of dead processes are removed first. Then:
/// - a missing `out_dir` becomes the staging directory in one rename;
/// - an existing one is written into, under its lock file [`LOCK_NAME`], file by file:
///   files of a previous run (listed in its [`RUN_MARKER`]) are replaced or removed, any
///   other file is kept, and a name clash with one of them is refused. While this happens
///   the marker says `"complete": false` and lists old and new files, so a run killed
///   midway leaves a directory the next run recognises and completes.
///
/// A directory that is not empty and not a previous run's output is refused unless
/// `options.force`. On any error the staging directory is removed, and files already in
/// `out_dir` are untouched unless the error came while moving files in.
pub fn write_run_with(
    out_dir: &Path,
    options: RunOutputOptions,
    on_wait: &mut dyn FnMut(&str),
    scenario: &Scenario,
    day: &DayResult,
    extra: serde_json::Value,
) -> Result<Vec<PathBuf>> {
    let mut extra = Some(extra);
    publish_dir_with(out_dir, options, on_wait, &mut |sink| {
        write_outputs(
            sink,
            scenario,
            day,
            extra.take().unwrap_or_default(),
            &FigureOptions::default(),
        )
    })
}

/// Publishes the files `write` puts into a sink as the directory `out_dir`, exactly as
/// [`write_run_with`] publishes a run (staging directory, lock, marker, the same refusals),
/// and returns their final paths. Every command that writes an output directory (`run`,
/// `uncertainty`) goes through here.
pub fn publish_dir_with(
    out_dir: &Path,
    options: RunOutputOptions,
    on_wait: &mut dyn FnMut(&str),
    write: &mut dyn FnMut(&mut dyn Sink) -> Result<Vec<String>>,
) -> Result<Vec<PathBuf>> {
    check_run_out(out_dir, options)?;
    let out = resolve_out(out_dir)?;
    let staging = Staging::create(&out)?;
    let names = {
        let mut sink = DirSink::new(&staging.path);
        let names = write(&mut sink)?;
        let marker = RunMarker::new(options.writer, names.clone(), true);
        sink.write_bytes(RUN_MARKER, &marker.to_bytes()?)?;
        names
    };
    // An existing directory, even an empty one, is written into rather than replaced: it
    // may be someone's working directory (`--out .`), with permissions of its own.
    let renamed = if out.is_dir() {
        Err(std::io::ErrorKind::AlreadyExists.into())
    } else {
        std::fs::rename(&staging.path, &out)
    };
    match renamed {
        Ok(()) => staging.published(),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
            ) =>
        {
            replace_in_place(&staging.path, &out, out_dir, &names, options, on_wait)?;
        }
        Err(e) => {
            return Err(Error::io(
                format!("renaming {} to {}", staging.path.display(), out.display()),
                e,
            ));
        }
    }
    Ok(names.iter().map(|n| out_dir.join(n)).collect())
}

/// A run's private staging directory, locked while this process lives and removed when
/// dropped unless it was published.
struct Staging {
    path: PathBuf,
    /// The lock on the directory itself (see [`lock::lock_dir`]).
    _lock: Option<std::fs::File>,
    published: bool,
}

impl Staging {
    /// Removes dead processes' staging directories of `out`, then creates this one's.
    fn create(out: &Path) -> Result<Staging> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        let prefix = format!("{name}.partial-");
        for entry in list(&parent)? {
            let Some(id) = entry.strip_prefix(&prefix) else {
                continue;
            };
            let path = parent.join(&entry);
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir
                && !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit() || c == '-')
                && let Some(_dead) = lock::lock_dir(&path)
            {
                // Best effort: a staging directory that cannot be removed blocks nothing.
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        let pid = std::process::id();
        for n in 0u32.. {
            let path = parent.join(format!("{prefix}{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let lock = lock::lock_dir(&path);
                    return Ok(Staging {
                        path,
                        _lock: lock,
                        published: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        unreachable!("u32 staging names exhausted")
    }

    /// The directory was renamed to the output: nothing to remove.
    fn published(mut self) {
        self.published = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: the error that led here is the one worth reporting.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Moves the staged files `names` into the existing directory `out` under its lock (see
/// [`write_run_with`]); `shown` is the directory as the user named it, for messages.
fn replace_in_place(
    staging: &Path,
    out: &Path,
    shown: &Path,
    names: &[String],
    options: RunOutputOptions,
    on_wait: &mut dyn FnMut(&str),
) -> Result<()> {
    let lock = lock::Lock::acquire(&out.join(LOCK_NAME), lock::LockMode::Exclusive, &mut || {
        on_wait(&format!(
            "waiting for {}: another p2pmarket process is writing it",
            shown.display()
        ))
    })?;
    let result = (|| {
        let owned = match inspect(out, options.writer)? {
            DirState::PreviousRun(m) => m.files,
            DirState::Foreign { sample, marker } if !options.force => {
                return Err(foreign_refusal(
                    shown,
                    options.writer,
                    &sample,
                    marker.as_deref(),
                ));
            }
            _ => Vec::new(),
        };
        remove_stale_tmp(out, &[RUN_MARKER])?;
        let clashes: Vec<&str> = names
            .iter()
            .filter(|n| {
                std::fs::symlink_metadata(out.join(n))
                    .is_ok_and(|m| m.is_dir() || !owned.contains(n))
            })
            .map(String::as_str)
            .collect();
        if !clashes.is_empty() {
            return Err(Error::OutputDir {
                path: shown.to_path_buf(),
                reason: format!(
                    "it holds {} that this command did not write and would overwrite; \
                     nothing was written. Move them away or choose another directory",
                    clashes.join(", ")
                ),
            });
        }
        let mut all: Vec<String> = names.to_vec();
        all.extend(owned.iter().filter(|o| !names.contains(o)).cloned());
        let marker = RunMarker::new(options.writer, all, false);
        write_atomic(out, RUN_MARKER, &marker.to_bytes()?)?;
        for n in names {
            std::fs::rename(staging.join(n), out.join(n))
                .map_err(|e| Error::io(format!("moving {n} into {}", out.display()), e))?;
        }
        for old in owned.iter().filter(|o| !names.contains(o)) {
            let path = out.join(old);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                remove_file_if_present(&path)?;
            }
        }
        write_atomic(
            out,
            RUN_MARKER,
            &RunMarker::new(options.writer, names.to_vec(), true).to_bytes()?,
        )
    })();
    lock.release_and_remove();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_support::{day, entries};
    use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn extra() -> serde_json::Value {
        serde_json::json!({"version": "test"})
    }

    fn expected_files(plots: bool) -> Vec<String> {
        let mut v: Vec<String> = [
            "hourly.parquet",
            "trajectories.parquet",
            "network_buses.parquet",
            "network_branches.parquet",
            "network_units.parquet",
            "summary.json",
        ]
        .map(String::from)
        .to_vec();
        if plots {
            for n in PLOT_NAMES {
                v.push(format!("{n}.png"));
                v.push(format!("{n}.svg"));
                v.push(format!("{n}.pdf"));
            }
        }
        v.push("scenario.toml".into());
        v
    }

    #[test]
    fn write_run_creates_exactly_the_expected_files() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("runs").join("day1");
        let scenario = Scenario::default();
        let paths = write_run(&out, &scenario, &day(true), extra()).unwrap();
        let expected = expected_files(true);
        assert_eq!(
            paths,
            expected.iter().map(|n| out.join(n)).collect::<Vec<_>>()
        );
        let mut sorted = expected.clone();
        sorted.push(RUN_MARKER.into());
        sorted.sort();
        assert_eq!(entries(&out), sorted);
        // No staging directory or file is left anywhere.
        assert_eq!(entries(&tmp.path().join("runs")), vec!["day1"]);

        let file = std::fs::File::open(out.join("hourly.parquet")).unwrap();
        let rows: usize = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(rows, 3);
        let toml_text = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
        let back = Scenario::from_toml(&toml_text, &out.join("scenario.toml")).unwrap();
        assert_eq!(back, scenario);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["version"], "test");
    }

    #[test]
    fn write_run_without_plots_or_trajectories() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        let mut scenario = Scenario::default();
        scenario.output.plots = false;
        scenario.output.keep_trajectories = false;
        write_run(&out, &scenario, &day(false), serde_json::Value::Null).unwrap();
        let mut expected = expected_files(false);
        expected.push(RUN_MARKER.into());
        expected.sort();
        assert_eq!(entries(&out), expected);
    }

    #[test]
    fn write_run_replaces_a_previous_run_and_keeps_files_added_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        write_run(&out, &Scenario::default(), &day(true), extra()).unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let mut scenario = Scenario::default();
        scenario.output.plots = false;
        write_run(&out, &scenario, &day(true), extra()).unwrap();
        let mut expected = expected_files(false);
        expected.push("notes.txt".into());
        expected.push(RUN_MARKER.into());
        expected.sort();
        // The plots of the previous run are gone, the user's file is not.
        assert_eq!(entries(&out), expected);
        assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(entries(tmp.path()), vec!["day"]);
        let marker: RunMarker =
            serde_json::from_slice(&std::fs::read(out.join(RUN_MARKER)).unwrap()).unwrap();
        assert!(marker.complete);
        assert_eq!(marker.files, expected_files(false));
    }

    /// `--out .` in an empty working directory must not swap that directory for another.
    #[cfg(unix)]
    #[test]
    fn write_run_into_an_empty_directory_keeps_that_directory() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("here");
        std::fs::create_dir(&out).unwrap();
        let inode = std::fs::metadata(&out).unwrap().ino();
        write_run(&out, &Scenario::default(), &day(false), extra()).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().ino(), inode);
        assert!(out.join("hourly.parquet").is_file() && !out.join(LOCK_NAME).exists());
        assert_eq!(entries(tmp.path()), vec!["here"]);
    }

    #[test]
    fn write_run_refuses_a_foreign_directory_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("thesis");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("thesis.tex"), b"tex").unwrap();
        std::fs::write(out.join("summary.json"), b"my own summary").unwrap();
        let r = write_run(&out, &Scenario::default(), &day(false), extra());
        assert!(
            matches!(&r, Err(Error::OutputDir { reason, .. }) if reason.contains("--force")),
            "{r:?}"
        );
        // With --force, a name clash with a foreign file is still refused.
        let forced = RunOutputOptions {
            force: true,
            ..RunOutputOptions::default()
        };
        let run = |out: &Path| {
            write_run_with(
                out,
                forced,
                &mut |_| {},
                &Scenario::default(),
                &day(false),
                extra(),
            )
        };
        let r = run(&out);
        assert!(
            matches!(&r, Err(Error::OutputDir { reason, .. }) if reason.contains("summary.json")),
            "{r:?}"
        );
        assert_eq!(entries(&out), vec!["sub", "summary.json", "thesis.tex"]);
        assert_eq!(entries(tmp.path()), vec!["thesis"], "no staging left");
        std::fs::remove_file(out.join("summary.json")).unwrap();
        run(&out).unwrap();
        assert_eq!(std::fs::read(out.join("thesis.tex")).unwrap(), b"tex");
        assert!(out.join("sub").is_dir() && out.join("hourly.parquet").is_file());
        assert!(!out.join(LOCK_NAME).exists());
    }

    #[test]
    fn failure_midway_keeps_the_existing_run_and_no_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        write_run(&out, &Scenario::default(), &day(true), extra()).unwrap();
        let before: Vec<Vec<u8>> = entries(&out)
            .iter()
            .map(|n| std::fs::read(out.join(n)).unwrap())
            .collect();
        // A bad `extra` fails at summary.json, after the Parquet files were staged.
        let r = write_run(
            &out,
            &Scenario::default(),
            &day(true),
            serde_json::json!("not an object"),
        );
        assert!(matches!(r, Err(Error::Output { .. })), "{r:?}");
        assert_eq!(entries(tmp.path()), vec!["day"]);
        let after: Vec<Vec<u8>> = entries(&out)
            .iter()
            .map(|n| std::fs::read(out.join(n)).unwrap())
            .collect();
        assert!(before == after, "the previous run changed");
    }

    #[test]
    fn stale_staging_of_dead_processes_is_removed_and_a_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        // A dead process's staging (no lock held), and a live one's (locked here).
        let dead = tmp.path().join("day.partial-999999");
        let live = tmp.path().join("day.partial-999998-0");
        for d in [&dead, &live] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("hourly.parquet"), b"partial").unwrap();
        }
        let _held = lock::lock_dir(&live).unwrap();
        // Not a staging name: a user's directory that merely looks alike.
        std::fs::create_dir(tmp.path().join("day.partial-notes")).unwrap();
        write_run(&out, &Scenario::default(), &day(false), extra()).unwrap();
        assert_eq!(
            entries(tmp.path()),
            vec!["day", "day.partial-999998-0", "day.partial-notes"]
        );
    }

    #[test]
    fn write_run_refuses_to_replace_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        std::fs::write(&out, b"not a directory").unwrap();
        assert!(write_run(&out, &Scenario::default(), &day(false), extra()).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"not a directory");
        assert_eq!(entries(tmp.path()), vec!["day"]);
    }

    #[test]
    fn write_outputs_into_memory() {
        let mut sink = MemorySink::new();
        let names = write_outputs(
            &mut sink,
            &Scenario::default(),
            &day(true),
            extra(),
            &FigureOptions::default(),
        )
        .unwrap();
        assert_eq!(names, expected_files(true));
        assert_eq!(
            sink.tables.keys().collect::<Vec<_>>(),
            [
                "hourly",
                "network_branches",
                "network_buses",
                "network_units",
                "trajectories"
            ]
        );
        // 4 figures x (PNG, SVG, PDF), summary.json and scenario.toml.
        assert_eq!(sink.files.len(), 14);
    }
}
