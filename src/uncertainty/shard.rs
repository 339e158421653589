//! An uncertainty study split over the tasks of a job array (Slurm `--array`, Kubernetes
//! Indexed Jobs) that share one output directory, and sealed by `p2pmarket finalize` into
//! the outputs an unsharded `p2pmarket uncertainty` writes, bit for bit. The one module of
//! [`crate::uncertainty`] that touches files.
//!
//! The study's runs are cut into parts ([`study_parts`]): the forecast day, one part per UT
//! form (its 2c+1 sigma points), and [`PART_SAMPLES`] samples per part of each sampling
//! method. Parts go to shards by work ([`crate::sweep::shard::assign_work`]), decided from
//! the plan alone, so any task (and any rerun of one) agrees. Each task writes the runs of
//! its parts, one row per run with its outputs ([`part_schema`]), and a shard manifest;
//! [`finalize`] checks them all against the plan and reduces them in sample order with the
//! same code as an unsharded study, so its statistics, tails and histograms are the same
//! bytes.
//!
//! Output layout in `out`:
//! ```text
//! uncertainty.json                               the study (its identity), written once
//! samples/method={m}/part-{k:05}.parquet         one row per run of part k of method m
//! shards/shard-{K}-of-{N}.json                   what task K wrote (sha256, devices, times)
//! statistics.parquet, tails.parquet, ...         written by `finalize`
//! ```
//! Shared-filesystem rules (as a sharded sweep's): `uncertainty.json` appears once, whole
//! ([`crate::sweep::shard`]'s `write_once`), and every task compares it with its own; a
//! task writes only its own parts, through hidden temporary names and a rename, holding
//! an exclusive lock on `shards/.shard-{K}-of-{N}.lock`, so two processes never compute one
//! shard at once, and it removes only its own shard's temporary files. Every task also holds
//! `.p2pmarket.lock` shared; a task that fails when it is the last one there, with no part
//! or shard manifest on disk, takes the claim back (`uncertainty.json` if it wrote it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::study::{
    CHUNK_RUNS, MethodReport, OUTPUTS, PartRow, PreparedStudy, Reduction, Reference, StudyOptions,
    StudyResult, TableInfo, Tables, evaluate_part, forecast_diverged, forecast_inputs,
    output_names, study_result,
};
use super::{INPUTS, Method};
use crate::engine::gpu::GpuContext;
use crate::error::{Error, Result};
use crate::market::Market;
use crate::output::lock::{Lock, LockMode};
use crate::scenario::Scenario;
use crate::sweep::shard::{
    Build, SHARDS_DIR, Shard, TaskRecord, assign_work, check_first_task, check_spec_file,
    holds_shard_manifest, sha256_hex, unix_now, write_once, write_replace,
};

/// The study's identity in its output directory.
pub const SPEC_NAME: &str = "uncertainty.json";
/// Directory of the parts' run tables.
pub const SAMPLES_DIR: &str = "samples";
/// Samples per part of a sampling method (one engine batch).
pub const PART_SAMPLES: u64 = CHUNK_RUNS as u64;
/// `written_by` of [`SPEC_NAME`].
const WRITTEN_BY: &str = "p2pmarket uncertainty --shard";
/// The partition name of the forecast day's part.
const FORECAST: &str = "forecast";

/// `uncertainty.json`: everything that decides a sharded study's runs and statistics.
/// Tasks that would write a different one refuse to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySpec {
    /// Always `p2pmarket uncertainty --shard`.
    pub written_by: String,
    /// Methods, in the order they run ([`Method::as_str`]).
    pub methods: Vec<String>,
    /// Samples of each sampling method.
    pub samples: u64,
    /// Kernel precision on a GPU (`f32`, `f64`).
    pub precision: String,
    /// The 120 forecast inputs (variable-major), as the tasks' market gives them.
    pub forecast_inputs: Vec<f64>,
    /// The scenario (its `[uncertainty]` section is the model).
    pub scenario: Scenario,
}

impl StudySpec {
    /// The spec of a study of `market` (built from `scenario`) under `opts`.
    pub fn new(scenario: &Scenario, market: &Market, opts: &StudyOptions) -> Self {
        StudySpec {
            written_by: WRITTEN_BY.into(),
            methods: opts
                .methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            samples: opts.samples,
            precision: opts.precision.as_str().into(),
            forecast_inputs: forecast_inputs(market).to_vec(),
            scenario: scenario.clone(),
        }
    }

    /// Its file's bytes (pretty JSON with a final newline).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map(|s| s + "\n")
            .map_err(|e| Error::Output {
                context: SPEC_NAME.into(),
                message: e.to_string(),
            })
    }

    /// The methods, parsed.
    pub fn methods(&self) -> Result<Vec<Method>> {
        self.methods.iter().map(|m| m.parse()).collect()
    }

    fn forecast(&self) -> Result<[f64; INPUTS]> {
        self.forecast_inputs
            .as_slice()
            .try_into()
            .map_err(|_| Error::Output {
                context: SPEC_NAME.into(),
                message: format!(
                    "{} forecast inputs where a study has {INPUTS}",
                    self.forecast_inputs.len()
                ),
            })
    }
}

/// One part of a sharded study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudyPart {
    /// The method, `None` for the forecast day.
    pub method: Option<Method>,
    /// The part's number within its method.
    pub index: usize,
    /// Its runs: sample indices `start..end` (a UT form's sigma points, 0..2c+1).
    pub start: u64,
    /// End of its runs (exclusive).
    pub end: u64,
}

impl StudyPart {
    /// Its method's name, or `forecast`.
    pub fn name(&self) -> &'static str {
        self.method.map_or(FORECAST, Method::as_str)
    }

    /// Its file, relative to the output directory.
    pub fn path(&self) -> String {
        format!(
            "{SAMPLES_DIR}/method={}/part-{:05}.parquet",
            self.name(),
            self.index
        )
    }

    /// Its number of runs.
    pub fn runs(&self) -> u64 {
        self.end - self.start
    }
}

/// The parts of a study of `methods` with `samples` samples per sampling method: the
/// forecast day, then each method's parts in order.
pub fn study_parts(methods: &[Method], samples: u64) -> Vec<StudyPart> {
    let mut parts = vec![StudyPart {
        method: None,
        index: 0,
        start: 0,
        end: 1,
    }];
    for &m in methods {
        if m.is_unscented() {
            parts.push(StudyPart {
                method: Some(m),
                index: 0,
                start: 0,
                end: 2 * INPUTS as u64 + 1,
            });
            continue;
        }
        let mut start = 0;
        while start < samples {
            let end = (start + PART_SAMPLES).min(samples);
            parts.push(StudyPart {
                method: Some(m),
                index: (start / PART_SAMPLES) as usize,
                start,
                end,
            });
            start = end;
        }
    }
    parts
}

/// The shard of every part (same order), for `count` shards, balanced by runs.
pub fn assign(parts: &[StudyPart], count: usize) -> Vec<usize> {
    assign_work(
        &parts.iter().map(StudyPart::runs).collect::<Vec<_>>(),
        count,
    )
}

/// The column of output `o` of [`part_schema`]: `{quantity}_h{hh}` or `{quantity}_day`.
fn output_column(quantity: &str, hour: Option<u32>) -> String {
    match hour {
        Some(h) => format!("{quantity}_h{h:02}"),
        None => format!("{quantity}_day"),
    }
}

/// The unit of a quantity's hourly (or, with `day`, daily) output.
fn output_unit(quantity: &str, day: bool) -> &'static str {
    match (quantity, day) {
        ("price", _) => "$/MWh",
        // The day's value is the largest error of its hours, not a sum.
        ("clearing_error_mw", _) => "MW",
        (q, false) if q.ends_with("_cost") => "$/h",
        (q, true) if q.ends_with("_cost") => "$",
        (_, false) => "MW",
        (_, true) => "MWh",
    }
}

fn described(field: Field, unit: &str, description: &str) -> Field {
    field.with_metadata(
        [("unit", unit), ("description", description)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<String, String>>(),
    )
}

/// The table of a part's runs: `sample` (int64, the index within its method), `finite`
/// (false: the run diverged, its outputs are null), `unconverged_hours` and
/// `sg_load_out_of_range_hours` (int64), then one float64 column per output
/// (`exchange_mw_h00` .. `exchange_mw_day`, ..., in the statistics' quantity order; hours
/// 0..23, days summed except the mean price and the largest clearing error).
pub fn part_schema() -> SchemaRef {
    let mut fields = vec![
        described(
            Field::new("sample", DataType::Int64, false),
            "",
            "sample index within its method (a UT's sigma point)",
        ),
        described(
            Field::new("finite", DataType::Boolean, false),
            "",
            "false when the run diverged (its outputs are null)",
        ),
        described(
            Field::new("unconverged_hours", DataType::Int64, false),
            "h",
            "hours that did not converge within the iteration cap",
        ),
        described(
            Field::new("sg_load_out_of_range_hours", DataType::Int64, false),
            "h",
            "hours whose system load lay outside the load table",
        ),
    ];
    for (quantity, hour) in output_names() {
        fields.push(described(
            Field::new(output_column(quantity, hour), DataType::Float64, true),
            output_unit(quantity, hour.is_none()),
            &match hour {
                Some(h) => format!("{quantity} at hour {h}"),
                None => match quantity {
                    "price" => "mean price over the day's hours".to_string(),
                    "clearing_error_mw" => {
                        "largest |clearing_error_mw| over the day's hours".to_string()
                    }
                    _ => format!("{quantity} summed over the day's hours"),
                },
            },
        ));
    }
    Arc::new(Schema::new(fields))
}

/// A part's rows as a table of [`part_schema`].
fn part_table(rows: &[PartRow]) -> Result<RecordBatch> {
    let int = |f: &dyn Fn(&PartRow) -> u32| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| i64::from(f(r))),
        ))
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter()
                .map(|r| i64::try_from(r.sample).expect("at most 1e9 samples")),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.outputs.is_some())),
        )),
        int(&|r| r.unconverged_hours),
        int(&|r| r.sg_load_out_of_range_hours),
    ];
    for o in 0..OUTPUTS {
        columns.push(Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.outputs.map(|v| v[o])),
        )));
    }
    RecordBatch::try_new(part_schema(), columns).map_err(|e| Error::Output {
        context: "uncertainty part".into(),
        message: e.to_string(),
    })
}

/// Reads a part's file: its rows, checked against the schema and the part's sample range.
#[cfg(test)]
fn read_part(path: &Path, part: &StudyPart) -> Result<Vec<PartRow>> {
    let data = std::fs::read(path).map_err(io_err("reading", path))?;
    parse_part(bytes::Bytes::from(data), path, part)
}

/// A part's rows from the bytes of its file `path` (see [`read_part`]).
fn parse_part(data: bytes::Bytes, path: &Path, part: &StudyPart) -> Result<Vec<PartRow>> {
    let bad = |message: String| Error::Output {
        context: path.display().to_string(),
        message,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| bad(format!("unreadable Parquet footer ({e})")))?;
    if builder.schema().fields() != part_schema().fields() {
        return Err(bad("not the schema of an uncertainty part".into()));
    }
    let reader = builder
        .build()
        .map_err(|e| bad(format!("unreadable Parquet file ({e})")))?;
    let mut rows = Vec::with_capacity(part.runs() as usize);
    for batch in reader {
        let b = batch.map_err(|e| bad(format!("unreadable data ({e})")))?;
        let col = |k: usize| b.column(k).as_any();
        let (Some(sample), Some(finite), Some(unconv), Some(oor)) = (
            col(0).downcast_ref::<Int64Array>(),
            col(1).downcast_ref::<BooleanArray>(),
            col(2).downcast_ref::<Int64Array>(),
            col(3).downcast_ref::<Int64Array>(),
        ) else {
            return Err(bad("not the schema of an uncertainty part".into()));
        };
        let outputs: Vec<&Float64Array> = (0..OUTPUTS)
            .filter_map(|o| col(4 + o).downcast_ref::<Float64Array>())
            .collect();
        for i in 0..b.num_rows() {
            let expected = part.start + rows.len() as u64;
            let hours = |a: &Int64Array| u32::try_from(a.value(i)).ok();
            let (Some(u), Some(r)) = (hours(unconv), hours(oor)) else {
                return Err(bad(format!("row {i}: a negative count of hours")));
            };
            if sample.value(i) != expected as i64 {
                return Err(bad(format!(
                    "row {i} holds sample {} where the part's sample {expected} belongs",
                    sample.value(i)
                )));
            }
            let values = finite.value(i).then(|| {
                let mut v = [0.0; OUTPUTS];
                for (x, c) in v.iter_mut().zip(&outputs) {
                    *x = if c.is_null(i) { f64::NAN } else { c.value(i) };
                }
                v
            });
            if values.is_some_and(|v| v.iter().any(|x| !x.is_finite())) {
                return Err(bad(format!(
                    "row {i}: a finite run with a missing or non-finite output"
                )));
            }
            rows.push(PartRow {
                sample: expected,
                outputs: values,
                unconverged_hours: u,
                sg_load_out_of_range_hours: r,
            });
        }
    }
    if rows.len() as u64 != part.runs() {
        return Err(bad(format!(
            "{} rows where the part has {}",
            rows.len(),
            part.runs()
        )));
    }
    Ok(rows)
}

/// One part file as a shard manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartFile {
    /// Path relative to the output directory.
    pub path: String,
    /// Runs (rows).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// The device that computed it (`None`: found complete and not listed before).
    pub adapter: Option<String>,
    /// Seconds spent drawing inputs and building batches.
    pub host_s: f64,
    /// Seconds spent in the engine.
    pub engine_s: f64,
}

/// `shards/shard-{K}-of-{N}.json` of a sharded study: what one task wrote, written when
/// all its parts exist (rewritten by a rerun of the same shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyShardManifest {
    /// The task.
    #[serde(flatten)]
    pub task: TaskRecord,
    /// The load table this shard built (`None`: it built none, every part was done).
    pub load_table: Option<TableInfo>,
    /// Its part files, in plan order.
    pub files: Vec<PartFile>,
}

impl std::ops::Deref for StudyShardManifest {
    type Target = TaskRecord;

    fn deref(&self) -> &TaskRecord {
        &self.task
    }
}

/// What one task of a sharded study did.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyShardReport {
    /// The shard.
    pub shard: Shard,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Parts computed and parts found complete.
    pub parts_written: usize,
    /// Parts found complete.
    pub parts_skipped: usize,
    /// Runs in the shard.
    pub runs: u64,
    /// Devices that computed its parts.
    pub adapters: Vec<String>,
}

/// What a sharded study's task needs besides its directory.
pub struct ShardTask<'a> {
    /// The scenario the market was built from.
    pub scenario: &'a Scenario,
    /// The market.
    pub market: &'a Market,
    /// Methods, N, backend, precision.
    pub opts: &'a StudyOptions,
    /// An open GPU, when the backend has one.
    pub gpu: Option<&'a GpuContext>,
    /// This task's shard.
    pub shard: Shard,
    /// Write beside files that are not the study's.
    pub force: bool,
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |e| Error::io(context.clone(), e)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Output {
        context: path.display().to_string(),
        message: format!("not {what}: {e}"),
    })
}

/// Runs shard `task.shard` of a study into `out` (see the module docs): creates or checks
/// `uncertainty.json`, computes the shard's parts that are not complete on disk, writes
/// its manifest. A directory that holds no `uncertainty.json` must be empty or hold only
/// a study's files (other tasks' parts in flight), unless `task.force`.
pub fn run_shard(task: &ShardTask<'_>, out_dir: &Path) -> Result<StudyShardReport> {
    let started = unix_now();
    let spec = StudySpec::new(task.scenario, task.market, task.opts);
    let spec_json = spec.to_json()?;
    let out = &crate::output::resolve_out(out_dir)?;
    let created_out = !out.exists();
    std::fs::create_dir_all(out).map_err(io_err("creating", out))?;
    // Every task of the job holds the directory's lock shared while it works, so that a
    // failed task undoes its claim only when no other task is there.
    let dir_lock_path = out.join(crate::output::LOCK_NAME);
    let dir_lock = Lock::acquire(&dir_lock_path, LockMode::Shared, &mut || {})?;
    let mut created_spec = false;
    let result = run_shard_in(task, out, out_dir, &spec_json, started, &mut created_spec);
    drop(dir_lock);
    if let Ok(Some(last)) = Lock::try_acquire(&dir_lock_path, LockMode::Exclusive) {
        if result.is_err() {
            undo_claim(out, created_spec);
        }
        last.release_and_remove();
        if result.is_err() && created_out {
            // Best effort: only an empty directory is removed.
            let _ = std::fs::remove_dir(out);
        }
    }
    result
}

/// After a failed task that was the last in `out`: when no task left a part or a shard
/// manifest there, removes what the claim made (`uncertainty.json` when this task wrote
/// it, the empty `samples/` and `shards/` directories), so that a corrected job starts
/// afresh. Best effort: the task's own error is what gets reported.
fn undo_claim(out: &Path, created_spec: bool) {
    let list = |d: &Path| crate::output::list(d).unwrap_or_default();
    let samples = out.join(SAMPLES_DIR);
    let parts = list(&samples)
        .iter()
        .any(|m| !list(&samples.join(m)).is_empty());
    if parts || holds_shard_manifest(out) {
        return;
    }
    if created_spec {
        let _ = std::fs::remove_file(out.join(SPEC_NAME));
    }
    for m in list(&samples) {
        let _ = std::fs::remove_dir(samples.join(m));
    }
    let _ = std::fs::remove_dir(&samples);
    let _ = std::fs::remove_dir(out.join(SHARDS_DIR));
}

/// [`run_shard`] under the directory's shared lock: takes the shard's own lock and runs
/// it; `created_spec` says whether this task wrote `uncertainty.json`.
fn run_shard_in(
    task: &ShardTask<'_>,
    out: &Path,
    out_dir: &Path,
    spec_json: &str,
    started: f64,
    created_spec: &mut bool,
) -> Result<StudyShardReport> {
    std::fs::create_dir_all(out.join(SHARDS_DIR)).map_err(io_err("creating", out))?;
    let lock_path = out
        .join(SHARDS_DIR)
        .join(format!(".{}.lock", task.shard.tag()));
    let Some(lock) = Lock::try_acquire(&lock_path, LockMode::Exclusive)? else {
        return Err(Error::OutputDir {
            path: out_dir.to_path_buf(),
            reason: format!(
                "another p2pmarket process is computing shard {} there; this one writes \
                 nothing",
                task.shard
            ),
        });
    };
    let result = run_shard_locked(task, out, out_dir, spec_json, started, created_spec);
    lock.release_and_remove();
    result
}

fn run_shard_locked(
    task: &ShardTask<'_>,
    out: &Path,
    shown: &Path,
    spec_json: &str,
    started: f64,
    created_spec: &mut bool,
) -> Result<StudyShardReport> {
    if !out.join(SPEC_NAME).exists() {
        // What a first task may find beside it: other tasks' work in progress.
        let ours = [crate::output::LOCK_NAME, SAMPLES_DIR, SHARDS_DIR];
        check_first_task(out, shown, SPEC_NAME, &ours, &[], task.force)?;
    }
    *created_spec = write_once(out, SPEC_NAME, spec_json.as_bytes())?;
    check_spec_file(
        out,
        shown,
        SPEC_NAME,
        spec_json,
        "a task of another study (scenario, methods, samples or precision differ from this \
         task's)",
        "scenario, methods, --samples, --precision",
    )?;
    let manifest_rel = task.shard.manifest_path();
    let previous: Option<StudyShardManifest> = out
        .join(&manifest_rel)
        .is_file()
        .then(|| read_json(&out.join(&manifest_rel), "a shard manifest").ok())
        .flatten();
    let parts = study_parts(&task.opts.methods, task.opts.samples);
    let mine: Vec<StudyPart> = parts
        .iter()
        .zip(assign(&parts, task.shard.count))
        .filter(|(_, s)| *s == task.shard.index)
        .map(|(p, _)| *p)
        .collect();
    let cfg = &task.scenario.uncertainty;
    let mut prepared: Option<PreparedStudy> = None;
    let (mut written, mut skipped) = (0, 0);
    let mut files = Vec::with_capacity(mine.len());
    for part in &mine {
        let rel = part.path();
        let path = out.join(&rel);
        let dir = path.parent().unwrap_or(out);
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        // Temporary files of this part are this shard's (the lock says no other process
        // of it lives): a killed task's are removed.
        let tmp = crate::output::tmp_prefix(&name);
        for n in crate::output::list(dir)? {
            if n.starts_with(&tmp) {
                crate::output::remove_file_if_present(&dir.join(n))?;
            }
        }
        // A complete part on disk is kept (read once: checked, then hashed).
        let complete = std::fs::read(&path)
            .ok()
            .map(bytes::Bytes::from)
            .filter(|data| parse_part(data.clone(), &path, part).is_ok());
        let (data, adapter, host_s, engine_s) = if let Some(data) = complete {
            skipped += 1;
            let before = previous
                .as_ref()
                .and_then(|m| m.files.iter().find(|f| f.path == rel));
            (
                data,
                before.and_then(|f| f.adapter.clone()),
                before.map_or(0.0, |f| f.host_s),
                before.map_or(0.0, |f| f.engine_s),
            )
        } else {
            let prepared = match &mut prepared {
                Some(p) => p,
                None => prepared.insert(PreparedStudy::new(task.market, cfg)?),
            };
            let (rows, report) = evaluate_part(
                prepared,
                task.market,
                cfg,
                task.opts,
                task.gpu,
                part.method,
                part.start..part.end,
            )?;
            let bytes = crate::output::parquet::parquet_bytes(&rel, &part_table(&rows)?)?;
            write_replace(dir, &name, &bytes)?;
            written += 1;
            let data = bytes::Bytes::from(bytes);
            (data, Some(report.adapter), report.host_s, report.engine_s)
        };
        files.push(PartFile {
            path: rel,
            rows: part.runs(),
            bytes: data.len() as u64,
            sha256: sha256_hex(&data),
            adapter,
            host_s,
            engine_s,
        });
    }
    let manifest = StudyShardManifest {
        task: TaskRecord::now(
            task.shard,
            spec_json,
            started,
            (written, skipped),
            mine.iter().map(StudyPart::runs).sum(),
        ),
        load_table: prepared
            .as_ref()
            .map(PreparedStudy::table_info)
            .or_else(|| previous.and_then(|m| m.load_table)),
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Output {
        context: manifest_rel.clone(),
        message: e.to_string(),
    })?;
    write_replace(
        &out.join(SHARDS_DIR),
        &format!("{}.json", task.shard.tag()),
        &json,
    )?;
    let mut adapters: Vec<String> = manifest
        .files
        .iter()
        .filter_map(|f| f.adapter.clone())
        .collect();
    adapters.sort();
    adapters.dedup();
    Ok(StudyShardReport {
        shard: task.shard,
        manifest: shown.join(manifest_rel),
        parts_written: written,
        parts_skipped: skipped,
        runs: manifest.runs,
        adapters,
    })
}

/// A sealed study: what `p2pmarket finalize` writes as an unsharded study would.
pub struct SealedStudy {
    /// The scenario of the study.
    pub scenario: Scenario,
    /// Its statistics and reports.
    pub result: StudyResult,
    /// Samples of each sampling method.
    pub samples: u64,
    /// Kernel precision.
    pub precision: String,
    /// Shards of the job.
    pub shards: usize,
    /// Every device that computed a part, sorted.
    pub adapters: Vec<String>,
    /// The build of the shards.
    pub build: Build,
}

/// Whether `out` holds a sharded uncertainty study (its `uncertainty.json`).
pub fn is_study_dir(out: &Path) -> bool {
    out.join(SPEC_NAME).is_file()
}

/// Refuses (exit 2), even with `--force`, a study run in one process into `out` when it
/// holds a sharded study: its outputs would sit beside the other study's spec and parts,
/// and `finalize` would later put that study's back.
pub fn refuse_sharded_study(out: &Path) -> Result<()> {
    if is_study_dir(out) {
        return Err(Error::OutputDir {
            path: out.to_path_buf(),
            reason: format!(
                "it holds a sharded study ({SPEC_NAME}, sealed by `p2pmarket finalize`); a \
                 study in one process would mix its outputs with that study's, even with \
                 --force; nothing was written. Choose another directory"
            ),
        });
    }
    Ok(())
}

/// Seals the sharded study in `out`: checks that every shard of the job left a manifest
/// of this study and one build, that every part of the plan is listed by exactly the shard
/// [`assign`] gives it and matches its sha256, that no other part file lies in
/// `samples/`; then reduces the parts in sample order. Any failure names what is wrong
/// (every missing part) and nothing is written; the caller writes the outputs.
pub fn finalize(out_dir: &Path) -> Result<SealedStudy> {
    let out = &crate::output::resolve_sealed(out_dir)?;
    let refuse = |reason: String| Error::SealDir {
        path: out_dir.to_path_buf(),
        reason,
    };
    let spec_bytes = std::fs::read(out.join(SPEC_NAME)).map_err(|e| {
        refuse(format!(
            "it holds no readable {SPEC_NAME} ({e}): no sharded study ran there"
        ))
    })?;
    let spec: StudySpec = serde_json::from_slice(&spec_bytes)
        .map_err(|e| refuse(format!("its {SPEC_NAME} is not a study spec ({e})")))?;
    if spec.written_by != WRITTEN_BY {
        return Err(refuse(format!(
            "its {SPEC_NAME} was written by {:?}, not {WRITTEN_BY:?}",
            spec.written_by
        )));
    }
    let spec_sha = sha256_hex(&spec_bytes);
    let methods = spec.methods()?;
    let forecast = spec.forecast()?;
    let manifests = read_manifests(out, &spec_sha).map_err(refuse)?;
    let count = manifests.len();
    let parts = study_parts(&methods, spec.samples);
    let shard_of = assign(&parts, count);
    let mut missing = Vec::new();
    let mut listed: Vec<Option<&PartFile>> = Vec::with_capacity(parts.len());
    for (part, &s) in parts.iter().zip(&shard_of) {
        let rel = part.path();
        let file = manifests[s].files.iter().find(|f| f.path == rel);
        if file.is_none() || !out.join(&rel).is_file() {
            missing.push(format!("{rel} (shard {s}/{count})"));
        }
        listed.push(file);
    }
    if !missing.is_empty() {
        return Err(refuse(format!(
            "{} of {} parts are missing: {}; rerun their shards, then finalize",
            missing.len(),
            parts.len(),
            missing.join(", ")
        )));
    }
    let planned: std::collections::BTreeSet<String> = parts.iter().map(|p| p.path()).collect();
    let samples_dir = out.join(SAMPLES_DIR);
    for partition in crate::output::list(&samples_dir)? {
        for n in crate::output::list(&samples_dir.join(&partition))? {
            let rel = format!("{SAMPLES_DIR}/{partition}/{n}");
            if !n.starts_with('.') && !planned.contains(&rel) {
                return Err(refuse(format!(
                    "{rel} is not a part of this study's plan; remove it, or use a new \
                     directory"
                )));
            }
        }
    }
    let mut adapters: Vec<String> = listed
        .iter()
        .flatten()
        .filter_map(|f| f.adapter.clone())
        .collect();
    adapters.sort();
    adapters.dedup();
    let table = manifests
        .iter()
        .find_map(|m| m.load_table)
        .unwrap_or_default();
    // The reduction, part by part in plan order (host memory stays one part's).
    let cfg = &spec.scenario.uncertainty;
    let timed = |p: usize| listed[p].map_or((0.0, 0.0), |f| (f.host_s, f.engine_s));
    // Each part is read once: its sha256 checked against its shard's manifest, then its
    // rows parsed from the same bytes.
    let load = |p: usize| -> Result<Vec<PartRow>> {
        let (part, s) = (&parts[p], shard_of[p]);
        let rel = part.path();
        let path = out.join(&rel);
        let data = std::fs::read(&path).map_err(io_err("reading", &path))?;
        if listed[p].is_none_or(|f| sha256_hex(&data) != f.sha256) {
            return Err(refuse(format!(
                "{rel} is not the file shard {s}'s manifest lists (sha256 differs); rerun \
                 shard {s}/{count}"
            )));
        }
        parse_part(bytes::Bytes::from(data), &path, part)
    };
    let forecast_outputs = load(0)?
        .first()
        .and_then(|r| r.outputs)
        .ok_or_else(forecast_diverged)?
        .to_vec();
    let reference = Reference::new(cfg, &forecast, forecast_outputs);
    let mut tables = Tables::default();
    let mut reports = Vec::with_capacity(methods.len());
    for &method in &methods {
        let mut report = MethodReport::new(method.as_str());
        let mut reduction = Reduction::new(method, cfg, &forecast, &reference)?;
        if let Some(sigma) = reduction.sigma.take() {
            report.clipped_inputs = sigma.clipped as u64;
        }
        let mut method_adapters = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            if part.method != Some(method) {
                continue;
            }
            let (host_s, engine_s) = timed(p);
            report.host_s += host_s;
            report.engine_s += engine_s;
            if let Some(a) = listed[p].and_then(|f| f.adapter.clone())
                && !method_adapters.contains(&a)
            {
                method_adapters.push(a);
            }
            let t = Instant::now();
            for row in load(p)? {
                report.add_run(
                    row.outputs.is_some(),
                    row.unconverged_hours,
                    row.sg_load_out_of_range_hours,
                );
                reduction.push(row.outputs.as_ref())?;
            }
            report.reduce_s += t.elapsed().as_secs_f64();
        }
        let t = Instant::now();
        reduction.finish(&reference, &mut tables)?;
        report.reduce_s += t.elapsed().as_secs_f64();
        report.adapter = method_adapters.join(", ");
        reports.push(report);
    }
    Ok(SealedStudy {
        result: study_result(reference, tables, reports, table),
        samples: spec.samples,
        precision: spec.precision.clone(),
        shards: count,
        adapters,
        build: manifests[0].task.build.clone(),
        scenario: spec.scenario,
    })
}

/// The shard manifests in `out`, indexed by shard: one job's (one shard count, every shard
/// present once), of the spec with sha256 `spec_sha` and one build; `Err` says what is
/// wrong.
fn read_manifests(
    out: &Path,
    spec_sha: &str,
) -> std::result::Result<Vec<StudyShardManifest>, String> {
    let dir = out.join(SHARDS_DIR);
    let names = crate::output::list(&dir).unwrap_or_default();
    let mut found = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.starts_with("shard-") && n.ends_with(".json"))
    {
        let m: StudyShardManifest =
            read_json(&dir.join(n), "a shard manifest").map_err(|e| e.to_string())?;
        found.push(m);
    }
    let Some(count) = found.first().map(|m| m.shards) else {
        return Err(format!(
            "it holds no shard manifest ({SHARDS_DIR}/shard-K-of-N.json): no shard has finished"
        ));
    };
    if let Some(m) = found.iter().find(|m| m.shards != count) {
        return Err(format!(
            "its shards come from jobs of different sizes ({} and {count} shards); use one \
             shard count per directory",
            m.shards
        ));
    }
    let mut by_shard: Vec<Option<StudyShardManifest>> = vec![None; count];
    for m in found {
        if m.spec_sha256 != spec_sha {
            return Err(format!(
                "shard {}/{count} ran another study (its {SPEC_NAME} differs)",
                m.shard
            ));
        }
        let slot = m.shard;
        by_shard[slot] = Some(m);
    }
    let missing: Vec<String> = (0..count)
        .filter(|&s| by_shard[s].is_none())
        .map(|s| format!("{s}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shards {} have not finished (no manifest); run them, then finalize",
            missing.join(", ")
        ));
    }
    let manifests: Vec<StudyShardManifest> = by_shard.into_iter().flatten().collect();
    if let Some(m) = manifests.iter().find(|m| m.build != manifests[0].build) {
        return Err(format!(
            "shards ran different builds ({} and {}); rerun them with one binary",
            m.build.git_commit, manifests[0].build.git_commit
        ));
    }
    Ok(manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_run_once_in_order() {
        let methods = [Method::UtPaper, Method::Mc, Method::Lhs];
        let parts = study_parts(&methods, 2 * PART_SAMPLES + 7);
        assert_eq!(
            parts[0].path(),
            "samples/method=forecast/part-00000.parquet"
        );
        assert_eq!(parts[1].runs(), 241);
        for m in [Method::Mc, Method::Lhs] {
            let mine: Vec<_> = parts.iter().filter(|p| p.method == Some(m)).collect();
            assert_eq!(mine.len(), 3);
            assert_eq!(mine[0].start, 0);
            assert!(mine.windows(2).all(|w| w[0].end == w[1].start));
            assert_eq!(mine[2].end, 2 * PART_SAMPLES + 7);
            assert_eq!(
                mine.iter().map(|p| p.index).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
        }
        // Every part in exactly one shard, the shards' runs within one part of each other.
        let shard_of = assign(&parts, 3);
        let mut load = [0u64; 3];
        for (p, &s) in parts.iter().zip(&shard_of) {
            load[s] += p.runs();
        }
        assert_eq!(
            load.iter().sum::<u64>(),
            parts.iter().map(StudyPart::runs).sum::<u64>()
        );
        let (lo, hi) = (load.iter().min().unwrap(), load.iter().max().unwrap());
        assert!(hi - lo <= PART_SAMPLES, "{load:?}");
    }

    #[test]
    fn part_schema_names_every_output_with_its_unit() {
        let schema = part_schema();
        assert_eq!(schema.fields().len(), 4 + OUTPUTS);
        let unit = |name: &str| {
            schema
                .field_with_name(name)
                .unwrap()
                .metadata()
                .get("unit")
                .cloned()
        };
        assert_eq!(unit("price_h00").as_deref(), Some("$/MWh"));
        assert_eq!(unit("total_cost_day").as_deref(), Some("$"));
        assert_eq!(unit("sg_cost_h23").as_deref(), Some("$/h"));
        assert_eq!(unit("wind_mw_day").as_deref(), Some("MWh"));
        assert_eq!(unit("clearing_error_mw_day").as_deref(), Some("MW"));
        assert_eq!(unit("price_day").as_deref(), Some("$/MWh"));
        assert_eq!(unit("exchange_mw_h05").as_deref(), Some("MW"));
    }

    #[test]
    fn a_part_table_reads_back_exactly_and_is_checked() {
        let part = StudyPart {
            method: Some(Method::Mc),
            index: 1,
            start: PART_SAMPLES,
            end: PART_SAMPLES + 3,
        };
        let mut v = [0.0; OUTPUTS];
        for (k, x) in v.iter_mut().enumerate() {
            *x = k as f64 * 0.1 - 3.0;
        }
        let rows: Vec<PartRow> = (0..3)
            .map(|k| PartRow {
                sample: PART_SAMPLES + k,
                outputs: (k != 1).then_some(v),
                unconverged_hours: k as u32,
                sg_load_out_of_range_hours: 2 * k as u32,
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.parquet");
        let bytes =
            crate::output::parquet::parquet_bytes("p", &part_table(&rows).unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_part(&path, &part).unwrap(), rows);
        // Another part's range, or a truncated file, is refused.
        let other = StudyPart {
            start: 0,
            end: 3,
            ..part
        };
        let e = read_part(&path, &other).unwrap_err().to_string();
        assert!(
            e.contains("holds sample 4096 where the part's sample 0 belongs"),
            "{e}"
        );
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_part(&path, &part).is_err());
    }
}
