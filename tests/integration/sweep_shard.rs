//! Issue 11: a sweep sharded over the tasks of a job array into one shared directory,
//! sealed by `finalize`, equals the same sweep run by one process byte for byte; tasks
//! never delete or replace each other's files; a killed task reruns to the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{file_bytes, file_paths};
use p2pmarket::Error;
use p2pmarket::engine::BackendChoice;
use p2pmarket::sweep::{
    MANIFEST_NAME, SPEC_NAME, Shard, SweepOptions, SweepReport, SweepSpec, finalize, run_sweep,
    shard::parts_of, verify_sweep,
};

/// 2 grid values x 10 samples, 3 runs per part: 7 parts (six of 3 runs, one of 2).
const SMALL: &str = r#"
seed = 23
runs_per_part = 3
samples = 10

[parameters]
load_scale = { values = [0.97, 1.0] }
renewable_scale = { uniform = [0.5, 1.5] }
rci.chi = { uniform = [0.3, 0.7] }
"#;

const SOURCE: &str = "tests/shard_sweep.toml";

fn spec(text: &str) -> SweepSpec {
    SweepSpec::from_toml(text, Path::new(SOURCE)).expect("valid sweep")
}

fn opts(shard: Option<Shard>, max_parts: Option<usize>) -> SweepOptions {
    SweepOptions {
        backend: BackendChoice::Cpu,
        max_parts,
        shard,
        ..SweepOptions::default()
    }
}

fn shard(index: usize, count: usize) -> Option<Shard> {
    Some(Shard { index, count })
}

fn sweep(s: &SweepSpec, out: &Path, o: &SweepOptions) -> SweepReport {
    run_sweep(s, out, o, &mut |_| {}).expect("sweep runs")
}

/// The dataset: `sweep.json` and every file of the two tables (hidden ones included, so a
/// left-over staging file shows).
fn dataset(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    file_bytes(dir)
        .into_iter()
        .filter(|(p, _)| p == SPEC_NAME || p.starts_with("runs/") || p.starts_with("run_hours/"))
        .collect()
}

/// A manifest as JSON without its descriptive record of the shards.
fn manifest_without_shards(dir: &Path) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(MANIFEST_NAME)).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("shards");
    v
}

fn single_run(s: &SweepSpec) -> tempfile::TempDir {
    let one = tempfile::tempdir().unwrap();
    let r = sweep(s, one.path(), &opts(None, None));
    assert!(r.complete && r.manifest.is_some());
    one
}

fn part_files(s: &SweepSpec, index: usize, count: usize) -> Vec<String> {
    let parts = s.plan().unwrap().parts();
    parts_of(&parts, Shard { index, count })
        .iter()
        .flat_map(|p| [p.runs_path(), p.run_hours_path()])
        .collect()
}

#[test]
fn three_shards_finalized_equal_one_process_byte_for_byte() {
    let s = spec(SMALL);
    let one = single_run(&s);
    let out = tempfile::tempdir().unwrap();
    let mut computed = 0;
    for k in 0..3 {
        let r = sweep(&s, out.path(), &opts(shard(k, 3), None));
        assert!(r.complete, "shard {k}");
        assert!(r.manifest.is_none(), "a shard writes no final manifest");
        assert_eq!(r.parts_written, part_files(&s, k, 3).len() / 2);
        assert!(r.shard_manifest.as_ref().unwrap().is_file());
        computed += r.parts_written;
        assert!(!out.path().join(MANIFEST_NAME).exists());
    }
    assert_eq!(computed, 7, "every part computed once over the shards");
    let report = finalize(out.path()).expect("complete sweep finalizes");
    assert_eq!((report.parts, report.shards, report.runs), (7, 3, 20));
    assert!(!report.adapters.is_empty(), "the devices are listed");

    assert_eq!(dataset(out.path()), dataset(one.path()));
    assert!(!dataset(one.path()).is_empty());
    assert_eq!(
        manifest_without_shards(out.path()),
        manifest_without_shards(one.path()),
        "the sealed manifest is the single run's, shards record aside"
    );
    let sealed = manifest_without_shards(one.path());
    assert!(sealed.get("shards").is_none());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(MANIFEST_NAME)).unwrap()).unwrap();
    assert_eq!(m["shards"].as_array().unwrap().len(), 3);
    verify_sweep(out.path(), None).expect("a finalized sweep verifies");
}

#[test]
fn same_shard_twice_and_shards_at_once_into_one_directory() {
    let s = spec(SMALL);
    let one = single_run(&s);
    let out = tempfile::tempdir().unwrap();
    // Shard 0 twice and shard 1, at the same time, from a cold directory.
    let reports: Vec<SweepReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = [0, 0, 1]
            .into_iter()
            .map(|k| {
                let (s, path) = (&s, out.path());
                scope.spawn(move || run_sweep(s, path, &opts(shard(k, 3), None), &mut |_| {}))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("each task completes"))
            .collect()
    });
    assert!(reports.iter().all(|r| r.complete));
    // The two copies of shard 0 share its parts: each part computed once.
    assert_eq!(
        reports[0].parts_written + reports[1].parts_written,
        part_files(&s, 0, 3).len() / 2
    );
    // Shard 2 is missing: finalize refuses.
    assert!(finalize(out.path()).is_err());
    sweep(&s, out.path(), &opts(shard(2, 3), None));
    // The same shard again: nothing recomputed, nothing changed.
    let before = dataset(out.path());
    let again = sweep(&s, out.path(), &opts(shard(1, 3), None));
    assert_eq!(again.parts_written, 0);
    assert_eq!(dataset(out.path()), before);
    finalize(out.path()).expect("finalizes");
    assert_eq!(dataset(out.path()), dataset(one.path()));
    verify_sweep(out.path(), None).expect("verifies");
}

#[test]
fn finalize_with_parts_missing_names_them_and_writes_nothing() {
    let s = spec(SMALL);
    let out = tempfile::tempdir().unwrap();
    for k in [0, 1] {
        sweep(&s, out.path(), &opts(shard(k, 3), None));
    }
    let before = file_bytes(out.path());
    let missing = part_files(&s, 2, 3);
    assert!(!missing.is_empty());
    match finalize(out.path()) {
        Err(Error::SealDir { reason, .. }) => {
            for f in &missing {
                assert!(reason.contains(f.as_str()), "{f} not named: {reason}");
            }
            for f in part_files(&s, 0, 3) {
                assert!(!reason.contains(f.as_str()), "{f} is there: {reason}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        file_bytes(out.path()),
        before,
        "finalize wrote or removed something"
    );

    // A part file of a finished shard lost afterwards is named too.
    sweep(&s, out.path(), &opts(shard(2, 3), None));
    let lost = part_files(&s, 0, 3)[1].clone();
    std::fs::remove_file(out.path().join(&lost)).unwrap();
    let before = file_bytes(out.path());
    match finalize(out.path()) {
        Err(Error::SealDir { reason, .. }) => assert!(reason.contains(&lost), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(file_bytes(out.path()), before);
    assert!(!out.path().join(MANIFEST_NAME).exists());
}

#[test]
fn a_killed_shard_reruns_to_the_same_bytes_and_leaves_other_shards_staging() {
    let s = spec(SMALL);
    let one = single_run(&s);
    let out = tempfile::tempdir().unwrap();
    // Shard 1 "killed" after one part: no shard manifest.
    let first = sweep(&s, out.path(), &opts(shard(1, 3), Some(1)));
    assert!(!first.complete && first.shard_manifest.is_none());
    assert!(!out.path().join("shards/shard-1-of-3.json").exists());
    let mine = part_files(&s, 1, 3);
    let theirs = part_files(&s, 2, 3);
    // Killed between the two renames of its first part, and inside its second part.
    std::fs::remove_file(out.path().join(&mine[1])).unwrap();
    let stage = |rel: &str, tag: &str| {
        let p = out.path().join(rel);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        p.with_file_name(format!(".{name}.{tag}.somehost-77-0.tmp"))
    };
    let my_staging = stage(&mine[2], "shard-1-of-3");
    let their_staging = stage(&theirs[0], "shard-2-of-3");
    for p in [&my_staging, &their_staging] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"partial").unwrap();
    }
    let second = sweep(&s, out.path(), &opts(shard(1, 3), None));
    assert!(second.complete);
    assert!(!my_staging.exists(), "its own stale staging is removed");
    assert!(
        their_staging.is_file(),
        "another shard's staging file was removed"
    );
    // Shard 2 cleans its own; shard 0 runs; the result is the single run's.
    sweep(&s, out.path(), &opts(shard(2, 3), None));
    assert!(!their_staging.exists());
    sweep(&s, out.path(), &opts(shard(0, 3), None));
    finalize(out.path()).expect("finalizes");
    assert_eq!(dataset(out.path()), dataset(one.path()));
    verify_sweep(out.path(), None).expect("verifies");
}

#[test]
fn a_task_of_another_sweep_refuses_the_directory() {
    let s = spec(SMALL);
    let out = tempfile::tempdir().unwrap();
    sweep(&s, out.path(), &opts(shard(0, 2), None));
    let before = file_bytes(out.path());
    let other = spec(&SMALL.replace("seed = 23", "seed = 24"));
    match run_sweep(&other, out.path(), &opts(shard(1, 2), None), &mut |_| {}) {
        Err(Error::OutputDir { reason, .. }) => assert!(reason.contains(SPEC_NAME), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        file_bytes(out.path()),
        before,
        "the refused task wrote or removed something"
    );
}

/// The curve cache's market key is compared across processes and builds: a SHA-256 of a
/// canonical encoding, pinned here so that it cannot drift with the Rust release (as
/// `DefaultHasher`'s output may).
#[test]
fn the_curve_cache_key_is_a_stable_hash() {
    use p2pmarket::engine::batch::market_fingerprint;
    let market =
        p2pmarket::market::Market::from_scenario(&p2pmarket::scenario::Scenario::default())
            .unwrap();
    assert_eq!(
        hex::encode(market_fingerprint(&market)),
        "2c4ce8bc908ff7fd4956a8453d7d62a146e083d3ddfb2fb38036e0c4d6dea419"
    );
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_p2pmarket"));
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "P2PMARKET_SHARD_COUNT",
    ] {
        c.env_remove(v);
    }
    c
}

fn run_cli(c: &mut Command) -> (i32, String) {
    let o = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

/// `sweep --shard SHARD` of the sweep file `cfg` into `out` on the CPU backend.
fn shard_task(cfg: &Path, shard: &str, out: &Path) -> (i32, String) {
    let mut c = bin();
    c.args(["sweep", "--quiet", "--backend", "cpu", "--shard", shard])
        .arg("--config")
        .arg(cfg)
        .arg("--out")
        .arg(out);
    run_cli(&mut c)
}

/// A job's first task that fails after claiming the directory (here a drawn load range
/// case39's grid cannot serve, found when its load table is built) takes its claim back,
/// so the corrected job is not refused as another sweep's.
#[test]
fn a_failed_first_task_takes_its_claim_back() {
    let tmp = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/matpower/case39.m");
    let write = |name: &str, parameters: &str| {
        let path = tmp.path().join(name);
        let text = format!(
            "seed = 1\nsamples = 4\nruns_per_part = 2\n[base.grid]\ncase_file = {:?}\n\
             {parameters}",
            case.to_str().unwrap()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let unserved = write(
        "unserved.toml",
        "[parameters]\nload_scale = { uniform = [0.9, 1.12], table_tol_mw = 0.01 }\n",
    );
    let corrected = write(
        "corrected.toml",
        "[parameters]\nrenewable_scale = { uniform = [0.5, 1.5] }\n",
    );
    let out = tmp.path().join("out");
    let task = |cfg: &Path| shard_task(cfg, "0/2", &out);
    let (code, text) = task(&unserved);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("parameters.load_scale.uniform"), "{text}");
    assert!(!out.exists(), "{:?}", file_paths(&out));
    let (code, text) = task(&corrected);
    assert_eq!(code, 0, "{text}");
    assert!(out.join("shards/shard-0-of-2.json").is_file(), "{text}");
}

#[test]
fn cli_shards_from_flag_or_scheduler_and_finalize() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("s.toml");
    std::fs::write(&toml, SMALL).unwrap();
    let out: PathBuf = tmp.path().join("out");
    let sweep_cmd = |c: &mut Command| {
        c.args(["sweep", "--quiet", "--backend", "cpu", "--config"])
            .arg(&toml)
            .arg("--out")
            .arg(&out);
    };
    // Bad shards: exit 2, naming the flag or the variable, nothing written.
    let mut c = bin();
    sweep_cmd(&mut c);
    let (code, text) = run_cli(c.args(["--shard", "2/2"]));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--shard"), "{text}");
    let mut c = bin();
    sweep_cmd(&mut c);
    c.env("SLURM_ARRAY_TASK_ID", "4")
        .env("SLURM_ARRAY_TASK_COUNT", "4");
    let (code, text) = run_cli(&mut c);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("SLURM_ARRAY_TASK_ID"), "{text}");
    assert!(!out.exists());
    // A shard count without an index would have every task run the whole sweep.
    let mut c = bin();
    sweep_cmd(&mut c);
    c.env("P2PMARKET_SHARD_COUNT", "2");
    let (code, text) = run_cli(&mut c);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("invalid value for `P2PMARKET_SHARD_COUNT`: 2"),
        "{text}"
    );
    assert!(!out.exists());
    // More shards than parts: a shard with no part says so (not "already done").
    let idle = tmp.path().join("idle");
    let (code, text) = shard_task(&toml, "11/12", &idle);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("0 runs in 0 parts")
            && text.contains("no part of the plan falls to this shard"),
        "{text}"
    );
    // finalize of a directory where no task ran (missing, or holding other files) names
    // its argument and both kinds of job, and writes nothing.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    for dir in [&out, &other] {
        let (code, text) = run_cli(bin().arg("finalize").arg(dir));
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains("invalid value for `DIR`")
                && text.contains("sweep.json")
                && text.contains("uncertainty.json"),
            "{text}"
        );
    }
    assert!(!out.exists());
    assert_eq!(file_paths(&other), ["notes.txt"]);
    // A first task refused beside a user's file leaves nothing there (not even its lock).
    let (code, text) = shard_task(&toml, "0/2", &other);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not empty (notes.txt)"), "{text}");
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        1,
        "{:?}",
        file_paths(&other)
    );

    // Shard 0 from Slurm's variables (--array=1-2), shard 1 from Kubernetes'.
    let mut c = bin();
    sweep_cmd(&mut c);
    c.env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_MAX", "2");
    let (code, text) = run_cli(&mut c);
    assert_eq!(code, 0, "{text}");
    assert!(out.join("shards/shard-0-of-2.json").is_file(), "{text}");
    let (code, text) = run_cli(bin().arg("finalize").arg(&out));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("shard 1/2"), "{text}");
    // Named as finalize's argument, not as a task's --out.
    assert!(
        text.contains("directory to seal (DIR)") && !text.contains("--out"),
        "{text}"
    );
    assert!(!out.join(MANIFEST_NAME).exists());
    let mut c = bin();
    sweep_cmd(&mut c);
    c.env("JOB_COMPLETION_INDEX", "1")
        .env("P2PMARKET_SHARD_COUNT", "2");
    let (code, text) = run_cli(&mut c);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run_cli(bin().arg("finalize").arg(&out));
    assert_eq!(code, 0, "{text}");
    let (code, text) = run_cli(bin().arg("verify").arg(&out));
    assert_eq!(code, 0, "{text}");
}
