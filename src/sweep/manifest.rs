//! `manifest.json`: what a finished sweep is (its spec, the code that ran it, the engines)
//! and the sha256 of every file it wrote, so a dataset can be checked and cited.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::AdapterInfo;
use crate::error::{Error, Result};
use crate::sweep::tables::ENGINE_KEY;

/// Name of the manifest in the sweep's output directory.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the sweep's identity file (its spec as JSON), written before any part.
pub const SPEC_NAME: &str = "sweep.json";

/// One file of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Rows (Parquet files; 0 for other files).
    pub rows: u64,
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// Schema metadata key of every part file: the device that computed it, as JSON
/// ([`ManifestAdapter`]).
pub const ADAPTER_KEY: &str = "p2pmarket.adapter";

/// A device that computed parts (the engine's [`AdapterInfo`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestAdapter {
    /// Adapter name.
    pub name: String,
    /// Device type.
    pub device_type: String,
    /// Driver name.
    pub driver: String,
    /// Driver details.
    pub driver_info: String,
    /// Graphics backend, or `cpu`.
    pub backend: String,
}

impl From<&AdapterInfo> for ManifestAdapter {
    /// The record of a device. The CPU backend's thread count is left out of its name: it
    /// does not change a single bit of a part, and parts must not differ by it.
    fn from(a: &AdapterInfo) -> Self {
        ManifestAdapter {
            name: if a.backend == "cpu" {
                "rayon CPU".into()
            } else {
                a.name.clone()
            },
            device_type: a.device_type.clone(),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            backend: a.backend.clone(),
        }
    }
}

/// The content of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Version of the p2pmarket crate that wrote the sweep.
    pub p2pmarket_version: String,
    /// `git rev-parse HEAD` of the source tree, `P2PMARKET_GIT_COMMIT`, or `unknown`.
    pub git_commit: String,
    /// Whether that tree had uncommitted changes (absent when git was not available).
    pub git_dirty: Option<bool>,
    /// The sweep file's path as given.
    pub sweep_file: String,
    /// The sweep file's text.
    pub sweep_text: String,
    /// The parsed sweep (base scenario resolved), as in `sweep.json`.
    pub sweep: serde_json::Value,
    /// Seed of the uniform draws.
    pub seed: u64,
    /// Runs in the sweep.
    pub total_runs: u64,
    /// Rows of `runs` per part (the last part of a partition may hold fewer).
    pub runs_per_part: u64,
    /// The hive partitions (`pcc_bus=...`), in run order.
    pub pcc_buses: Vec<usize>,
    /// Parts per table, over all partitions.
    pub parts: usize,
    /// Engines that computed the parts (`cpu-f64`, `gpu-f32`, `gpu-f64`), sorted; more than
    /// one means a resumed sweep mixed engines.
    pub engines: Vec<String>,
    /// The devices that computed the parts (from each part's [`ADAPTER_KEY`]), sorted;
    /// empty when no part carries one (parts of versions before 0.1 recorded none).
    pub adapters: Vec<ManifestAdapter>,
    /// Every file but the manifest, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// SHA-256 of a file, lower-case hex, and its size.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// What a part file's footer says.
#[derive(Debug, Clone, PartialEq)]
pub struct PartFooter {
    /// Rows.
    pub rows: u64,
    /// The engine tag ([`ENGINE_KEY`]).
    pub engine: Option<String>,
    /// The device that computed it ([`ADAPTER_KEY`]).
    pub adapter: Option<ManifestAdapter>,
}

/// Row count, engine tag and device of a Parquet file, from its footer.
pub fn parquet_footer(path: &Path) -> Result<PartFooter> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::Output {
        context: path.display().to_string(),
        message: format!("reading the Parquet footer: {e}"),
    })?;
    let meta = builder.schema().metadata();
    Ok(PartFooter {
        rows: builder.metadata().file_metadata().num_rows().max(0) as u64,
        engine: meta.get(ENGINE_KEY).cloned(),
        adapter: meta
            .get(ADAPTER_KEY)
            .and_then(|j| serde_json::from_str(j).ok()),
    })
}

/// Checks a part file completely: its footer, its schema's fields, and every row decodes;
/// `Err` says what is wrong, for the notice that it is recomputed.
pub fn verify_part_file(
    path: &Path,
    rows: u64,
    schema: &arrow::datatypes::Schema,
) -> std::result::Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open it ({e})"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("unreadable Parquet footer ({e})"))?;
    if builder.schema().fields() != schema.fields() {
        return Err("not the schema of this table".into());
    }
    let reader = builder
        .build()
        .map_err(|e| format!("unreadable Parquet file ({e})"))?;
    let mut found = 0u64;
    for batch in reader {
        found += batch
            .map_err(|e| format!("unreadable data ({e})"))?
            .num_rows() as u64;
    }
    if found != rows {
        return Err(format!("{found} rows where the part has {rows}"));
    }
    Ok(())
}

/// The commit of the source tree: `git rev-parse HEAD` in the crate's source directory,
/// else the environment variable `P2PMARKET_GIT_COMMIT`, else `unknown`; and whether the
/// tree is dirty (None when git could not tell).
pub fn git_commit() -> (String, Option<bool>) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty()) {
        Some(commit) => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
            (commit, dirty)
        }
        None => (
            std::env::var("P2PMARKET_GIT_COMMIT")
                .ok()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc.txt"), b"abc").unwrap();
        let (hash, bytes) = sha256_file(&dir.path().join("abc.txt")).unwrap();
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(bytes, 3);
    }

    #[test]
    fn git_commit_is_never_empty() {
        assert!(!git_commit().0.is_empty());
    }
}
