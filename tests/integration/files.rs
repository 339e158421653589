//! Files and exit codes through the CLI (issue 6, items 7-10): bad input exits 2 with one
//! message naming the file or field and leaves nothing behind; directories the tool did not
//! write are never damaged; two processes writing one output, or `kill -9` at random
//! points, leave no leftovers and the same bytes as one uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_p2pmarket");

/// A `run` scenario that writes no plots and no trajectories (about 1 s on 2 cores).
const FAST_RUN: &str = "[output]\nplots = false\nkeep_trajectories = false\n";

/// A sweep of six one-run parts (about 1.5 s on 2 cores, most of it the curves).
const SMALL_SWEEP: &str = "seed = 5\nruns_per_part = 1\nsamples = 6\n\n[parameters]\n\
                           renewable_scale = { uniform = [0.5, 1.5] }\n";

/// The outcome of one command.
struct Outcome {
    code: i32,
    stderr: String,
}

/// The binary, with `XDG_RUNTIME_DIR` set so that Mesa's Vulkan drivers do not add their
/// own `error:` lines about it to stderr.
fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn p2pmarket(args: &[&str]) -> Outcome {
    let out = bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Everything under `dir`, hidden entries included: files with their bytes, directories
/// as `None`.
fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Entry names of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A run's output as bytes, with `summary.json`'s `runtime_s` (a wall time) taken out.
fn run_output(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut t = tree(dir);
    if let Some(Some(bytes)) = t.get_mut("summary.json") {
        let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v.as_object_mut().unwrap().remove("runtime_s");
        *bytes = serde_json::to_vec(&v).unwrap();
    }
    t
}

fn hidden_entries(t: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<&String> {
    t.keys()
        .filter(|k| {
            k.split('/')
                .any(|c| c.starts_with('.') && c != ".p2pmarket-run.json")
        })
        .collect()
}

/// Every bad input of items 7-10 through the CLI: exit 2, a message that names the flag or
/// field and the file with the reason once, and not one byte written anywhere.
#[test]
fn bad_files_and_flags_exit_2_name_the_file_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fast = write(d, "fast.toml", FAST_RUN);
    write(d, "latin1.toml", b"[load]\nscale = 1.0 # \xe9t\xe9\n");
    write(d, "binary.toml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR");
    std::fs::create_dir(d.join("confdir")).unwrap();
    write(d, "case_latin1.m", b"function mpc = x\n% \xff\n");
    write(d, "case_bin.m", b"\x00\x01\x02");
    let ds = s(d);
    write(
        d,
        "no_case.toml",
        format!("[grid]\ncase_file = \"{ds}/missing.m\"\n"),
    );
    write(
        d,
        "latin1_case.toml",
        format!("[grid]\ncase_file = \"{ds}/case_latin1.m\"\n"),
    );
    write(
        d,
        "bin_case.toml",
        format!("[grid]\ncase_file = \"{ds}/case_bin.m\"\n"),
    );
    let sweep = write(d, "sweep.toml", SMALL_SWEEP);
    write(d, "sweep_latin1.toml", b"seed = 1 # \xe9\n");
    write(
        d,
        "sweep_no_base.toml",
        "seed = 1\nbase_config = \"missing_base.toml\"\n",
    );
    write(
        d,
        "sweep_bin_base.toml",
        "seed = 1\nbase_config = \"binary.toml\"\n",
    );
    write(
        d,
        "sweep_no_case.toml",
        format!("seed = 1\n[base.grid]\ncase_file = \"{ds}/missing.m\"\n"),
    );
    write(d, "thesis/thesis.tex", "\\documentclass{article}\n");
    write(d, "thesis/sub/data.csv", "1,2\n");
    write(d, "a_file", "not a directory\n");
    // A directory holding another sweep's data.
    write(d, "other.toml", "seed = 6\nruns_per_part = 3\n");
    let other = d.join("other_sweep");
    let o = p2pmarket(&[
        "sweep",
        "--config",
        s(&d.join("other.toml")),
        "--out",
        s(&other),
        "--backend",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    let out = d.join("out");
    let (o_, f) = (s(&out), s(&fast));
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let (missing, confdir, latin1, binary) = (
        p("missing.toml"),
        p("confdir"),
        p("latin1.toml"),
        p("binary.toml"),
    );
    let sw = s(&sweep);
    let (thesis, a_file, other) = (p("thesis"), p("a_file"), s(&other).to_string());
    // (what, arguments, texts the message must contain, one of which exactly once)
    let a = |args: &[&str]| -> Vec<String> { args.iter().map(|x| x.to_string()).collect() };
    let cases: Vec<(&str, Vec<String>, Vec<&str>, &str)> = vec![
        (
            "missing config",
            a(&["run", "--config", &missing, "--out", o_]),
            vec!["--config", "missing.toml"],
            "no such file",
        ),
        (
            "directory as config",
            a(&["run", "--config", &confdir, "--out", o_]),
            vec!["--config", "confdir"],
            "is a directory",
        ),
        (
            "non-UTF-8 scenario",
            a(&["run", "--config", &latin1, "--out", o_]),
            vec!["--config", "latin1.toml", "byte 0xe9"],
            "not UTF-8",
        ),
        (
            "binary scenario",
            a(&["run", "--config", &binary, "--out", o_]),
            vec!["--config", "binary.toml"],
            "binary file",
        ),
        (
            "missing grid.case_file",
            a(&["run", "--config", &p("no_case.toml"), "--out", o_]),
            vec!["grid.case_file", "missing.m"],
            "no such file",
        ),
        (
            "non-UTF-8 case file",
            a(&["run", "--config", &p("latin1_case.toml"), "--out", o_]),
            vec!["grid.case_file", "case_latin1.m"],
            "not UTF-8",
        ),
        (
            "binary case file",
            a(&["check", "--config", &p("bin_case.toml")]),
            vec!["grid.case_file", "case_bin.m"],
            "binary file",
        ),
        (
            "check: missing config",
            a(&["check", "--config", &missing]),
            vec!["--config", "missing.toml"],
            "no such file",
        ),
        (
            "run: --adapter matching nothing",
            a(&[
                "run",
                "--config",
                f,
                "--out",
                o_,
                "--backend",
                "gpu",
                "--adapter",
                "nope",
            ]),
            vec!["--adapter", "\"nope\""],
            "no adapter named like",
        ),
        (
            "run: auto with --adapter matching nothing",
            a(&[
                "run",
                "--config",
                f,
                "--out",
                o_,
                "--backend",
                "auto",
                "--adapter",
                "nope",
            ]),
            vec!["--adapter", "\"nope\""],
            "no adapter named like",
        ),
        (
            "run: --adapter with the cpu backend",
            a(&["run", "--config", f, "--out", o_, "--adapter", "llvmpipe"]),
            vec!["--adapter", "llvmpipe"],
            "--backend gpu or auto",
        ),
        (
            "run: --out is a file",
            a(&["run", "--config", f, "--out", &a_file]),
            vec!["--out", "a_file"],
            "not a directory",
        ),
        (
            "run: --out holds someone else's files",
            a(&["run", "--config", f, "--out", &thesis]),
            vec!["--out", "thesis", "thesis.tex", "sub"],
            "--force",
        ),
        (
            "run: --out holds a sweep",
            a(&["run", "--config", f, "--out", &other]),
            vec!["--out", "other_sweep", "sweep.json"],
            "--force",
        ),
        (
            "sweep: missing config",
            a(&["sweep", "--config", &missing, "--out", o_]),
            vec!["--config", "missing.toml"],
            "no such file",
        ),
        (
            "sweep: directory as config",
            a(&["sweep", "--config", &confdir, "--out", o_]),
            vec!["--config", "confdir"],
            "is a directory",
        ),
        (
            "sweep: non-UTF-8 sweep file",
            a(&["sweep", "--config", &p("sweep_latin1.toml"), "--out", o_]),
            vec!["--config", "sweep_latin1.toml"],
            "not UTF-8",
        ),
        (
            "sweep: binary sweep file",
            a(&["sweep", "--config", &binary, "--out", o_]),
            vec!["--config", "binary.toml"],
            "binary file",
        ),
        (
            "sweep: missing base_config",
            a(&["sweep", "--config", &p("sweep_no_base.toml"), "--out", o_]),
            vec!["base_config", "missing_base.toml"],
            "no such file",
        ),
        (
            "sweep: binary base_config",
            a(&["sweep", "--config", &p("sweep_bin_base.toml"), "--out", o_]),
            vec!["base_config", "binary.toml"],
            "binary file",
        ),
        (
            "sweep: missing base grid.case_file",
            a(&["sweep", "--config", &p("sweep_no_case.toml"), "--out", o_]),
            vec!["grid.case_file", "missing.m"],
            "no such file",
        ),
        (
            "sweep: auto with --adapter matching nothing",
            a(&["sweep", "--config", sw, "--out", o_, "--adapter", "nope"]),
            vec!["--adapter", "\"nope\""],
            "no adapter named like",
        ),
        (
            "sweep: gpu with --adapter matching nothing",
            a(&[
                "sweep",
                "--config",
                sw,
                "--out",
                o_,
                "--backend",
                "gpu",
                "--adapter",
                "nope",
            ]),
            vec!["--adapter", "\"nope\""],
            "no adapter named like",
        ),
        (
            "sweep: --adapter with the cpu backend",
            a(&[
                "sweep",
                "--config",
                sw,
                "--out",
                o_,
                "--backend",
                "cpu",
                "--adapter",
                "x",
            ]),
            vec!["--adapter"],
            "--backend gpu or auto",
        ),
        (
            "sweep: --out holds someone else's files",
            a(&[
                "sweep",
                "--config",
                sw,
                "--out",
                &thesis,
                "--backend",
                "cpu",
            ]),
            vec!["--out", "thesis", "thesis.tex"],
            "--force",
        ),
        (
            "sweep: --out holds another sweep",
            a(&["sweep", "--config", sw, "--out", &other, "--backend", "cpu"]),
            vec!["--out", "other_sweep", "sweep.json differs"],
            "another sweep",
        ),
        (
            "sweep: --out is a file",
            a(&["sweep", "--config", sw, "--out", &a_file]),
            vec!["--out", "a_file"],
            "not a directory",
        ),
        (
            "bench: --adapter matching nothing",
            a(&["bench", "--sizes", "1000", "--adapter", "nope"]),
            vec!["--adapter", "\"nope\""],
            "no adapter named like",
        ),
        (
            "bench: missing config",
            a(&["bench", "--sizes", "1000", "--config", &missing]),
            vec!["--config", "missing.toml"],
            "no such file",
        ),
    ];
    let before = tree(d);
    for (what, args, needles, once) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = p2pmarket(&args);
        assert_eq!(o.code, 2, "{what}: exit code; stderr: {}", o.stderr);
        for n in needles {
            assert!(o.stderr.contains(n), "{what}: no {n:?} in: {}", o.stderr);
        }
        assert_eq!(
            o.stderr.matches(once).count(),
            1,
            "{what}: {once:?} not exactly once in: {}",
            o.stderr
        );
        assert_eq!(
            o.stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{what}: one error line: {}",
            o.stderr
        );
        assert!(!out.exists(), "{what}: {o_} was created");
        assert!(
            tree(d) == before,
            "{what}: something was written or changed"
        );
    }
}

/// Item 7: `run --out` at a folder of someone's files refuses it and changes nothing; with
/// `--force` it writes beside them and never touches them, and refuses a name clash.
#[test]
fn run_never_deletes_or_overwrites_files_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fast = write(d, "fast.toml", FAST_RUN);
    let thesis = d.join("thesis");
    write(&thesis, "thesis.tex", "\\documentclass{article}\n");
    write(&thesis, "sub/data.csv", "1,2\n");
    let before = tree(d);
    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&thesis)]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(tree(d) == before, "a refused directory changed");

    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&thesis), "--force"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let after = tree(d);
    for (k, v) in &before {
        assert!(after.get(k) == Some(v), "{k} changed or vanished");
    }
    for f in ["hourly.parquet", "summary.json", ".p2pmarket-run.json"] {
        assert!(
            after.contains_key(&format!("thesis/{f}")),
            "{f} not written"
        );
    }
    assert_eq!(entries(d), vec!["fast.toml", "thesis"], "no staging left");

    // Now a previous output: a second run needs no --force and still keeps the thesis.
    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&thesis)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        std::fs::read(thesis.join("sub/data.csv")).unwrap(),
        b"1,2\n"
    );

    // A foreign file under a name the run writes is never overwritten, even with --force.
    let clash = d.join("clash");
    write(&clash, "summary.json", "{\"mine\": true}\n");
    let before = tree(d);
    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&clash), "--force"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("summary.json"), "{}", o.stderr);
    assert!(tree(d) == before, "a clash changed something");
}

/// Item 7: a previous output is replaced (files it no longer makes are removed), files a
/// user added to it survive, and an empty directory is fine.
#[test]
fn run_replaces_its_previous_output_and_keeps_what_a_user_added() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fast = write(d, "fast.toml", FAST_RUN);
    let plots = write(d, "plots.toml", "[output]\nkeep_trajectories = false\n");
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let o = p2pmarket(&["run", "--config", s(&plots), "--out", s(&out)]);
    assert_eq!(o.code, 0, "empty directory: {}", o.stderr);
    assert!(out.join("p2p_vs_central.png").is_file());
    write(&out, "notes.md", "my reading of the results\n");
    write(&out, "analysis/fig.py", "print(1)\n");

    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&out)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        entries(&out),
        vec![
            ".p2pmarket-run.json",
            "analysis",
            "hourly.parquet",
            "network_branches.parquet",
            "network_buses.parquet",
            "network_units.parquet",
            "notes.md",
            "scenario.toml",
            "summary.json",
            "trajectories.parquet",
        ],
        "the previous run's plots are gone, the user's files are not"
    );
    assert_eq!(
        std::fs::read(out.join("notes.md")).unwrap(),
        b"my reading of the results\n"
    );
    assert_eq!(
        std::fs::read(out.join("analysis/fig.py")).unwrap(),
        b"print(1)\n"
    );
    let scenario = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(scenario.contains("plots = false"), "{scenario}");
    assert_eq!(entries(d), vec!["fast.toml", "out", "plots.toml"]);
}

/// Item 8: a sweep refuses a folder of someone's files; with `--force` it writes beside
/// them, touches none, and later runs of the same sweep need no --force.
#[test]
fn sweep_refuses_foreign_directories_and_force_keeps_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sweep = write(d, "sweep.toml", SMALL_SWEEP);
    let data = d.join("data");
    write(&data, "measurements.csv", "t,p\n0,1\n");
    write(&data, "raw/day1.bin", [0u8, 1, 2, 3]);
    let before = tree(d);
    let args = |force: bool| {
        let mut a = vec!["sweep", "--config", s(&sweep), "--out", s(&data)];
        a.extend(["--backend", "cpu", "--quiet"]);
        if force {
            a.push("--force");
        }
        a
    };
    let o = p2pmarket(&args(false));
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(tree(d) == before, "a refused directory changed");

    let o = p2pmarket(&args(true));
    assert_eq!(o.code, 0, "{}", o.stderr);
    let after = tree(d);
    for (k, v) in &before {
        assert!(after.get(k) == Some(v), "{k} changed");
    }
    assert!(data.join("manifest.json").is_file());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        listed
            .iter()
            .all(|p| *p == "sweep.json" || p.starts_with("run")),
        "{listed:?}"
    );
    assert!(
        hidden_entries(&after).is_empty(),
        "{:?}",
        hidden_entries(&after)
    );
    let o = p2pmarket(&args(false));
    assert_eq!(o.code, 0, "rerun of the same sweep: {}", o.stderr);
    assert!(tree(d) == after, "a complete rerun changed something");
}

/// Starts the command (see [`finish`]).
fn spawn(args: &[&str]) -> std::process::Child {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits for a command started by [`spawn`].
fn finish(child: std::process::Child) -> Outcome {
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Item 8: two identical sweeps started at once into one directory both succeed (they
/// share the parts), and the directory is byte-identical to a single run's; so is a
/// second pair on the complete directory.
#[test]
fn two_identical_sweeps_at_once_succeed_and_match_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sweep = write(d, "sweep.toml", SMALL_SWEEP);
    let reference = d.join("reference");
    let out = d.join("out");
    let args = |dir: &Path| -> Vec<String> {
        ["sweep", "--config", s(&sweep), "--out", s(dir)]
            .into_iter()
            .chain(["--backend", "cpu", "--quiet"])
            .map(String::from)
            .collect()
    };
    let single = args(&reference);
    let single: Vec<&str> = single.iter().map(String::as_str).collect();
    let o = p2pmarket(&single);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let want = tree(&reference);
    assert!(hidden_entries(&want).is_empty());
    let both = args(&out);
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    for round in ["empty directory", "complete directory"] {
        let (a, b) = (spawn(&both), spawn(&both));
        for o in [finish(a), finish(b)] {
            assert_eq!(o.code, 0, "{round}: {}", o.stderr);
        }
        assert!(tree(&out) == want, "{round}: not the single run's bytes");
    }
}

/// Item 7: two `run`s into one `--out` at once both succeed and leave one complete output
/// (the reference's bytes, no staging), whether the directory was new or a previous output.
#[test]
fn two_runs_into_one_out_at_once_leave_one_complete_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fast = write(d, "fast.toml", FAST_RUN);
    let reference = d.join("reference");
    let out = d.join("out");
    let o = p2pmarket(&["run", "--config", s(&fast), "--out", s(&reference)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let want = run_output(&reference);
    for round in ["new directory", "previous output"] {
        let args = ["run", "--config", s(&fast), "--out", s(&out)];
        let (a, b) = (spawn(&args), spawn(&args));
        for o in [finish(a), finish(b)] {
            assert_eq!(o.code, 0, "{round}: {}", o.stderr);
        }
        assert!(
            run_output(&out) == want,
            "{round}: not the reference's bytes"
        );
        assert_eq!(entries(d), vec!["fast.toml", "out", "reference"], "{round}");
    }
}

/// Deterministic kill points (xorshift64*, fixed seed).
struct KillPoints(u64);

impl KillPoints {
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Up to `ms` milliseconds.
    fn jitter(&mut self, ms: f64) -> Duration {
        Duration::from_secs_f64(ms * 1e-3 * self.unit())
    }
}

/// Runs the command, waits until `reached()` (a point in its work, seen on disk) or `after`
/// has passed, then `jitter` more, and kills it (SIGKILL) unless it ended first.
fn kill_at(args: &[&str], reached: &dyn Fn() -> bool, after: Duration, jitter: Duration) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let start = Instant::now();
    let mut kill_at: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        let now = Instant::now();
        match kill_at {
            Some(at) if now >= at => break,
            Some(_) => {}
            None if reached() || now - start >= after => kill_at = Some(now + jitter),
            None => {}
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Names in `dir` that start with `prefix`.
fn count(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .count()
    })
}

fn timed(args: &[&str]) -> Duration {
    let start = Instant::now();
    let o = p2pmarket(args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    start.elapsed()
}

/// Item 9: `run` killed with SIGKILL at seeded random points of its write phase (from the
/// moment its staging directory, or the lock of the output it updates, appears) and of its
/// computation, into a new directory and over a previous output: the next run succeeds, removes every leftover (`.partial-*`
/// staging, temporary files, locks) and writes the uninterrupted run's bytes.
#[test]
fn run_killed_at_random_points_leaves_nothing_after_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fast = write(d, "fast.toml", FAST_RUN);
    let reference = d.join("reference");
    let t = timed(&["run", "--config", s(&fast), "--out", s(&reference)]);
    let want = run_output(&reference);
    let out = d.join("out");
    let args = ["run", "--config", s(&fast), "--out", s(&out)];
    let staging = || count(d, "out.partial-") > 0;
    let replacing = || out.join(".p2pmarket.lock").exists();
    let never = || false;
    let mut points = KillPoints(0x5eed_0006);
    for i in 0..8 {
        if i % 2 == 0 && out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        match i % 4 {
            // While the files move into a previous output.
            1 => kill_at(&args, &replacing, t * 3, points.jitter(3.0)),
            // During the computation.
            3 => kill_at(
                &args,
                &never,
                t.mul_f64(0.2 + 0.5 * points.unit()),
                Duration::ZERO,
            ),
            _ => kill_at(&args, &staging, t * 3, points.jitter(40.0)),
        }
        let o = p2pmarket(&args);
        assert_eq!(o.code, 0, "kill {i}: the next run failed: {}", o.stderr);
        let got = run_output(&out);
        assert!(
            hidden_entries(&got).is_empty(),
            "kill {i}: {:?}",
            hidden_entries(&got)
        );
        assert!(got == want, "kill {i}: not the uninterrupted run's bytes");
        assert_eq!(
            entries(d),
            vec!["fast.toml", "out", "reference"],
            "kill {i}: staging left"
        );
    }
}

/// Item 9: `sweep` killed with SIGKILL at seeded random points (after its k-th part, k
/// drawn from 0 to all, plus a jitter; sometimes twice before it can finish): the next run
/// of the same command completes it, leaves no staging file or lock, and the directory is
/// byte-identical to an uninterrupted sweep's.
#[test]
fn sweep_killed_at_random_points_leaves_nothing_after_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sweep = write(d, "sweep.toml", SMALL_SWEEP);
    let reference = d.join("reference");
    let command = |dir: &Path| -> Vec<String> {
        ["sweep", "--config", s(&sweep), "--out", s(dir)]
            .into_iter()
            .chain(["--backend", "cpu", "--quiet"])
            .map(String::from)
            .collect()
    };
    let single = command(&reference);
    let single: Vec<&str> = single.iter().map(String::as_str).collect();
    let t = timed(&single);
    let want = tree(&reference);
    let out = d.join("out");
    let args = command(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let parts = count(&reference.join("runs/pcc_bus=7"), "part-");
    let mut points = KillPoints(0x5eed_0009);
    for i in 0..6 {
        if i % 3 == 0 && out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        for _ in 0..1 + i % 2 {
            // k = 0: as soon as the directory is claimed.
            let k = (points.unit() * (parts + 1) as f64) as usize;
            let reached = || {
                out.join("sweep.json").exists() && count(&out.join("runs/pcc_bus=7"), "part-") >= k
            };
            kill_at(&args, &reached, t * 3, points.jitter(20.0));
        }
        let o = p2pmarket(&args);
        assert_eq!(o.code, 0, "kill {i}: the next run failed: {}", o.stderr);
        let got = tree(&out);
        assert!(
            hidden_entries(&got).is_empty(),
            "kill {i}: {:?}",
            hidden_entries(&got)
        );
        assert!(got == want, "kill {i}: not the uninterrupted sweep's bytes");
        assert_eq!(entries(d), vec!["out", "reference", "sweep.toml"]);
    }
}

/// A small attack sweep: 2 variables x 2 defences, one part, two oracle replays.
const SMALL_ATTACK_SWEEP: &str = "seed = 5\nruns_per_part = 4\nledger_sample = 2\n\n\
                                  [base.rci]\nstart_price = \"own_marginal\"\n\n[parameters]\n\
                                  attack.variable = { values = [\"price\", \"power\"] }\n\
                                  attack.agent = { values = [1] }\n\
                                  attack.hour = { values = [10] }\n\
                                  attack.size = { values = [1.0] }\n\
                                  attack.defence = { values = [\"undefended\", \"defended\"] }\n";

/// Issue 12, item 2: every Parquet file that a sweep, an attack sweep and `run --ledger`
/// write has signed integer columns only (readers subtract hours, runs and iterations:
/// `hour - 1` must be -1 at hour 0, not an overflow or 2^32 - 1), and the outputs still
/// verify (their hashes are of the files as written).
#[test]
fn issue_12_every_parquet_file_has_signed_integers_only() {
    use arrow::datatypes::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sweep = write(d, "sweep.toml", SMALL_SWEEP);
    let attack = write(d, "attack.toml", SMALL_ATTACK_SWEEP);
    let scenario = write(d, "run.toml", FAST_RUN);
    let outs = [d.join("sweep"), d.join("attack"), d.join("ledger")];
    for (config, out) in [(&sweep, &outs[0]), (&attack, &outs[1])] {
        let o = p2pmarket(&[
            "sweep",
            "--backend",
            "cpu",
            "--quiet",
            "--config",
            s(config),
            "--out",
            s(out),
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let o = p2pmarket(&[
        "run",
        "--ledger",
        "--config",
        s(&scenario),
        "--out",
        s(&outs[2]),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);

    // (file name, column) -> type, over every Parquet file written.
    let mut ints: BTreeMap<(String, String), DataType> = BTreeMap::new();
    for out in &outs {
        let o = p2pmarket(&["verify", s(out)]);
        assert_eq!(o.code, 0, "verify {}: {}", out.display(), o.stderr);
        for (path, bytes) in tree(out) {
            let Some(bytes) = bytes.filter(|_| path.ends_with(".parquet")) else {
                continue;
            };
            let schema = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .schema()
                .clone();
            let name = path.rsplit('/').nth(2).map_or(path.clone(), str::to_string);
            for f in schema.fields() {
                assert!(
                    !f.data_type().is_unsigned_integer(),
                    "{}/{path}: column `{}` is {}",
                    out.display(),
                    f.name(),
                    f.data_type()
                );
                if f.data_type().is_integer() {
                    ints.insert((name.clone(), f.name().clone()), f.data_type().clone());
                }
            }
        }
    }
    // The counters readers subtract are there, as int64 (not a vacuous pass).
    for (file, column) in [
        ("runs", "run"),
        ("runs", "attack_hour"),
        ("runs", "attack_iterations"),
        ("run_hours", "hour"),
        ("run_hours", "iterations"),
        ("hourly.parquet", "hour"),
        ("ledger_blocks.parquet", "height"),
        ("ledger_transactions.parquet", "hour"),
        ("ledger_transactions.parquet", "iteration"),
    ] {
        assert_eq!(
            ints.get(&(file.to_string(), column.to_string())),
            Some(&DataType::Int64),
            "{file} `{column}`"
        );
    }
}

/// Issue 12, item 5: a scenario's `[timeseries]` file (relative to the scenario, from
/// another working directory) replaces the weather and the loads of its day; the
/// effective scenario holds the values; a bad file exits 2 naming the row and column and
/// writes nothing.
#[test]
fn timeseries_file_replaces_the_day_and_bad_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut csv = String::from("hour,system_load_mw,wind_speed_ms,mg_load_mw\n");
    for r in 0..48 {
        let h = r % 24;
        // Day 1 is the one taken: a flat 2000 MW with a 100 MW step at hour 12.
        let load = if r < 24 {
            2500.0
        } else if h < 12 {
            2000.0
        } else {
            2100.0
        };
        csv.push_str(&format!(
            "{h},{load},{},{}\n",
            5.0 + h as f64 * 0.25,
            20.0 + h as f64
        ));
    }
    write(d, "inputs/two_days.csv", &csv);
    let scenario = write(
        d,
        "cfg/day.toml",
        "[timeseries]\nfile = \"../inputs/two_days.csv\"\nday = 1\n\n[output]\nplots = false\n",
    );
    let out = d.join("out");
    let o = bin()
        .current_dir(std::env::temp_dir())
        .args(["run", "--config", s(&scenario), "--out", s(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let effective = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    assert!(!effective.contains("[timeseries]"), "{effective}");
    let parsed: toml::Value = toml::from_str(&effective).unwrap();
    let hourly: Vec<f64> = parsed["load"]["hourly_mw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_float().unwrap())
        .collect();
    assert_eq!(
        hourly[..13],
        [[2000.0; 12].as_slice(), &[2100.0]].concat()[..]
    );
    let wind = parsed["microgrid"]["weather"]["wind_speed_ms"]
        .as_array()
        .unwrap();
    assert_eq!(wind[4].as_float(), Some(6.0));
    assert_eq!(
        parsed["microgrid"]["load"]["peak_mw"].as_float(),
        Some(43.0)
    );
    // The run used them: hourly.parquet's system load is the file's day.
    let file = std::fs::File::open(out.join("hourly.parquet")).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let load = batch
        .column_by_name("system_load_mw")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .values()
        .to_vec();
    assert_eq!((load[11], load[12]), (2000.0, 2100.0));

    // A value out of range: exit 2, the row and column named, nothing written.
    write(d, "inputs/bad.csv", csv.replace("\n13,2100,", "\n13,-5,"));
    let bad = write(
        d,
        "cfg/bad.toml",
        "[timeseries]\nfile = \"../inputs/bad.csv\"\nday = 1\n",
    );
    let before = tree(d);
    let o = p2pmarket(&["run", "--config", s(&bad), "--out", s(&d.join("bad_out"))]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("row 38 column system_load_mw") && o.stderr.contains("-5"),
        "{}",
        o.stderr
    );
    assert!(tree(d) == before, "a refused run wrote something");
}
