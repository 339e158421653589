//! A ledger stored beside a run's outputs, and its verification (`p2pmarket verify`).
//!
//! Three files:
//! - `ledger_blocks.parquet`: one row per block, height order: `height`, `hash`,
//!   `prev_hash`, `merkle_root` (lower-case hex), `timestamp_ms`, `proposer`, `tx_count`,
//!   `votes`, and `bytes`, the block's canonical encoding (header and votes);
//! - `ledger_transactions.parquet`: one row per transaction, (height, index) order:
//!   `height`, `index`, `kind` (`parameters`, `agent`, `validator`, `consensus`,
//!   `settlement`), the decoded fields a reader filters on (`run`, `hour`, `iteration`,
//!   `agent`, `price`, `power`, `seller`, `buyer`, `mw`; null where the kind has none), and
//!   `bytes`, the transaction's canonical encoding (body and signatures);
//! - `ledger.json`: the manifest: format, encoding version, the run, genesis and tip
//!   hashes, counts, and each Parquet file's size and SHA-256.
//!
//! Heights, indices and counts are signed 64-bit columns ([`super::integers`]); the
//! canonical encoding in `bytes` keeps its own unsigned fields. Both tables carry the
//! encoding version in their schema metadata ([`ENCODING_KEY`]). The `bytes` columns are
//! the ledger; every other column is derived from them, and [`verify_ledger_dir`] checks
//! that it is. The manifest must be byte for byte the canonical JSON of its content, so
//! that no byte of any of the three files can change unnoticed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ledger::encoding::VERSION;
use crate::ledger::{
    Block, Hash, Ledger, MarketRule, Settlement, Transaction, TxBody, TxRecord, VerifiedSummary,
    VerifyError, VerifyErrorKind, VerifyOptions, verify_to_state,
};
use crate::microgrid::HOURS;

use super::integers::{INT, int_array, unsigned_column};
use super::parquet::{Sink, parquet_bytes};

/// The manifest's file name.
pub const LEDGER_MANIFEST: &str = "ledger.json";
/// The blocks table's file name.
pub const BLOCKS_FILE: &str = "ledger_blocks.parquet";
/// The transactions table's file name.
pub const TRANSACTIONS_FILE: &str = "ledger_transactions.parquet";
/// Schema metadata key holding the canonical encoding's version.
pub const ENCODING_KEY: &str = "p2pmarket.ledger_encoding";
/// The manifest's `format`.
const FORMAT: &str = "p2pmarket-ledger";

/// One file named by the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    /// File name, in the manifest's directory.
    pub path: String,
    /// Size, bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
}

/// The content of `ledger.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerManifest {
    /// Always `p2pmarket-ledger`.
    pub format: String,
    /// The canonical encoding's version.
    pub encoding_version: u8,
    /// The run whose negotiation the ledger records.
    pub run: u32,
    /// Hash of the genesis block, lower-case hex (the anchor to compare with a trusted
    /// copy).
    pub genesis_hash: String,
    /// Hash of the last block, lower-case hex.
    pub tip_hash: String,
    /// Height of the last block.
    pub height: u64,
    /// Transactions, genesis records included.
    pub transactions: u64,
    /// Consensus messages.
    pub consensus_messages: u64,
    /// Settlements.
    pub settlements: u64,
    /// Agents.
    pub agents: u32,
    /// Validators.
    pub validators: u32,
    /// The two tables.
    pub files: Vec<LedgerFile>,
}

impl LedgerManifest {
    /// The canonical bytes of `ledger.json`: pretty JSON in field order, then a newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Output {
            context: LEDGER_MANIFEST.into(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

fn column(name: &str, data_type: DataType, nullable: bool, description: &str) -> Field {
    Field::new(name, data_type, nullable).with_metadata(HashMap::from([(
        "description".to_string(),
        description.to_string(),
    )]))
}

fn with_encoding(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        fields,
        HashMap::from([(ENCODING_KEY.to_string(), VERSION.to_string())]),
    ))
}

/// Schema of `ledger_blocks.parquet`.
pub fn blocks_schema() -> SchemaRef {
    with_encoding(vec![
        column("height", INT, false, "block height, 0 = genesis"),
        column("hash", DataType::Utf8, false, "SHA-256 of the header, hex"),
        column(
            "prev_hash",
            DataType::Utf8,
            false,
            "previous block's hash, hex",
        ),
        column(
            "merkle_root",
            DataType::Utf8,
            false,
            "Merkle root of the transactions, hex",
        ),
        column("timestamp_ms", INT, false, "simulated time, ms"),
        column("proposer", INT, false, "proposing validator"),
        column("tx_count", INT, false, "transactions in the block"),
        column("votes", INT, false, "validator signatures"),
        column(
            "bytes",
            DataType::Binary,
            false,
            "canonical encoding: header and votes",
        ),
    ])
}

/// Schema of `ledger_transactions.parquet`.
pub fn transactions_schema() -> SchemaRef {
    let intn = |name, d| column(name, INT, true, d);
    let f64n = |name, d| column(name, DataType::Float64, true, d);
    with_encoding(vec![
        column("height", INT, false, "height of the block"),
        column("index", INT, false, "position in the block"),
        column(
            "kind",
            DataType::Utf8,
            false,
            "parameters, agent, validator, consensus, settlement",
        ),
        intn("run", "consensus: run"),
        intn("hour", "consensus, settlement: hour"),
        intn("iteration", "consensus: RCI iteration"),
        intn("agent", "consensus: sender; agent, validator: index"),
        f64n("price", "consensus: local price; settlement: price; $/MWh"),
        f64n("power", "consensus: export, MW"),
        intn("seller", "settlement: seller"),
        intn("buyer", "settlement: buyer"),
        f64n("mw", "settlement: traded power, MW"),
        column(
            "bytes",
            DataType::Binary,
            false,
            "canonical encoding: body and signatures",
        ),
    ])
}

fn table(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Output {
        context: "ledger table".into(),
        message: e.to_string(),
    })
}

/// The two tables of a ledger.
pub fn ledger_tables(ledger: &Ledger) -> Result<(RecordBatch, RecordBatch)> {
    let b = &ledger.blocks;
    let hex_of = |f: fn(&Block) -> Hash| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            b.iter().map(|x| hex::encode(f(x))),
        ))
    };
    let encoded: Vec<Vec<u8>> = b.iter().map(Block::encode).collect();
    let blocks = table(
        blocks_schema(),
        vec![
            int_array(BLOCKS_FILE, b.iter().map(|x| x.header.height))?,
            hex_of(|x| x.hash()),
            hex_of(|x| x.header.prev_hash),
            hex_of(|x| x.header.merkle_root),
            int_array(BLOCKS_FILE, b.iter().map(|x| x.header.timestamp_ms))?,
            int_array(BLOCKS_FILE, b.iter().map(|x| x.header.proposer))?,
            int_array(BLOCKS_FILE, b.iter().map(|x| x.header.tx_count))?,
            int_array(BLOCKS_FILE, b.iter().map(|x| x.votes.len()))?,
            Arc::new(BinaryArray::from_iter_values(encoded.iter())),
        ],
    )?;
    let t = &ledger.transactions;
    // Null where the kind has none; a u32 always fits.
    let ints = |f: &dyn Fn(&TxBody) -> Option<u32>| -> ArrayRef {
        Arc::new(
            t.iter()
                .map(|r| f(&r.tx.body).map(i64::from))
                .collect::<Int64Array>(),
        )
    };
    let f64s = |f: &dyn Fn(&TxBody) -> Option<f64>| -> ArrayRef {
        Arc::new(t.iter().map(|r| f(&r.tx.body)).collect::<Float64Array>())
    };
    let kind = |body: &TxBody| match body {
        TxBody::Parameters(_) => "parameters",
        TxBody::Agent(_) => "agent",
        TxBody::Validator(_) => "validator",
        TxBody::Consensus(_) => "consensus",
        TxBody::Settlement(_) => "settlement",
    };
    let encoded: Vec<Vec<u8>> = t.iter().map(|r| r.tx.encode()).collect();
    let transactions = table(
        transactions_schema(),
        vec![
            int_array(TRANSACTIONS_FILE, t.iter().map(|r| r.height))?,
            int_array(TRANSACTIONS_FILE, t.iter().map(|r| r.index))?,
            Arc::new(StringArray::from_iter_values(
                t.iter().map(|r| kind(&r.tx.body)),
            )),
            ints(&|b| match b {
                TxBody::Consensus(m) => Some(m.run),
                _ => None,
            }),
            ints(&|b| match b {
                TxBody::Consensus(m) => Some(m.hour),
                TxBody::Settlement(s) => Some(s.hour),
                _ => None,
            }),
            ints(&|b| match b {
                TxBody::Consensus(m) => Some(m.iteration),
                _ => None,
            }),
            ints(&|b| match b {
                TxBody::Consensus(m) => Some(m.agent),
                TxBody::Agent(a) => Some(a.agent),
                TxBody::Validator(v) => Some(v.validator),
                _ => None,
            }),
            f64s(&|b| match b {
                TxBody::Consensus(m) => Some(m.price),
                TxBody::Settlement(s) => Some(s.price),
                _ => None,
            }),
            f64s(&|b| match b {
                TxBody::Consensus(m) => Some(m.power),
                _ => None,
            }),
            ints(&|b| match b {
                TxBody::Settlement(s) => Some(s.seller),
                _ => None,
            }),
            ints(&|b| match b {
                TxBody::Settlement(s) => Some(s.buyer),
                _ => None,
            }),
            f64s(&|b| match b {
                TxBody::Settlement(s) => Some(s.mw),
                _ => None,
            }),
            Arc::new(BinaryArray::from_iter_values(encoded.iter())),
        ],
    )?;
    Ok((blocks, transactions))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a verified ledger's three files into `sink` (see the module doc) and returns
/// their names; `summary` is what [`verify()`] established for it.
pub fn write_ledger(
    sink: &mut dyn Sink,
    ledger: &Ledger,
    run: u32,
    summary: &VerifiedSummary,
) -> Result<Vec<String>> {
    let (blocks, transactions) = ledger_tables(ledger)?;
    let mut files = Vec::new();
    for (name, batch) in [(BLOCKS_FILE, &blocks), (TRANSACTIONS_FILE, &transactions)] {
        let bytes = parquet_bytes(name, batch)?;
        sink.write_bytes(name, &bytes)?;
        files.push(LedgerFile {
            path: name.to_string(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
    }
    let manifest = LedgerManifest {
        format: FORMAT.into(),
        encoding_version: VERSION,
        run,
        genesis_hash: hex::encode(summary.genesis_hash),
        tip_hash: hex::encode(summary.tip_hash),
        height: summary.height,
        transactions: summary.transactions,
        consensus_messages: summary.consensus_messages as u64,
        settlements: summary.settlements as u64,
        agents: summary.agents,
        validators: summary.validators,
        files,
    };
    sink.write_bytes(LEDGER_MANIFEST, &manifest.to_bytes()?)?;
    Ok(vec![
        BLOCKS_FILE.to_string(),
        TRANSACTIONS_FILE.to_string(),
        LEDGER_MANIFEST.to_string(),
    ])
}

/// What is wrong with a stored ledger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerDirError {
    /// There is no `ledger.json` (or it cannot be read): not a stored ledger.
    #[error("{path}: {reason}")]
    NotALedger {
        /// The path given.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file is missing, altered or not what the manifest says.
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A run's output disagrees with the verified ledger (its hourly price or exchange
    /// is not the committed settlement's).
    #[error("{file}: {reason}")]
    Outputs {
        /// The output file.
        file: String,
        /// What differs.
        reason: String,
    },
    /// The ledger's content fails verification (a hash link, a Merkle root, a signature,
    /// a quorum or a recomputed update).
    #[error("{file}: {error}")]
    Ledger {
        /// The table holding the bad row.
        file: String,
        /// The first bad block or transaction and why.
        error: VerifyError,
    },
}

fn file_error(file: &str, reason: impl Into<String>) -> LedgerDirError {
    LedgerDirError::File {
        file: file.to_string(),
        reason: reason.into(),
    }
}

fn read_table(file: &str, bytes: &[u8]) -> std::result::Result<RecordBatch, LedgerDirError> {
    let unreadable =
        |e: &dyn std::fmt::Display| file_error(file, format!("not a readable Parquet file ({e})"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| unreadable(&e))?;
    // The builder's schema carries the file's schema metadata; the batches' may not.
    let schema = builder.schema().clone();
    let batches = builder
        .build()
        .map_err(|e| unreadable(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| unreadable(&e))
}

fn binary_rows<'a>(
    batch: &'a RecordBatch,
    file: &str,
) -> std::result::Result<&'a BinaryArray, LedgerDirError> {
    batch
        .column_by_name("bytes")
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .filter(|c| c.null_count() == 0)
        .ok_or_else(|| file_error(file, "no non-null binary column `bytes`"))
}

/// How a read schema differs from the documented one: names, types, nullability, the
/// fields' descriptions and the encoding version (a reader may add metadata of its own,
/// such as Parquet field ids, which is ignored).
fn schema_difference(found: &Schema, want: &Schema) -> Option<String> {
    if found.fields().len() != want.fields().len() {
        return Some(format!("{} columns", found.fields().len()));
    }
    for (f, w) in found.fields().iter().zip(want.fields()) {
        if f.name() == w.name() && f.data_type() != w.data_type() {
            return Some(format!(
                "column `{}` is {}, expected {}",
                f.name(),
                f.data_type(),
                w.data_type()
            ));
        }
        if f.name() != w.name()
            || f.data_type() != w.data_type()
            || f.is_nullable() != w.is_nullable()
            || f.metadata().get("description") != w.metadata().get("description")
        {
            return Some(format!("column `{}`", f.name()));
        }
    }
    (found.metadata().get(ENCODING_KEY) != want.metadata().get(ENCODING_KEY))
        .then(|| format!("{ENCODING_KEY} {:?}", found.metadata().get(ENCODING_KEY)))
}

/// A successful [`verify_ledger_dir`].
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerCheck {
    /// The manifest.
    pub manifest: LedgerManifest,
    /// What the replay established.
    pub summary: VerifiedSummary,
    /// The committed settlements, in ledger order.
    pub settlements: Vec<Settlement>,
}

/// The three files of a stored ledger, as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerFiles {
    /// `ledger.json`.
    pub manifest: Vec<u8>,
    /// `ledger_blocks.parquet`.
    pub blocks: Vec<u8>,
    /// `ledger_transactions.parquet`.
    pub transactions: Vec<u8>,
}

/// Reads the three files of the ledger stored in `dir`.
pub fn read_ledger_files(dir: &Path) -> std::result::Result<LedgerFiles, LedgerDirError> {
    if let Ok(m) = dir.join(LEDGER_MANIFEST).symlink_metadata()
        && m.is_file()
        && m.len() > MAX_MANIFEST_BYTES
    {
        return Err(file_error(
            LEDGER_MANIFEST,
            format!("{} bytes, more than any ledger manifest (altered)", m.len()),
        ));
    }
    // A missing manifest is no ledger; any other failure is the file's.
    let manifest = match dir.join(LEDGER_MANIFEST).symlink_metadata() {
        Ok(_) => read_regular(dir, LEDGER_MANIFEST, None)?,
        Err(e) => {
            return Err(LedgerDirError::NotALedger {
                path: dir.display().to_string(),
                reason: format!("no readable {LEDGER_MANIFEST} ({e})"),
            });
        }
    };
    // The sizes the manifest states, when it reads as one: a table of another size is
    // refused before it is read (a sparse or huge file would be read whole).
    let stated: HashMap<String, u64> = serde_json::from_slice::<LedgerManifest>(&manifest)
        .map(|m| m.files.into_iter().map(|f| (f.path, f.bytes)).collect())
        .unwrap_or_default();
    let read = |file: &str| read_regular(dir, file, stated.get(file).copied());
    Ok(LedgerFiles {
        manifest,
        blocks: read(BLOCKS_FILE)?,
        transactions: read(TRANSACTIONS_FILE)?,
    })
}

/// The bytes of the file `file` in `dir`, read only when it is a regular file (not
/// followed: a link, FIFO or device could block, or never end) of size `size` when one is
/// stated (a sparse or huge file would otherwise be read whole).
fn read_regular(
    dir: &Path,
    file: &str,
    size: Option<u64>,
) -> std::result::Result<Vec<u8>, LedgerDirError> {
    let path = dir.join(file);
    match path.symlink_metadata() {
        Ok(m) if !m.is_file() => Err(file_error(
            file,
            "not a regular file (a link, FIFO or device; a run writes none)",
        )),
        Ok(m) if size.is_some_and(|b| b != m.len()) => Err(file_error(
            file,
            "its size or SHA-256 differs from the manifest's (altered)",
        )),
        _ => std::fs::read(&path).map_err(|e| file_error(file, format!("cannot read ({e})"))),
    }
}

/// The largest `ledger.json` read: written ones are under a kilobyte.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// How much of a day's negotiation a stored ledger must record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The whole day, as `run --ledger` stores it: every hour's negotiation to its end and,
    /// with two agents, its settlement ([`MarketRule::check_day`]). `p2pmarket verify`
    /// demands it, so a ledger cut short after any block is refused.
    Day,
    /// Any prefix of a day's ledger (every block valid; a prefix of a valid ledger is
    /// valid): for excerpts, such as the committed golden ledger.
    Prefix,
}

/// Re-verifies the ledger stored in `dir`: [`read_ledger_files`] then
/// [`verify_ledger_files`]; for [`Extent::Day`], also that the run's `hourly.parquet`,
/// when the directory holds one, reports the committed settlements
/// ([`check_hourly_table`]).
pub fn verify_ledger_dir(
    dir: &Path,
    anchor: Option<Hash>,
    extent: Extent,
) -> std::result::Result<LedgerCheck, LedgerDirError> {
    let check = verify_ledger_files(&read_ledger_files(dir)?, anchor, extent)?;
    if extent == Extent::Day
        && (dir.join(HOURLY_FILE).symlink_metadata().is_ok() || super::run_lists(dir, HOURLY_FILE))
    {
        let bytes = read_regular(dir, HOURLY_FILE, None)?;
        check_hourly_table(&bytes, &check.settlements)?;
    }
    Ok(check)
}

/// The run's hourly table, beside its ledger.
pub const HOURLY_FILE: &str = "hourly.parquet";

/// Checks that the `price` and `exchange_mw` of every hour of a run's hourly table (its
/// bytes) are the committed settlement's, bit for bit: the settlement's price, and its MW
/// signed by who sold (the smart grid, agent 0: positive). A market without settlements
/// (one agent) is not checked. A table that cannot be read, or lacks an hour or a
/// column, is a [`LedgerDirError::File`]; a value that differs is a
/// [`LedgerDirError::Outputs`].
pub fn check_hourly_table(
    bytes: &[u8],
    settlements: &[Settlement],
) -> std::result::Result<(), LedgerDirError> {
    if settlements.is_empty() {
        return Ok(());
    }
    let table = read_table(HOURLY_FILE, bytes)?;
    let column = |name: &str| {
        table
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .filter(|c| c.null_count() == 0)
            .ok_or_else(|| file_error(HOURLY_FILE, format!("no float64 column `{name}`")))
    };
    let hours = unsigned_column::<u32>(&table, "hour")
        .map_err(|e| file_error(HOURLY_FILE, e.to_string()))?;
    let (price, exchange) = (column("price")?, column("exchange_mw")?);
    for s in settlements {
        let Some(row) = hours.iter().position(|&h| h == s.hour) else {
            return Err(file_error(
                HOURLY_FILE,
                format!("no row for hour {}, which the ledger settles", s.hour),
            ));
        };
        let signed = if s.seller == 0 { s.mw } else { -s.mw };
        for (field, found, committed) in [
            ("price", price.value(row), s.price),
            ("exchange_mw", exchange.value(row), signed),
        ] {
            // Settlements are finite (the replay checks it), so `!=` is the bits' test
            // but for the sign of a zero exchange, which the settlement does not carry.
            if found != committed {
                return Err(LedgerDirError::Outputs {
                    file: HOURLY_FILE.to_string(),
                    reason: format!(
                        "hour {}: {field} {found} differs from the ledger's settlement \
                         {committed}",
                        s.hour
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Re-verifies a stored ledger (see the module doc): the manifest is canonical, every
/// file has the size and SHA-256 the manifest says, the tables decode and their derived
/// columns match the encoded rows, and the whole ledger replays from its genesis under
/// the market's content rule ([`MarketRule`]): every hash link, Merkle root, signature,
/// quorum and recomputed update; and, for [`Extent::Day`], that it records the whole day.
/// With `anchor`, the genesis hash must equal it. Returns the first problem found. Pure.
pub fn verify_ledger_files(
    files: &LedgerFiles,
    anchor: Option<Hash>,
    extent: Extent,
) -> std::result::Result<LedgerCheck, LedgerDirError> {
    let text = &files.manifest;
    let manifest: LedgerManifest = serde_json::from_slice(text)
        .map_err(|e| file_error(LEDGER_MANIFEST, format!("not a ledger manifest ({e})")))?;
    let canonical = manifest
        .to_bytes()
        .map_err(|e| file_error(LEDGER_MANIFEST, e.to_string()))?;
    if &canonical != text {
        return Err(file_error(
            LEDGER_MANIFEST,
            "not in its canonical form (edited?)",
        ));
    }
    if manifest.format != FORMAT || manifest.encoding_version != VERSION {
        return Err(file_error(
            LEDGER_MANIFEST,
            format!(
                "format {} version {}, expected {FORMAT} version {VERSION}",
                manifest.format, manifest.encoding_version
            ),
        ));
    }
    let names: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if names != [BLOCKS_FILE, TRANSACTIONS_FILE] {
        return Err(file_error(
            LEDGER_MANIFEST,
            format!("lists {names:?}, expected [{BLOCKS_FILE}, {TRANSACTIONS_FILE}]"),
        ));
    }
    for (f, bytes) in manifest
        .files
        .iter()
        .zip([&files.blocks, &files.transactions])
    {
        if bytes.len() as u64 != f.bytes || sha256_hex(bytes) != f.sha256 {
            return Err(file_error(
                &f.path,
                "its size or SHA-256 differs from the manifest's (altered)",
            ));
        }
    }
    let blocks_batch = read_table(BLOCKS_FILE, &files.blocks)?;
    let txs_batch = read_table(TRANSACTIONS_FILE, &files.transactions)?;
    let blocks = binary_rows(&blocks_batch, BLOCKS_FILE)?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Block::decode(b.unwrap_or_default())
                .map_err(|e| file_error(BLOCKS_FILE, format!("row {i}: {e}")))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let column_error =
        |e: super::integers::ColumnError| file_error(TRANSACTIONS_FILE, e.to_string());
    let heights = unsigned_column::<u64>(&txs_batch, "height").map_err(column_error)?;
    let indices = unsigned_column::<u32>(&txs_batch, "index").map_err(column_error)?;
    let transactions = binary_rows(&txs_batch, TRANSACTIONS_FILE)?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            Ok(TxRecord {
                height: heights[i],
                index: indices[i],
                tx: Transaction::decode(b.unwrap_or_default())
                    .map_err(|e| file_error(TRANSACTIONS_FILE, format!("row {i}: {e}")))?,
            })
        })
        .collect::<std::result::Result<Vec<_>, LedgerDirError>>()?;
    let ledger = Ledger {
        blocks,
        transactions,
    };
    let (want_blocks, want_txs) =
        ledger_tables(&ledger).map_err(|e| file_error(BLOCKS_FILE, e.to_string()))?;
    for (file, found, want) in [
        (BLOCKS_FILE, &blocks_batch, &want_blocks),
        (TRANSACTIONS_FILE, &txs_batch, &want_txs),
    ] {
        if let Some(why) = schema_difference(&found.schema(), &want.schema()) {
            return Err(file_error(
                file,
                format!("not the documented schema ({why})"),
            ));
        }
        if let Some(c) = (0..want.num_columns()).find(|&c| found.column(c) != want.column(c)) {
            return Err(file_error(
                file,
                format!(
                    "column `{}` differs from the encoded rows",
                    want.schema().field(c).name()
                ),
            ));
        }
    }
    // The run the rule replays is the manifest's claim: checked against the signed
    // messages first, so an edited `run` is blamed on the manifest, not on a table.
    let message_run = ledger.transactions.iter().find_map(|r| match &r.tx.body {
        TxBody::Consensus(m) => Some(m.run),
        _ => None,
    });
    if let Some(run) = message_run.filter(|&r| r != manifest.run) {
        return Err(file_error(
            LEDGER_MANIFEST,
            format!(
                "`run` is {}, but the ledger's messages are of run {run}",
                manifest.run
            ),
        ));
    }
    let rule = MarketRule::new(manifest.run);
    let table_of = |error: &VerifyError| {
        if error.index.is_some() {
            TRANSACTIONS_FILE
        } else {
            BLOCKS_FILE
        }
        .to_string()
    };
    let (summary, state) = verify_to_state(
        &ledger.blocks,
        &ledger.transactions,
        &VerifyOptions {
            anchor,
            rule: Some(&rule),
        },
    )
    .map_err(|error| LedgerDirError::Ledger {
        file: table_of(&error),
        error,
    })?;
    // A stored day records the whole day: one cut short after any block is refused.
    if extent == Extent::Day {
        rule.check_day(&state, HOURS as u32)
            .map_err(|rejection| LedgerDirError::Ledger {
                file: BLOCKS_FILE.to_string(),
                error: VerifyError {
                    kind: VerifyErrorKind::Rejected(rejection),
                    height: Some(summary.height),
                    index: None,
                },
            })?;
    }
    let claims = [
        (
            "genesis_hash",
            manifest.genesis_hash == hex::encode(summary.genesis_hash),
        ),
        (
            "tip_hash",
            manifest.tip_hash == hex::encode(summary.tip_hash),
        ),
        ("height", manifest.height == summary.height),
        (
            "transactions",
            manifest.transactions == summary.transactions,
        ),
        (
            "consensus_messages",
            manifest.consensus_messages == summary.consensus_messages as u64,
        ),
        (
            "settlements",
            manifest.settlements == summary.settlements as u64,
        ),
        ("agents", manifest.agents == summary.agents),
        ("validators", manifest.validators == summary.validators),
    ];
    if let Some((field, _)) = claims.iter().find(|(_, ok)| !ok) {
        return Err(file_error(
            LEDGER_MANIFEST,
            format!("`{field}` differs from the verified ledger"),
        ));
    }
    let settlements = ledger
        .transactions
        .iter()
        .filter_map(|r| match &r.tx.body {
            TxBody::Settlement(s) => Some(*s),
            _ => None,
        })
        .collect();
    Ok(LedgerCheck {
        manifest,
        summary,
        settlements,
    })
}
