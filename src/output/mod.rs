//! Writing a run to disk: Parquet tables, `summary.json`, the effective `scenario.toml`
//! and the figures, published atomically as one directory.
//!
//! - [`tables`]: the Arrow tables (`hourly`, `trajectories`) and the cost per iteration;
//! - [`parquet`](self::parquet): atomic Parquet files and the [`Sink`] abstraction (directory or memory);
//! - [`plots`]: PNG + SVG figures;
//! - [`summary`]: the JSON summary.

pub mod parquet;
pub mod plots;
pub mod summary;
pub mod tables;
#[cfg(test)]
pub(crate) mod test_support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use self::parquet::{DirSink, MemorySink, Sink, write_parquet};
pub use self::plots::{PLOT_NAMES, write_plots};
pub use self::summary::summary_json;
pub use self::tables::{
    cost_by_iteration, hourly_schema, hourly_table, trajectory_schema, trajectory_table,
};

use crate::error::{Error, Result};
use crate::market::DayResult;
use crate::scenario::Scenario;

/// Writes every output of a run into `sink`: `hourly.parquet`, `trajectories.parquet`
/// (empty when no trajectories were kept), `summary.json`, the figures when
/// `scenario.output.plots`, and `scenario.toml`. Returns the file names written.
pub fn write_outputs(
    sink: &mut dyn Sink,
    scenario: &Scenario,
    day: &DayResult,
    extra: serde_json::Value,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    sink.write_table("hourly", &hourly_table(day)?)?;
    names.push("hourly.parquet".to_string());
    sink.write_table("trajectories", &trajectory_table(day)?)?;
    names.push("trajectories.parquet".to_string());
    sink.write_bytes("summary.json", &summary_json(day, scenario, extra)?)?;
    names.push("summary.json".to_string());
    if scenario.output.plots {
        names.extend(write_plots(sink, day)?);
    }
    let toml = toml::to_string_pretty(scenario).map_err(|e| Error::Output {
        context: "scenario.toml".into(),
        message: e.to_string(),
    })?;
    sink.write_bytes("scenario.toml", toml.as_bytes())?;
    names.push("scenario.toml".to_string());
    Ok(names)
}

/// A sibling of `out_dir` named `{name}{suffix}`.
fn sibling(out_dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out_dir.file_name().ok_or_else(|| Error::Output {
        context: format!("output directory {}", out_dir.display()),
        message: "the path must end in a directory name".into(),
    })?;
    let mut staged = OsString::from(name);
    staged.push(suffix);
    Ok(out_dir.with_file_name(staged))
}

/// Writes a run (see [`write_outputs`]) to `out_dir` atomically as a directory, and
/// returns the final paths of its files.
///
/// Everything is written into the sibling staging directory `{out_dir}.partial-{pid}`
/// (missing parent directories are created). On success an existing `out_dir` is
/// replaced by it; on any error the staging directory is removed and an existing
/// `out_dir` is left untouched. An `out_dir` that exists but is not a directory is an
/// error, so a stray file is never replaced.
pub fn write_run(
    out_dir: &Path,
    scenario: &Scenario,
    day: &DayResult,
    extra: serde_json::Value,
) -> Result<Vec<PathBuf>> {
    let pid = std::process::id();
    let staging = sibling(out_dir, &format!(".partial-{pid}"))?;
    let old = sibling(out_dir, &format!(".old-{pid}"))?;
    let exists = match std::fs::metadata(out_dir) {
        Ok(meta) if meta.is_dir() => true,
        Ok(_) => {
            return Err(Error::Output {
                context: format!("output directory {}", out_dir.display()),
                message: "exists and is not a directory".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("inspecting {}", out_dir.display()), e)),
    };

    // Only a crashed run of a process with the same id can have left these behind.
    for stale in [&staging, &old] {
        if std::fs::symlink_metadata(stale).is_ok() {
            std::fs::remove_dir_all(stale)
                .map_err(|e| Error::io(format!("removing stale {}", stale.display()), e))?;
        }
    }

    let written = std::fs::create_dir_all(&staging)
        .map_err(|e| Error::io(format!("creating {}", staging.display()), e))
        .and_then(|()| {
            let mut sink = DirSink::new(&staging);
            write_outputs(&mut sink, scenario, day, extra)
        })
        .and_then(|names| publish(&staging, out_dir, &old, exists).map(|()| names));
    match written {
        Ok(names) => Ok(names.iter().map(|n| out_dir.join(n)).collect()),
        Err(e) => {
            // Best effort: the write error is the one worth reporting.
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Moves `staging` to `out_dir`. An existing `out_dir` is first moved aside to `old`, so
/// that it can be restored if the final rename fails, and removed afterwards.
fn publish(staging: &Path, out_dir: &Path, old: &Path, exists: bool) -> Result<()> {
    if exists {
        std::fs::rename(out_dir, old)
            .map_err(|e| Error::io(format!("moving aside {}", out_dir.display()), e))?;
    }
    if let Err(e) = std::fs::rename(staging, out_dir) {
        if exists {
            let _ = std::fs::rename(old, out_dir);
        }
        return Err(Error::io(
            format!("renaming {} to {}", staging.display(), out_dir.display()),
            e,
        ));
    }
    if exists {
        // The new run is in place; a previous run that cannot be deleted (permissions)
        // is left as `{out_dir}.old-{pid}` rather than failing a completed write.
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
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
        let mut v: Vec<String> = ["hourly.parquet", "trajectories.parquet", "summary.json"]
            .map(String::from)
            .to_vec();
        if plots {
            for n in PLOT_NAMES {
                v.push(format!("{n}.png"));
                v.push(format!("{n}.svg"));
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
        expected.sort();
        assert_eq!(entries(&out), expected);
    }

    #[test]
    fn write_run_replaces_an_existing_run() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("stale.txt"), b"old").unwrap();
        let mut scenario = Scenario::default();
        scenario.output.plots = false;
        write_run(&out, &scenario, &day(true), extra()).unwrap();
        let mut expected = expected_files(false);
        expected.sort();
        assert_eq!(entries(&out), expected);
        assert_eq!(entries(tmp.path()), vec!["day"]);
    }

    #[test]
    fn write_run_failure_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        // The output directory's parent is a file: nothing can be created.
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        let out = tmp.path().join("file").join("day");
        let r = write_run(&out, &Scenario::default(), &day(true), extra());
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
        assert_eq!(entries(tmp.path()), vec!["file"]);
    }

    #[test]
    fn failure_midway_keeps_the_existing_run_and_no_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("day");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("previous.txt"), b"keep me").unwrap();
        // A bad `extra` fails at summary.json, after the Parquet files were staged.
        let r = write_run(
            &out,
            &Scenario::default(),
            &day(true),
            serde_json::json!("not an object"),
        );
        assert!(matches!(r, Err(Error::Output { .. })), "{r:?}");
        assert_eq!(entries(tmp.path()), vec!["day"]);
        assert_eq!(entries(&out), vec!["previous.txt"]);
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
        let names = write_outputs(&mut sink, &Scenario::default(), &day(true), extra()).unwrap();
        assert_eq!(names, expected_files(true));
        assert_eq!(
            sink.tables.keys().collect::<Vec<_>>(),
            ["hourly", "trajectories"]
        );
        assert_eq!(sink.files.len(), 10);
    }
}
