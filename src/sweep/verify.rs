//! [`verify_sweep`]: re-checks a finished sweep from its files alone.
//!
//! In order, stopping at the first failure:
//! 1. `manifest.json` parses and carries an integrity record of a known version;
//! 2. its Ed25519 signature verifies (`verify_strict`) over
//!    [`super::manifest::signing_message`] under the key it names, and
//!    that key is the anchor when one is given;
//! 3. every listed file exists, and every file in the directory but `manifest.json` (and a
//!    sharded sweep's `shards/`) is listed (the paths are sorted and unique);
//! 4. every file's size and SHA-256 match;
//! 5. per part (in path order): both files hold the rows the manifest counts; the Merkle
//!    root over its `runs` rows `(run, settlement_head)`
//!    ([`crate::ledger::chain`]) matches the manifest; its runs are consecutive; its
//!    `run_hours` rows are exactly those runs' hours `0..24` in order; and each run's
//!    settlement chain recomputed from its `run_hours` `price` and `exchange_mw` equals its
//!    `settlement_head`;
//! 6. the parts together hold each run `0..total_runs` exactly once.
//!
//! A sweep written with `run_hours = false` (its `sweep.json`, covered by the signature
//! through its SHA-256, says so) has no `run_hours` files, and may list none: step 5 then
//! checks each `runs` part's rows, root and consecutive runs, and the settlement chains,
//! which need the hours, are not recomputed ([`SweepVerified::heads_recomputed`]).
//!
//! What this proves and what not: the files are those the signed manifest lists, and each
//! run's hourly prices and exchanges are those its head and its part's root commit to. The
//! sweep key derives from the seed, which the manifest states, so whoever holds the files
//! can sign altered ones consistently; a signature is worth what the channel that gave the
//! reader the expected key (the anchor) or the expected manifest is worth. Columns other
//! than `run`, `settlement_head`, `price`, `exchange_mw` and `hour` are covered by the files'
//! SHA-256 in the signed manifest only.
//!
//! The checks on decoded data ([`check_signature`], [`check_part`]) are pure; reading files
//! happens in [`verify_sweep`] and the readers beside it.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, Float64Array, StringArray};
use arrow::compute::concat_batches;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::manifest::{
    INTEGRITY_VERSION, MANIFEST_NAME, Manifest, SPEC_NAME, fixed_hex, hash_hex, sha256_file,
    signing_message,
};
use crate::ledger::{Hash, PublicKey, part_root, settlement_head, verify_signature};
use crate::microgrid::HOURS;
use crate::output::integers::{ColumnError, Unsigned, unsigned_column};

/// What is wrong with a sweep; [`code`](Self::code) is a stable small number per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SweepVerifyErrorKind {
    /// A file or directory cannot be read (an I/O error other than a missing file).
    Io,
    /// `manifest.json` is missing, is not a manifest, has no or a malformed integrity
    /// record, or lists files inconsistently (unsorted, a part without its pair).
    Manifest,
    /// The manifest's signature does not verify.
    Signature,
    /// The manifest is signed by another key than the anchor.
    AnchorKey,
    /// A file the manifest lists is not there.
    MissingFile,
    /// A file is there that the manifest does not list.
    UnlistedFile,
    /// A file's size or SHA-256 differs from the manifest's.
    FileHash,
    /// A part file does not decode as the table it should be (after its hash matched).
    Unreadable,
    /// A part's `runs` rows do not give the Merkle root in the manifest.
    MerkleRoot,
    /// Rows out of place: runs not consecutive or repeated or missing, `run_hours` rows
    /// not the runs' hours in order, a malformed `settlement_head`.
    Rows,
    /// A run's settlement chain over its `run_hours` rows differs from its
    /// `settlement_head`.
    SettlementHead,
}

impl SweepVerifyErrorKind {
    /// A stable small number per kind, e.g. for exit codes: 1 io, 2 manifest, 3 signature,
    /// 4 anchor key, 5 missing file, 6 unlisted file, 7 file hash, 8 unreadable,
    /// 9 merkle root, 10 rows, 11 settlement head.
    pub fn code(self) -> u8 {
        match self {
            SweepVerifyErrorKind::Io => 1,
            SweepVerifyErrorKind::Manifest => 2,
            SweepVerifyErrorKind::Signature => 3,
            SweepVerifyErrorKind::AnchorKey => 4,
            SweepVerifyErrorKind::MissingFile => 5,
            SweepVerifyErrorKind::UnlistedFile => 6,
            SweepVerifyErrorKind::FileHash => 7,
            SweepVerifyErrorKind::Unreadable => 8,
            SweepVerifyErrorKind::MerkleRoot => 9,
            SweepVerifyErrorKind::Rows => 10,
            SweepVerifyErrorKind::SettlementHead => 11,
        }
    }

    /// A stable short name (snake case).
    pub fn name(self) -> &'static str {
        match self {
            SweepVerifyErrorKind::Io => "io",
            SweepVerifyErrorKind::Manifest => "manifest",
            SweepVerifyErrorKind::Signature => "signature",
            SweepVerifyErrorKind::AnchorKey => "anchor_key",
            SweepVerifyErrorKind::MissingFile => "missing_file",
            SweepVerifyErrorKind::UnlistedFile => "unlisted_file",
            SweepVerifyErrorKind::FileHash => "file_hash",
            SweepVerifyErrorKind::Unreadable => "unreadable",
            SweepVerifyErrorKind::MerkleRoot => "merkle_root",
            SweepVerifyErrorKind::Rows => "rows",
            SweepVerifyErrorKind::SettlementHead => "settlement_head",
        }
    }
}

/// The first problem [`verify_sweep`] found: its kind, the file (relative, `/`-separated),
/// the row in that file and the run, where they apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{}{}{reason} [{}]",
    file.as_ref().map_or(String::new(), |f| format!("{f}: ")),
    row.map_or(String::new(), |r| format!("row {r}: ")),
    run.map_or(String::new(), |r| format!("run {r}: ")),
    kind.name()
)]
pub struct SweepVerifyError {
    /// What is wrong.
    pub kind: SweepVerifyErrorKind,
    /// The file at fault, relative to the sweep directory.
    pub file: Option<String>,
    /// The row in `file` (0-based).
    pub row: Option<u64>,
    /// The run.
    pub run: Option<u64>,
    /// Why, in words.
    pub reason: String,
}

impl SweepVerifyError {
    fn new(kind: SweepVerifyErrorKind, file: Option<&str>, reason: impl Into<String>) -> Self {
        SweepVerifyError {
            kind,
            file: file.map(str::to_string),
            row: None,
            run: None,
            reason: reason.into(),
        }
    }

    fn at(mut self, row: Option<u64>, run: Option<u64>) -> Self {
        self.row = row;
        self.run = run;
        self
    }
}

use SweepVerifyErrorKind as Kind;

fn fail(kind: Kind, file: &str, reason: impl Into<String>) -> SweepVerifyError {
    SweepVerifyError::new(kind, Some(file), reason)
}

/// What a successful [`verify_sweep`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepVerified {
    /// Files checked (`manifest.json` aside).
    pub files: usize,
    /// Parts (each a `runs` file, with its `run_hours` file unless the sweep writes none).
    pub parts: usize,
    /// Runs, each with its chain recomputed when [`SweepVerified::heads_recomputed`].
    pub runs: u64,
    /// `run_hours` rows.
    pub run_hours_rows: u64,
    /// Whether every run's settlement chain was recomputed from its `run_hours` rows:
    /// false for a sweep written with `run_hours = false`, which has none.
    pub heads_recomputed: bool,
    /// The key that signed the manifest.
    pub public_key: PublicKey,
    /// Whether that key was checked against an anchor.
    pub anchored: bool,
}

/// Checks the manifest's integrity record: its signature over
/// [`super::manifest::signing_message`], and its key against `anchor_key`
/// when given. Returns the signing key.
pub fn check_signature(
    manifest: &Manifest,
    anchor_key: Option<PublicKey>,
) -> Result<PublicKey, SweepVerifyError> {
    let bad = |kind, reason: String| fail(kind, MANIFEST_NAME, reason);
    let Some(integrity) = &manifest.integrity else {
        return Err(bad(
            Kind::Manifest,
            "no `integrity` record (unsigned: written before sweeps were signed)".into(),
        ));
    };
    if integrity.version != INTEGRITY_VERSION {
        return Err(bad(
            Kind::Manifest,
            format!(
                "integrity version {} (this build knows {INTEGRITY_VERSION})",
                integrity.version
            ),
        ));
    }
    let key: PublicKey = fixed_hex(&integrity.public_key)
        .map_err(|e| bad(Kind::Manifest, format!("integrity.public_key {e}")))?;
    let signature: [u8; 64] = fixed_hex(&integrity.signature)
        .map_err(|e| bad(Kind::Manifest, format!("integrity.signature {e}")))?;
    let message = signing_message(manifest, &key).map_err(|e| bad(Kind::Manifest, e))?;
    verify_signature(&key, &message, &signature).map_err(|e| {
        bad(
            Kind::Signature,
            format!(
                "the signature under key {} is refused: {e}",
                integrity.public_key
            ),
        )
    })?;
    if let Some(anchor) = anchor_key
        && anchor != key
    {
        return Err(bad(
            Kind::AnchorKey,
            format!(
                "signed by key {}, not by the anchor {}",
                integrity.public_key,
                hex::encode(anchor)
            ),
        ));
    }
    Ok(key)
}

/// The columns of a `run_hours` part that the settlement chains cover.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourRows {
    /// `run`.
    pub run: Vec<u64>,
    /// `hour`.
    pub hour: Vec<u32>,
    /// `price`, $/MWh.
    pub price: Vec<f64>,
    /// `exchange_mw`, MW.
    pub exchange_mw: Vec<f64>,
}

/// Checks one part from its decoded rows: the Merkle root of `runs` (rows `(run, head)`)
/// against `merkle_root`, consecutive runs, the `run_hours` rows' places, and every run's
/// settlement chain. `runs_file` and `hours_file` name the files in errors.
pub fn check_part(
    runs_file: &str,
    hours_file: &str,
    runs: &[(u64, Hash)],
    merkle_root: &Hash,
    hours: &HourRows,
) -> Result<(), SweepVerifyError> {
    check_runs_part(runs_file, runs, merkle_root)?;
    check_hours_part(runs_file, hours_file, runs, hours)
}

/// The checks of [`check_part`] on the `runs` rows alone: the Merkle root and consecutive
/// runs (a part of a sweep without `run_hours`).
pub fn check_runs_part(
    runs_file: &str,
    runs: &[(u64, Hash)],
    merkle_root: &Hash,
) -> Result<(), SweepVerifyError> {
    let root = part_root(runs);
    if root != *merkle_root {
        return Err(fail(
            Kind::MerkleRoot,
            runs_file,
            format!(
                "the Merkle root of its {} rows is {}, the manifest says {}",
                runs.len(),
                hex::encode(root),
                hex::encode(merkle_root)
            ),
        ));
    }
    for (i, w) in runs.windows(2).enumerate() {
        if w[1].0 != w[0].0.wrapping_add(1) {
            return Err(fail(
                Kind::Rows,
                runs_file,
                format!(
                    "run {} follows run {} (a part's runs are consecutive)",
                    w[1].0, w[0].0
                ),
            )
            .at(Some(i as u64 + 1), Some(w[1].0)));
        }
    }
    Ok(())
}

/// The checks of [`check_part`] on the `run_hours` rows: their places and every run's
/// settlement chain.
fn check_hours_part(
    runs_file: &str,
    hours_file: &str,
    runs: &[(u64, Hash)],
    hours: &HourRows,
) -> Result<(), SweepVerifyError> {
    let n = hours.run.len();
    if [hours.hour.len(), hours.price.len(), hours.exchange_mw.len()] != [n; 3] {
        return Err(fail(
            Kind::Unreadable,
            hours_file,
            "columns of unequal lengths",
        ));
    }
    for (i, (run, head)) in runs.iter().enumerate() {
        let start = i * HOURS;
        for h in 0..HOURS {
            let row = start + h;
            let found = (row < n).then(|| (hours.run[row], hours.hour[row]));
            if found != Some((*run, h as u32)) {
                let what = match found {
                    Some((r, k)) => format!("holds run {r} hour {k}"),
                    None => "is missing".to_string(),
                };
                return Err(fail(
                    Kind::Rows,
                    hours_file,
                    format!("{what} where run {run} hour {h} belongs (rows follow the runs part, 24 per run)"),
                )
                .at(Some(row as u64), Some(*run)));
            }
        }
        let range = start..start + HOURS;
        let got = settlement_head(*run, range.map(|r| (hours.price[r], hours.exchange_mw[r])));
        if got != *head {
            return Err(fail(
                Kind::SettlementHead,
                hours_file,
                format!(
                    "the settlement chain over rows {start}..{} is {}, its runs row {i} in {runs_file} holds {}",
                    start + HOURS,
                    hex::encode(got),
                    hex::encode(head)
                ),
            )
            .at(Some(start as u64), Some(*run)));
        }
    }
    if n > runs.len() * HOURS {
        let row = runs.len() * HOURS;
        return Err(fail(
            Kind::Rows,
            hours_file,
            format!(
                "rows after the last run's hours (run {} hour {}), which the runs part lacks",
                hours.run[row], hours.hour[row]
            ),
        )
        .at(Some(row as u64), Some(hours.run[row])));
    }
    Ok(())
}

/// Every file under `dir`, relative and `/`-separated, sorted.
fn walk(dir: &Path) -> Result<Vec<String>, SweepVerifyError> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), SweepVerifyError> {
        let io = |e: std::io::Error| {
            SweepVerifyError::new(Kind::Io, None, format!("listing {}: {e}", dir.display()))
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            // Not followed: a sweep writes directories and regular files only.
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                go(root, &path, out)?;
            } else if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let rel = parts.join("/");
                if !kind.is_file() {
                    // A link, FIFO or device would be followed, block or never end.
                    return Err(fail(
                        Kind::UnlistedFile,
                        &rel,
                        "not a regular file (a link, FIFO or device; a sweep writes none)",
                    ));
                }
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The named columns of a Parquet file, as one batch (rows are the file's rows).
fn read_columns(path: &Path, rel: &str, names: &[&str]) -> Result<RecordBatch, SweepVerifyError> {
    let file = File::open(path).map_err(|e| fail(Kind::Io, rel, format!("cannot open: {e}")))?;
    let unreadable = |what: String| fail(Kind::Unreadable, rel, what);
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| unreadable(format!("unreadable Parquet footer ({e})")))?;
    let schema = builder.schema().clone();
    let indices = names
        .iter()
        .map(|n| {
            schema
                .index_of(n)
                .map_err(|_| unreadable(format!("no column `{n}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| unreadable(format!("unreadable Parquet file ({e})")))?;
    let projected = reader.schema();
    let batches = reader
        .map(|b| b.map_err(|e| unreadable(format!("unreadable data ({e})"))))
        .collect::<Result<Vec<_>, _>>()?;
    concat_batches(&projected, &batches).map_err(|e| unreadable(format!("unreadable data ({e})")))
}

/// Column `name` of `batch` as `T`, without nulls.
fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    rel: &str,
    name: &str,
) -> Result<&'a T, SweepVerifyError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| fail(Kind::Unreadable, rel, format!("no column `{name}`")))?;
    let typed = array.as_any().downcast_ref::<T>().ok_or_else(|| {
        fail(
            Kind::Unreadable,
            rel,
            format!("column `{name}` has another type"),
        )
    })?;
    if typed.null_count() > 0 {
        return Err(fail(
            Kind::Unreadable,
            rel,
            format!("nulls in column `{name}`"),
        ));
    }
    Ok(typed)
}

/// The count or index column `name` of `batch` (see [`unsigned_column`]): a missing,
/// mistyped or null column is unreadable, a negative value is a row out of place.
fn index_column<T: Unsigned>(
    batch: &RecordBatch,
    rel: &str,
    name: &str,
) -> Result<Vec<T>, SweepVerifyError> {
    unsigned_column(batch, name).map_err(|e| {
        let kind = match e {
            ColumnError::OutOfRange { .. } => Kind::Rows,
            _ => Kind::Unreadable,
        };
        fail(kind, rel, e.to_string()).at(e.row().map(|r| r as u64), None)
    })
}

/// The `(run, settlement_head)` rows of a `runs` part file, in row order.
pub fn read_runs_rows(path: &Path, rel: &str) -> Result<Vec<(u64, Hash)>, SweepVerifyError> {
    let batch = read_columns(path, rel, &["run", "settlement_head"])?;
    let run = index_column::<u64>(&batch, rel, "run")?;
    let head = column::<StringArray>(&batch, rel, "settlement_head")?;
    run.into_iter()
        .enumerate()
        .map(|(k, r)| {
            let h = hash_hex(head.value(k)).map_err(|e| {
                fail(Kind::Rows, rel, format!("settlement_head {e}")).at(Some(k as u64), Some(r))
            })?;
            Ok((r, h))
        })
        .collect()
}

/// The chain's columns of a `run_hours` part file.
pub fn read_hour_rows(path: &Path, rel: &str) -> Result<HourRows, SweepVerifyError> {
    let batch = read_columns(path, rel, &["run", "hour", "price", "exchange_mw"])?;
    let f64s = |name| Ok(column::<Float64Array>(&batch, rel, name)?.values().to_vec());
    Ok(HourRows {
        run: index_column(&batch, rel, "run")?,
        hour: index_column(&batch, rel, "hour")?,
        price: f64s("price")?,
        exchange_mw: f64s("exchange_mw")?,
    })
}

/// Whether the sweep in `dir` writes `run_hours`: its `sweep.json` (already checked
/// against the signed manifest) without `"run_hours": false`.
///
/// The manifest's copy of the sweep (`sweep`, unsigned) must be `sweep.json`'s (signed
/// through its hash), so a reader of the manifest alone is not shown another sweep.
fn sweep_writes_run_hours(
    dir: &Path,
    manifest_copy: &serde_json::Value,
) -> Result<bool, SweepVerifyError> {
    let text = std::fs::read(dir.join(SPEC_NAME))
        .map_err(|e| fail(Kind::Io, SPEC_NAME, format!("cannot read: {e}")))?;
    let spec: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| fail(Kind::Manifest, SPEC_NAME, format!("not a sweep: {e}")))?;
    if &spec != manifest_copy {
        return Err(fail(
            Kind::Manifest,
            MANIFEST_NAME,
            format!("its `sweep` differs from {SPEC_NAME} (edited?)"),
        ));
    }
    match spec.get("run_hours") {
        None => Ok(true),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(fail(
            Kind::Manifest,
            SPEC_NAME,
            format!("run_hours is {other}, not a boolean"),
        )),
    }
}

/// Verifies the sweep in `dir` (see the [module doc](self) for every check, in order) and
/// returns what it established, or the first problem: its kind, file, row and run.
/// With `anchor_key`, the manifest must be signed by that key.
pub fn verify_sweep(
    dir: &Path,
    anchor_key: Option<[u8; 32]>,
) -> Result<SweepVerified, SweepVerifyError> {
    let text = std::fs::read(dir.join(MANIFEST_NAME)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail(
                Kind::Manifest,
                MANIFEST_NAME,
                "missing (the sweep did not finish)",
            )
        } else {
            fail(Kind::Io, MANIFEST_NAME, format!("cannot read: {e}"))
        }
    })?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        fail(
            Kind::Manifest,
            MANIFEST_NAME,
            format!("not a sweep manifest: {e}"),
        )
    })?;
    let public_key = check_signature(&manifest, anchor_key)?;

    let listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if let Some(w) = listed.windows(2).find(|w| w[0] >= w[1]) {
        return Err(fail(
            Kind::Manifest,
            MANIFEST_NAME,
            format!(
                "files are not sorted and unique by path ({} before {})",
                w[0], w[1]
            ),
        ));
    }
    // A sharded sweep's shard manifests are the tasks' working records, checked by
    // `finalize`; the dataset is what manifest.json lists. A sweep run by one process has
    // no `shards/`: there it is unlisted like any other file.
    let shards_prefix = format!("{}/", super::shard::SHARDS_DIR);
    let sharded = !manifest.shards.is_empty();
    let on_disk: BTreeSet<String> = walk(dir)?
        .into_iter()
        .filter(|p| p != MANIFEST_NAME && !(sharded && p.starts_with(&shards_prefix)))
        .collect();
    if let Some(missing) = listed.iter().find(|p| !on_disk.contains(**p)) {
        return Err(fail(
            Kind::MissingFile,
            missing,
            "listed in manifest.json but missing",
        ));
    }
    let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
    if let Some(extra) = on_disk.iter().find(|p| !listed_set.contains(p.as_str())) {
        return Err(fail(
            Kind::UnlistedFile,
            extra,
            "on disk but not in manifest.json",
        ));
    }
    for f in &manifest.files {
        let (sha256, bytes) =
            sha256_file(&dir.join(&f.path)).map_err(|e| fail(Kind::Io, &f.path, e.to_string()))?;
        if bytes != f.bytes {
            return Err(fail(
                Kind::FileHash,
                &f.path,
                format!("{bytes} bytes, the manifest says {}", f.bytes),
            ));
        }
        if sha256 != f.sha256 {
            return Err(fail(
                Kind::FileHash,
                &f.path,
                format!("sha256 {sha256}, the manifest says {}", f.sha256),
            ));
        }
    }

    let run_hours = sweep_writes_run_hours(dir, &manifest.sweep)?;
    // Parts: each `runs` file with its root, and its `run_hours` pair.
    let mut parts = Vec::new();
    for f in &manifest.files {
        let is_part = |table: &str| f.path.starts_with(table) && f.path.ends_with(".parquet");
        if is_part("runs/") {
            let root = f
                .merkle_root
                .as_deref()
                .ok_or_else(|| fail(Kind::Manifest, &f.path, "no merkle_root in manifest.json"))
                .and_then(|r| {
                    hash_hex(r)
                        .map_err(|e| fail(Kind::Manifest, &f.path, format!("merkle_root {e}")))
                })?;
            let hours = format!("run_hours/{}", &f.path["runs/".len()..]);
            if run_hours && !listed_set.contains(hours.as_str()) {
                return Err(fail(
                    Kind::Manifest,
                    &f.path,
                    format!("its pair {hours} is not listed"),
                ));
            }
            parts.push((f.path.as_str(), hours, root));
        } else if f.merkle_root.is_some() {
            return Err(fail(
                Kind::Manifest,
                &f.path,
                "a merkle_root on a file that is no runs part",
            ));
        } else if is_part("run_hours/") {
            if !run_hours {
                return Err(fail(
                    Kind::Manifest,
                    &f.path,
                    format!("a run_hours part, but {SPEC_NAME} says the sweep writes none"),
                ));
            }
            let runs = format!("runs/{}", &f.path["run_hours/".len()..]);
            if !listed_set.contains(runs.as_str()) {
                return Err(fail(
                    Kind::Manifest,
                    &f.path,
                    format!("its pair {runs} is not listed"),
                ));
            }
        }
    }
    if parts.len() != manifest.parts {
        return Err(fail(
            Kind::Manifest,
            MANIFEST_NAME,
            format!(
                "{} runs parts listed, `parts` says {}",
                parts.len(),
                manifest.parts
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut hour_rows = 0u64;
    for (runs_file, hours_file, root) in &parts {
        let runs = read_runs_rows(&dir.join(runs_file), runs_file)?;
        let hours = if run_hours {
            Some(read_hour_rows(&dir.join(hours_file), hours_file)?)
        } else {
            None
        };
        let mut counts = vec![(*runs_file, runs.len())];
        if let Some(h) = &hours {
            counts.push((hours_file.as_str(), h.run.len()));
        }
        for (file, found) in counts {
            let listed = manifest
                .files
                .iter()
                .find(|f| f.path == file)
                .map_or(0, |f| f.rows);
            if found as u64 != listed {
                return Err(fail(
                    Kind::Rows,
                    file,
                    format!("{found} rows, the manifest says {listed}"),
                ));
            }
        }
        match &hours {
            Some(h) => check_part(runs_file, hours_file, &runs, root, h)?,
            None => check_runs_part(runs_file, &runs, root)?,
        }
        for (row, (run, _)) in runs.iter().enumerate() {
            if *run >= manifest.total_runs || !seen.insert(*run) {
                return Err(fail(
                    Kind::Rows,
                    runs_file,
                    format!(
                        "run {run} is {} (runs are 0..{}, each once)",
                        if *run >= manifest.total_runs {
                            "out of range"
                        } else {
                            "repeated"
                        },
                        manifest.total_runs
                    ),
                )
                .at(Some(row as u64), Some(*run)));
            }
        }
        hour_rows += hours.map_or(0, |h| h.run.len() as u64);
    }
    if seen.len() as u64 != manifest.total_runs {
        let missing = (0..manifest.total_runs)
            .find(|r| !seen.contains(r))
            .unwrap_or(0);
        return Err(SweepVerifyError::new(
            Kind::Rows,
            None,
            format!(
                "run {missing} is in no part ({} of {} runs found)",
                seen.len(),
                manifest.total_runs
            ),
        )
        .at(None, Some(missing)));
    }
    Ok(SweepVerified {
        files: manifest.files.len(),
        parts: parts.len(),
        runs: seen.len() as u64,
        run_hours_rows: hour_rows,
        heads_recomputed: run_hours,
        public_key,
        anchored: anchor_key.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u64) -> (Vec<(u64, Hash)>, HourRows) {
        let mut hours = HourRows::default();
        let mut runs = Vec::new();
        for run in 10..10 + n {
            let day: Vec<(f64, f64)> = (0..HOURS)
                .map(|h| (30.0 + h as f64, run as f64 - h as f64))
                .collect();
            runs.push((run, settlement_head(run, day.iter().copied())));
            for (h, (p, e)) in day.into_iter().enumerate() {
                hours.run.push(run);
                hours.hour.push(h as u32);
                hours.price.push(p);
                hours.exchange_mw.push(e);
            }
        }
        (runs, hours)
    }

    fn kind(
        runs: &[(u64, Hash)],
        root: &Hash,
        hours: &HourRows,
    ) -> Result<(), (Kind, Option<u64>, Option<u64>)> {
        check_part("r", "h", runs, root, hours).map_err(|e| (e.kind, e.row, e.run))
    }

    #[test]
    fn check_part_names_each_fault() {
        let (runs, hours) = part(3);
        let root = part_root(&runs);
        assert_eq!(kind(&runs, &root, &hours), Ok(()));
        assert_eq!(
            kind(&runs, &[0; 32], &hours).unwrap_err().0,
            Kind::MerkleRoot
        );
        let mut h = hours.clone();
        h.price[30] += 1e-9;
        assert_eq!(
            kind(&runs, &root, &h),
            Err((Kind::SettlementHead, Some(24), Some(11)))
        );
        let mut h = hours.clone();
        h.exchange_mw[71] = -h.exchange_mw[71];
        assert_eq!(
            kind(&runs, &root, &h),
            Err((Kind::SettlementHead, Some(48), Some(12)))
        );
        let mut h = hours.clone();
        for col in [&mut h.price, &mut h.exchange_mw] {
            col.remove(30);
        }
        h.run.remove(30);
        h.hour.remove(30);
        assert_eq!(
            kind(&runs, &root, &h),
            Err((Kind::Rows, Some(30), Some(11)))
        );
        let mut h = hours.clone();
        h.hour.swap(3, 4);
        assert_eq!(kind(&runs, &root, &h), Err((Kind::Rows, Some(3), Some(10))));
        let (more_runs, more_hours) = part(4);
        assert_eq!(
            kind(&runs, &root, &more_hours),
            Err((Kind::Rows, Some(72), Some(13)))
        );
        let gap = vec![more_runs[0], more_runs[2]];
        assert_eq!(
            kind(&gap, &part_root(&gap), &more_hours).unwrap_err().0,
            Kind::Rows
        );
    }

    #[test]
    fn codes_are_stable_and_distinct() {
        let all = [
            Kind::Io,
            Kind::Manifest,
            Kind::Signature,
            Kind::AnchorKey,
            Kind::MissingFile,
            Kind::UnlistedFile,
            Kind::FileHash,
            Kind::Unreadable,
            Kind::MerkleRoot,
            Kind::Rows,
            Kind::SettlementHead,
        ];
        let codes: Vec<u8> = all.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=11).collect::<Vec<u8>>());
        let names: BTreeSet<&str> = all.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
