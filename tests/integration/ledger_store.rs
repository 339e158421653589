//! The stored ledger (issue 8, items 3, 4 and 7): every single-bit flip of every file of a
//! small stored ledger is detected; rewritten tables (the manifest's hashes recomputed, as
//! a forger would) are caught by the derived-column check or the replay; the committed
//! golden ledger verifies with pinned hashes; and `p2pmarket run --ledger` / `verify`
//! through the CLI, with their exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array};
use arrow::record_batch::RecordBatch;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use p2pmarket::ledger::{
    Ledger, MarketRule, RecordOptions, TxBody, VerifyOptions, record_day, verify,
};
use p2pmarket::market::{self, Market};
use p2pmarket::output::ledger::{
    BLOCKS_FILE, Extent, LEDGER_MANIFEST, LedgerDirError, LedgerFiles, LedgerManifest,
    TRANSACTIONS_FILE, ledger_tables, verify_ledger_dir, verify_ledger_files, write_ledger,
};
use p2pmarket::output::parquet::{MemorySink, parquet_bytes};
use p2pmarket::scenario::Scenario;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The default day's recorded ledger.
fn day_ledger() -> Ledger {
    let market = Market::from_scenario(&Scenario::default()).expect("market");
    let day = market::run_day(&market, false).expect("day");
    record_day(&market, &day, &RecordOptions::default())
        .expect("recorded")
        .network
        .ledger
}

/// The ledger's first `blocks` blocks (a prefix of a valid ledger is a valid ledger).
fn prefix(ledger: &Ledger, blocks: usize) -> Ledger {
    let txs: usize = ledger.blocks[..blocks]
        .iter()
        .map(|b| b.header.tx_count as usize)
        .sum();
    Ledger {
        blocks: ledger.blocks[..blocks].to_vec(),
        transactions: ledger.transactions[..txs].to_vec(),
    }
}

/// A ledger's three stored files. `claims` is the ledger whose verified summary the
/// manifest states (the ledger itself for an honest store).
fn store(ledger: &Ledger, claims: &Ledger) -> LedgerFiles {
    let summary = verify(
        &claims.blocks,
        &claims.transactions,
        &VerifyOptions {
            anchor: None,
            rule: Some(&MarketRule::new(0)),
        },
    )
    .expect("the claimed ledger verifies");
    let mut sink = MemorySink::new();
    write_ledger(&mut sink, ledger, 0, &summary).expect("written");
    LedgerFiles {
        manifest: sink.files[LEDGER_MANIFEST].clone(),
        blocks: sink.files[BLOCKS_FILE].clone(),
        transactions: sink.files[TRANSACTIONS_FILE].clone(),
    }
}

/// The manifest with the files' sizes and hashes recomputed (what a forger who rewrote
/// the tables would do).
fn rehash(files: &mut LedgerFiles) {
    let mut m: LedgerManifest = serde_json::from_slice(&files.manifest).expect("manifest");
    for (entry, bytes) in m.files.iter_mut().zip([&files.blocks, &files.transactions]) {
        entry.bytes = bytes.len() as u64;
        entry.sha256 = hex::encode(Sha256::digest(bytes));
    }
    files.manifest = m.to_bytes().expect("json");
}

/// The genesis, the first hour's negotiation and its settlement.
fn small_ledger(full: &Ledger) -> Ledger {
    let first_settlement = full
        .transactions
        .iter()
        .find(|r| matches!(r.tx.body, TxBody::Settlement(_)))
        .expect("a settlement")
        .height as usize;
    prefix(full, first_settlement + 1)
}

#[test]
fn every_single_bit_flip_of_every_file_is_detected() {
    let full = day_ledger();
    let small = small_ledger(&full);
    let files = store(&small, &small);
    verify_ledger_files(&files, None, Extent::Prefix).expect("the clean ledger verifies");
    let sizes = [
        files.manifest.len(),
        files.blocks.len(),
        files.transactions.len(),
    ];
    let flips: Vec<(usize, usize)> = (0..3)
        .flat_map(|f| (0..sizes[f] * 8).map(move |bit| (f, bit)))
        .collect();
    let missed: Vec<(usize, usize)> = flips
        .par_iter()
        .filter(|&&(f, bit)| {
            let mut altered = files.clone();
            let target = match f {
                0 => &mut altered.manifest,
                1 => &mut altered.blocks,
                _ => &mut altered.transactions,
            };
            target[bit / 8] ^= 1 << (bit % 8);
            verify_ledger_files(&altered, None, Extent::Prefix).is_ok()
        })
        .copied()
        .collect();
    assert!(
        missed.is_empty(),
        "{} of {} flips undetected, first {:?}",
        missed.len(),
        flips.len(),
        &missed[..missed.len().min(5)]
    );
    assert!(flips.len() > 20_000, "{} bits", flips.len());
}

fn reason(files: &LedgerFiles) -> LedgerDirError {
    verify_ledger_files(files, None, Extent::Prefix).expect_err("refused")
}

/// A forger rewrites a table and recomputes the manifest's hashes: a derived column that
/// disagrees with the encoded rows, and every structural change to the rows, are caught.
#[test]
fn rewritten_tables_are_caught_after_the_hashes_are_recomputed() {
    let full = day_ledger();
    let small = prefix(&full, 12);
    let clean = store(&small, &small);
    // A derived column edited: the price of one consensus message.
    let files = with_transactions_column(&small, &clean, "price", |a| {
        let mut values: Vec<Option<f64>> = a
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64")
            .iter()
            .collect();
        let at = values.iter().position(Option::is_some).expect("a price");
        values[at] = values[at].map(|p| p + 1.0);
        Arc::new(Float64Array::from(values))
    });
    let why = transactions_refused(&files);
    assert!(why.contains("`price`"), "{why}");
    // Structural changes: each must be refused by the replay (with the manifest's claims
    // taken from the clean ledger, so only the replay can tell).
    let mut variants: Vec<(&str, Ledger)> = Vec::new();
    let mut dropped = small.clone();
    dropped.transactions.remove(20);
    variants.push(("dropped transaction", dropped));
    let mut duplicated = small.clone();
    let copy = duplicated.transactions[20].clone();
    duplicated.transactions.insert(21, copy);
    variants.push(("duplicated transaction", duplicated));
    let mut reordered = small.clone();
    let h = reordered.transactions[20].height;
    let pos: Vec<usize> = (0..reordered.transactions.len())
        .filter(|&i| reordered.transactions[i].height == h)
        .collect();
    assert!(pos.len() >= 2);
    let (a, b) = (pos[0], pos[1]);
    let (ta, tb) = (
        reordered.transactions[a].tx.clone(),
        reordered.transactions[b].tx.clone(),
    );
    reordered.transactions[a].tx = tb;
    reordered.transactions[b].tx = ta;
    variants.push(("reordered transactions", reordered));
    let mut swapped = small.clone();
    swapped.blocks.swap(3, 4);
    variants.push(("swapped blocks", swapped));
    let mut truncated = small.clone();
    truncated.blocks.pop();
    variants.push(("dropped last block", truncated));
    for (label, ledger) in variants {
        let mut files = store_unchecked(&ledger, &clean);
        rehash(&mut files);
        let r = reason(&files);
        assert!(
            matches!(
                r,
                LedgerDirError::Ledger { .. } | LedgerDirError::File { .. }
            ),
            "{label}: {r}"
        );
        if label != "dropped last block" {
            assert!(matches!(r, LedgerDirError::Ledger { .. }), "{label}: {r}");
        }
    }
    // A truncated file.
    let mut files = clean.clone();
    files.blocks.truncate(files.blocks.len() / 2);
    rehash(&mut files);
    assert!(matches!(reason(&files), LedgerDirError::File { .. }));
}

/// A day's ledger cut short after any block is a valid prefix, block by block; stored
/// with an honest manifest (every claim and hash recomputed), it is still refused as a
/// day, naming the first hour not recorded to its end. An edited `run` in the manifest
/// is blamed on the manifest, not on the table the replay would then refuse.
#[test]
fn a_day_cut_short_is_refused_even_with_its_manifest_recomputed() {
    let full = day_ledger();
    let whole = store(&full, &full);
    let check = verify_ledger_files(&whole, None, Extent::Day).expect("the whole day verifies");
    assert_eq!(check.summary.settlements, 24);
    let settled: Vec<usize> = full
        .transactions
        .iter()
        .filter(|r| matches!(r.tx.body, TxBody::Settlement(_)))
        .map(|r| r.height as usize)
        .collect();
    assert_eq!(settled.len(), 24);
    let blocks = full.blocks.len();
    assert_eq!(
        settled[23],
        blocks - 1,
        "the day ends with hour 23's settlement"
    );
    for (cut, why) in [
        (1, "hour 0 has no consensus message"),
        (settled[0] + 1, "hour 1 has no consensus message"),
        (settled[22] + 1, "hour 23 has no consensus message"),
        (
            settled[22] + 2,
            "hour 23 stops before its negotiation ended",
        ),
        (blocks - 1, "hour 23 has no settlement"),
    ] {
        let short = prefix(&full, cut);
        let files = store(&short, &short);
        verify_ledger_files(&files, None, Extent::Prefix).expect("a valid prefix");
        match verify_ledger_files(&files, None, Extent::Day).expect_err("cut short") {
            LedgerDirError::Ledger { file, error } => {
                assert_eq!(file, BLOCKS_FILE);
                assert_eq!(error.height, Some(cut as u64 - 1));
                let text = error.to_string();
                assert!(
                    text.contains(&format!("the day is incomplete: {why}")),
                    "{cut}: {text}"
                );
            }
            other => panic!("{cut}: {other}"),
        }
    }
    // The manifest's `run` edited (in canonical form): the manifest is named.
    let mut files = whole.clone();
    let mut m: LedgerManifest = serde_json::from_slice(&files.manifest).expect("manifest");
    m.run = 1;
    files.manifest = m.to_bytes().expect("json");
    match verify_ledger_files(&files, None, Extent::Day).expect_err("edited") {
        LedgerDirError::File { file, reason } => {
            assert_eq!(file, LEDGER_MANIFEST);
            assert!(
                reason.contains("`run` is 1, but the ledger's messages are of run 0"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
}

/// Issue 12, item 2: heights and indices are signed in the tables (readers subtract
/// them); a negative height, with the manifest's hashes recomputed, is refused naming the
/// file, the column, the value and the row.
#[test]
fn a_negative_height_is_refused_naming_the_column() {
    let small = prefix(&day_ledger(), 4);
    let clean = store(&small, &small);
    let files = with_transactions_column(&small, &clean, "height", |a| {
        let mut values = a
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64 heights")
            .values()
            .to_vec();
        values[3] = -1;
        Arc::new(Int64Array::from(values))
    });
    let why = transactions_refused(&files);
    assert!(why.contains("column `height` holds -1 at row 3"), "{why}");
}

/// The clean store with column `name` of `ledger`'s transactions table replaced by
/// `edit(old)`, and the manifest's hashes recomputed (what a forger would write).
fn with_transactions_column(
    ledger: &Ledger,
    clean: &LedgerFiles,
    name: &str,
    edit: impl FnOnce(&ArrayRef) -> ArrayRef,
) -> LedgerFiles {
    let (_, txs) = ledger_tables(ledger).expect("tables");
    let i = txs.schema().index_of(name).expect("a column");
    let mut columns = txs.columns().to_vec();
    columns[i] = edit(&columns[i]);
    let edited = RecordBatch::try_new(txs.schema(), columns).expect("batch");
    let mut files = clean.clone();
    files.transactions = parquet_bytes(TRANSACTIONS_FILE, &edited).expect("bytes");
    rehash(&mut files);
    files
}

/// Why the transactions table of `files` is refused (a file error of that table).
fn transactions_refused(files: &LedgerFiles) -> String {
    match reason(files) {
        LedgerDirError::File { file, reason } if file == TRANSACTIONS_FILE => reason,
        other => panic!("{other}"),
    }
}

/// The tables of `ledger` (which may not verify) under the clean store's manifest.
fn store_unchecked(ledger: &Ledger, clean: &LedgerFiles) -> LedgerFiles {
    // `ledger_tables` accepts any ledger; transactions keep their (height, index) labels,
    // which the replay checks.
    let (blocks, txs) = ledger_tables(ledger).expect("tables");
    LedgerFiles {
        manifest: clean.manifest.clone(),
        blocks: parquet_bytes(BLOCKS_FILE, &blocks).expect("bytes"),
        transactions: parquet_bytes(TRANSACTIONS_FILE, &txs).expect("bytes"),
    }
}

/// The committed golden ledger (`tests/data/ledger/`: the default day's genesis, first
/// hour and settlement, encoding version 2) verifies from its pinned genesis, and its
/// hashes do not move.
#[test]
fn the_golden_ledger_verifies_with_pinned_hashes() {
    let dir = repo_path("tests/data/ledger");
    let genesis = "aa23eabb0f25530d455df3ea0ded22e7c9a7073ab66931b4f9d1ac29f2fd0403";
    let anchor: [u8; 32] = hex::decode(genesis)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let check =
        verify_ledger_dir(&dir, Some(anchor), Extent::Prefix).expect("the golden ledger verifies");
    assert_eq!(check.manifest.genesis_hash, genesis);
    assert_eq!(
        check.manifest.tip_hash, GOLDEN_TIP,
        "the encoding or the default day changed: regenerate the golden files"
    );
    // The same ledger recorded today has the same hashes.
    let small = small_ledger(&day_ledger());
    assert_eq!(hex::encode(small.blocks[0].hash()), genesis);
    assert_eq!(
        hex::encode(small.blocks.last().expect("a block").hash()),
        GOLDEN_TIP
    );
}

const GOLDEN_TIP: &str = "199504d7107547010177ec361f7444814f264270fcfde557b637c21ecf6d95e6";

/// Regenerates `tests/data/ledger/` (run by hand after an encoding change, or a change
/// of the default day's negotiation such as its start price:
/// `cargo test --release --test integration -- --ignored ledger_store::`).
#[test]
#[ignore = "writes the golden files"]
fn write_golden_ledger() {
    let small = small_ledger(&day_ledger());
    let files = store(&small, &small);
    let dir = repo_path("tests/data/ledger");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join(LEDGER_MANIFEST), &files.manifest).expect("write");
    std::fs::write(dir.join(BLOCKS_FILE), &files.blocks).expect("write");
    std::fs::write(dir.join(TRANSACTIONS_FILE), &files.transactions).expect("write");
    println!(
        "tip {}",
        hex::encode(small.blocks.last().expect("a block").hash())
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_p2pmarket"))
}

#[test]
fn run_ledger_then_verify_through_the_cli() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let o = bin()
        .args(["run", "--ledger", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ledger: "), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("json");
    let genesis = summary["ledger"]["genesis_hash"]
        .as_str()
        .expect("genesis")
        .to_string();
    assert_eq!(summary["ledger"]["settlements"], 24);
    let verify_cli = |path: &Path, anchor: Option<&str>| {
        let mut c = bin();
        c.arg("verify").arg(path);
        if let Some(a) = anchor {
            c.args(["--anchor", a]);
        }
        c.output().expect("verify")
    };
    let o = verify_cli(&out, Some(&genesis));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = verify_cli(&out.join(LEDGER_MANIFEST), None);
    assert_eq!(o.status.code(), Some(0));
    // Another genesis: the content is refused at block 0 (exit 4).
    let wrong = "00".repeat(32);
    let o = verify_cli(&out, Some(&wrong));
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("block 0"));
    // A malformed anchor and a directory without a ledger are bad input (exit 2).
    assert_eq!(verify_cli(&out, Some("xyz")).status.code(), Some(2));
    assert_eq!(verify_cli(tmp.path(), None).status.code(), Some(2));
    // The run lists its ledger: a lost ledger.json is a missing file, and a FIFO in a
    // table's place is refused unread (exit 3), in a copy of the output.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).expect("dir");
    for entry in std::fs::read_dir(&out).expect("list") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
    }
    std::fs::rename(copy.join(LEDGER_MANIFEST), tmp.path().join("kept.json")).expect("move");
    let o = verify_cli(&copy, None);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ledger.json: listed by the run's"));
    std::fs::rename(tmp.path().join("kept.json"), copy.join(LEDGER_MANIFEST)).expect("back");
    std::fs::remove_file(copy.join(BLOCKS_FILE)).expect("remove");
    let made = Command::new("mkfifo")
        .arg(copy.join(BLOCKS_FILE))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let o = verify_cli(&copy, None);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file"));
    // A table grown to 4 GiB (sparse) is refused by its size, unread.
    std::fs::remove_file(copy.join(BLOCKS_FILE)).expect("remove");
    std::fs::copy(out.join(BLOCKS_FILE), copy.join(BLOCKS_FILE)).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(copy.join(TRANSACTIONS_FILE))
        .expect("open")
        .set_len(1 << 32)
        .expect("grow");
    let o = verify_cli(&copy, None);
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("{TRANSACTIONS_FILE}: its size")),
        "{stderr}"
    );
    // The run's hourly table must report the committed settlements: one price moved by
    // a cent is refused (exit 4, naming the hour); a lost table is a missing file.
    std::fs::copy(out.join(TRANSACTIONS_FILE), copy.join(TRANSACTIONS_FILE)).expect("copy");
    assert_eq!(verify_cli(&copy, None).status.code(), Some(0));
    let hourly = copy.join("hourly.parquet");
    let file = std::fs::File::open(&hourly).expect("hourly");
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("rows");
    let i = batch.schema().index_of("price").expect("price");
    let mut prices: Vec<f64> = batch
        .column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("f64")
        .values()
        .to_vec();
    prices[7] += 0.01;
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(Float64Array::from(prices));
    let edited = RecordBatch::try_new(batch.schema(), columns).expect("batch");
    std::fs::write(
        &hourly,
        parquet_bytes("hourly.parquet", &edited).expect("bytes"),
    )
    .expect("write");
    let o = verify_cli(&copy, None);
    assert_eq!(o.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("hourly.parquet: hour 7: price") && stderr.contains("settlement"),
        "{stderr}"
    );
    std::fs::remove_file(&hourly).expect("remove");
    assert_eq!(verify_cli(&copy, None).status.code(), Some(3));
    // One flipped bit in a table: exit 3, naming the file.
    let path = out.join(TRANSACTIONS_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let o = verify_cli(&out, None);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains(TRANSACTIONS_FILE));
    // A message re-signed by its agent with another price, the manifest re-hashed: the
    // replay names the block and the transaction (exit 4).
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let mut files = p2pmarket::output::ledger::read_ledger_files(&out).expect("files");
    let check = verify_ledger_files(&files, None, Extent::Day).expect("restored");
    assert_eq!(hex::encode(check.summary.genesis_hash), genesis);
    let market = Market::from_scenario(&Scenario::default()).expect("market");
    let day = market::run_day(&market, false).expect("day");
    let rec = record_day(&market, &day, &RecordOptions::default()).expect("recorded");
    let mut ledger = rec.network.ledger.clone();
    let pos = ledger
        .transactions
        .iter()
        .position(|r| matches!(r.tx.body, TxBody::Consensus(m) if m.hour == 9 && m.iteration == 2))
        .expect("hour 9, iteration 2");
    let (height, index) = (
        ledger.transactions[pos].height,
        ledger.transactions[pos].index,
    );
    if let TxBody::Consensus(mut m) = ledger.transactions[pos].tx.body {
        m.price -= 3.0;
        ledger.transactions[pos].tx = rec.network.sign(TxBody::Consensus(m)).expect("signed");
    }
    let (blocks, txs) = ledger_tables(&ledger).expect("tables");
    files.blocks = parquet_bytes(BLOCKS_FILE, &blocks).expect("bytes");
    files.transactions = parquet_bytes(TRANSACTIONS_FILE, &txs).expect("bytes");
    rehash(&mut files);
    std::fs::write(out.join(BLOCKS_FILE), &files.blocks).expect("write");
    std::fs::write(out.join(TRANSACTIONS_FILE), &files.transactions).expect("write");
    std::fs::write(out.join(LEDGER_MANIFEST), &files.manifest).expect("write");
    let o = verify_cli(&out, None);
    assert_eq!(o.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("block {height}: transaction {index}: price")),
        "{stderr}"
    );
}

#[test]
fn run_ledger_refuses_bad_flags_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (args, field) in [
        (vec!["--ledger", "--backend", "gpu"], "--backend"),
        (
            vec!["--ledger", "--ledger-faults", "101"],
            "--ledger-faults",
        ),
    ] {
        let out = tmp.path().join("out");
        let o = bin()
            .arg("run")
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(field),
            "{args:?}"
        );
        assert!(!out.exists(), "{args:?}: nothing written");
    }
    // --ledger-faults without --ledger is a usage error.
    let o = bin()
        .args(["run", "--ledger-faults", "2", "--out"])
        .arg(tmp.path().join("x"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
}
