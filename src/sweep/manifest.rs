//! `manifest.json`: what a finished sweep is (its spec, the code that ran it, the engines)
//! and the sha256 of every file it wrote, so a dataset can be checked and cited; the Merkle
//! root of every `runs` part, and an Ed25519 signature over all of it
//! ([`signing_message`]), checked by [`super::verify::verify_sweep`].

use std::fs::File;
use std::io::Read;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::AdapterInfo;
use crate::error::{Error, Result};
use crate::ledger::{KeyPair, Role};
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
    /// `runs` part files only: the Merkle root over the part's rows (one leaf per row,
    /// `run u64 LE || settlement head`, [`crate::ledger::chain`]), lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merkle_root: Option<String>,
}

/// The manifest's signature: who signed it and over what (see [`signing_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestIntegrity {
    /// Version of the signed message's layout ([`INTEGRITY_VERSION`]).
    pub version: u32,
    /// Ed25519 public key of the sweep key ([`sweep_key`]), lower-case hex.
    pub public_key: String,
    /// Ed25519 signature of [`signing_message`], lower-case hex (128 digits).
    pub signature: String,
}

/// Layout version of [`signing_message`].
pub const INTEGRITY_VERSION: u32 = 1;

/// Domain tag that starts [`signing_message`].
pub const SIGNING_DOMAIN: &[u8; 27] = b"p2pmarket/sweep-manifest/v1";

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
    /// The commit the binary was built from ([`git_commit`]): `git rev-parse HEAD` at build
    /// time, `P2PMARKET_GIT_COMMIT` at build time, or `unknown`.
    pub git_commit: String,
    /// Whether that tree had uncommitted changes at build time (absent when git could not
    /// tell).
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
    /// An attack sweep's ledger oracle ([`super::oracle`]): the sampled runs replayed
    /// through the ledger and what the replays found; absent without attacks. Not signed
    /// (descriptive, like the engines): the data it describes is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_oracle: Option<super::oracle::OracleReport>,
    /// A sharded sweep's tasks ([`super::finalize`]): where and when each ran; absent for
    /// a sweep run by one process. Descriptive, not signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRecord>,
    /// The signature over the files, their Merkle roots and the sweep's counts; absent in
    /// manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<ManifestIntegrity>,
}

/// One task of a sharded sweep, as the final manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its shard, `0..shards`.
    pub shard: usize,
    /// Shards in the job.
    pub shards: usize,
    /// Host it ran on.
    pub host: String,
    /// When it started, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// When it wrote its shard manifest, seconds since the Unix epoch.
    pub finished_unix_s: f64,
    /// Parts its last invocation computed.
    pub parts_written: usize,
    /// Parts its last invocation found complete.
    pub parts_skipped: usize,
    /// Runs in the shard.
    pub runs: u64,
}

/// The key that signs a sweep's manifest: the ledger's derivation with [`Role::Sweep`],
/// index 0 and the sweep's seed. Anyone who knows the seed (it is in the manifest) can
/// derive it: the signature binds the manifest's content together and to a key that a
/// reader can pin, it does not prove who wrote the sweep.
pub fn sweep_key(seed: u64) -> KeyPair {
    KeyPair::derive(seed, Role::Sweep, 0)
}

/// The bytes the manifest's signature covers (version 1), integers little-endian:
///
/// ```text
/// "p2pmarket/sweep-manifest/v1" (27 bytes) || public key (32 bytes)
/// || seed u64 || total_runs u64 || runs_per_part u64 || parts u64
/// || pcc_bus count u64 || each pcc_bus u64
/// || file count u64 || per file, in manifest order:
///      path length u32 || path (UTF-8) || rows u64 || bytes u64 || sha256 (32 bytes)
///      || 0x00, or 0x01 || merkle_root (32 bytes)
/// ```
///
/// `sweep.json` is one of the files, so the sweep's definition is covered by its sha256;
/// the descriptive fields (version, git commit, sweep text, engines, adapters) are not
/// signed. `Err` names a field whose hex is not 32 bytes.
pub fn signing_message(
    manifest: &Manifest,
    public_key: &[u8; 32],
) -> std::result::Result<Vec<u8>, String> {
    let mut m = Vec::with_capacity(128 + manifest.files.len() * 128);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(public_key);
    for v in [
        manifest.seed,
        manifest.total_runs,
        manifest.runs_per_part,
        manifest.parts as u64,
        manifest.pcc_buses.len() as u64,
    ] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    for &b in &manifest.pcc_buses {
        m.extend_from_slice(&(b as u64).to_le_bytes());
    }
    m.extend_from_slice(&(manifest.files.len() as u64).to_le_bytes());
    for f in &manifest.files {
        let path_len =
            u32::try_from(f.path.len()).map_err(|_| format!("{}: path too long", f.path))?;
        m.extend_from_slice(&path_len.to_le_bytes());
        m.extend_from_slice(f.path.as_bytes());
        m.extend_from_slice(&f.rows.to_le_bytes());
        m.extend_from_slice(&f.bytes.to_le_bytes());
        m.extend_from_slice(&hash_hex(&f.sha256).map_err(|e| format!("{}: sha256 {e}", f.path))?);
        match &f.merkle_root {
            None => m.push(0),
            Some(root) => {
                m.push(1);
                m.extend_from_slice(
                    &hash_hex(root).map_err(|e| format!("{}: merkle_root {e}", f.path))?,
                );
            }
        }
    }
    Ok(m)
}

/// Signs `manifest` with the key of its seed, replacing any earlier signature.
pub fn sign(manifest: &mut Manifest) -> std::result::Result<(), String> {
    let key = sweep_key(manifest.seed);
    let public_key = key.public_key();
    let signature = key.sign(&signing_message(manifest, &public_key)?);
    manifest.integrity = Some(ManifestIntegrity {
        version: INTEGRITY_VERSION,
        public_key: hex::encode(public_key),
        signature: hex::encode(signature),
    });
    Ok(())
}

/// 32 bytes from exactly 64 lower-case hex digits.
pub fn hash_hex(text: &str) -> std::result::Result<[u8; 32], String> {
    fixed_hex(text)
}

/// `N` bytes from exactly `2 N` lower-case hex digits (upper case is refused, so that a
/// value has one spelling).
pub fn fixed_hex<const N: usize>(text: &str) -> std::result::Result<[u8; N], String> {
    if text.len() != 2 * N
        || text
            .bytes()
            .any(|c| !matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!("is not {} lower-case hex digits", 2 * N));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
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

/// The commit the binary was built from and whether its tree was dirty (None when git
/// could not tell), embedded by `build.rs`: `git rev-parse HEAD` of the source tree at build
/// time, or `P2PMARKET_GIT_COMMIT` set at build time, else `unknown`. Never read from the
/// directory the binary runs in: that repository may hold other code.
pub fn git_commit() -> (String, Option<bool>) {
    let commit = option_env!("P2PMARKET_BUILD_COMMIT")
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown");
    let dirty = option_env!("P2PMARKET_BUILD_DIRTY").map(|d| d == "true");
    (commit.to_string(), dirty)
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
    fn git_commit_is_the_build_s() {
        let (commit, _) = git_commit();
        assert!(!commit.is_empty());
        // Embedded at build time, so it cannot follow the working directory.
        assert_eq!(Some(commit.as_str()), option_env!("P2PMARKET_BUILD_COMMIT"));
    }
}
