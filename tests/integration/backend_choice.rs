//! `--backend auto` decided once per command: with no GPU adapter it falls back to the
//! rayon CPU backend, says so once, records the f64 it ran at (whatever `--precision`
//! asked) and says nothing about f32 tolerances. The Vulkan loader is pointed at a driver
//! list that does not exist, so that every machine (lavapipe, a real GPU or none) takes the
//! fallback here; what a GPU does with the same flags is tested where one is required
//! (`sweep::an_f32_sweep_names_only_the_tolerances_f32_cannot_meet`).

use std::path::Path;

use crate::support::cli_with;

const FALLBACK: &str = "; falling back to the rayon CPU backend";
const F32_NOTE: &str = "f32 cannot meet";

/// Runs the CLI in `dir` without any Vulkan driver: (exit code, stderr).
fn cli_without_gpu(dir: &Path, args: &[&str]) -> (i32, String) {
    let missing = dir.join("no-such-icd.json");
    let (code, _, stderr) = cli_with(dir, args, |c| {
        c.env("VK_ICD_FILENAMES", &missing)
            .env("VK_DRIVER_FILES", &missing)
            .env_remove("WGPU_BACKEND")
            .env_remove("WGPU_ADAPTER_NAME");
    });
    (code, stderr)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs `args` with `--backend auto --precision f32 --out OUT` and no Vulkan driver, and
/// checks that it succeeded, said the fallback exactly once (as the adapter search's
/// failure) and said nothing about f32 tolerances.
fn auto_f32_without_gpu(dir: &Path, args: &[&str], out: &Path) {
    let mut all = args.to_vec();
    all.extend(["--backend", "auto", "--precision", "f32"]);
    all.extend(["--out", out.to_str().unwrap()]);
    let (code, err) = cli_without_gpu(dir, &all);
    let what = args[0];
    assert_eq!(code, 0, "{what}: {err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains(FALLBACK)).collect();
    assert_eq!(notes.len(), 1, "{what}: {err}");
    assert!(
        notes[0].starts_with("note: no GPU adapter found ("),
        "{what}: {err}"
    );
    assert!(!err.contains(F32_NOTE), "{what}: {err}");
}

#[test]
fn run_records_the_f64_the_cpu_fallback_ran_at() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("day");
    auto_f32_without_gpu(dir.path(), &["run"], &out);
    let summary = json(&out.join("summary.json"));
    let adapter = &summary["adapter"];
    assert_eq!(summary["precision"], "f64", "{summary}");
    assert_eq!(summary["backend"], "auto", "{summary}");
    assert_eq!(adapter["backend"], "cpu", "{summary}");
    assert!(
        adapter["notice"].as_str().unwrap().ends_with(FALLBACK),
        "{summary}"
    );
}

#[test]
fn uncertainty_says_its_fallback_and_records_f64() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    let args = ["uncertainty", "--method", "mc", "--samples", "40"];
    auto_f32_without_gpu(dir.path(), &args, &out);
    let study = json(&out.join("study.json"));
    assert_eq!(study["precision"], "f64", "{study}");
    assert_eq!(study["backend"], "auto", "{study}");
}

#[test]
fn a_sweep_says_its_fallback_once_and_no_f32_note() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sweep.toml");
    std::fs::write(
        &cfg,
        "seed = 3\nsamples = 1\n[base.rci]\nmax_iterations = 50\n\
         [parameters]\nrci.chi = { values = [0.5, 0.8] }\n",
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let args = ["sweep", "--quiet", "--config", cfg.to_str().unwrap()];
    auto_f32_without_gpu(dir.path(), &args, &out);
    let manifest = json(&out.join("manifest.json"));
    assert_eq!(
        manifest["engines"],
        serde_json::json!(["cpu-f64"]),
        "{manifest}"
    );
}
