//! Helpers that several test modules share.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file under the directory `dir` (which must exist), relative and `/`-separated,
/// sorted.
pub fn file_paths(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap();
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Every file under `dir` ([`file_paths`]) with its bytes.
pub fn file_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    file_paths(dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(dir.join(&f)).unwrap();
            (f, b)
        })
        .collect()
}

/// Runs the CLI in `dir`, returning (exit code, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    cli_with(dir, args, |_| {})
}

/// [`cli`] with the command first adjusted by `setup` (its environment, say).
pub fn cli_with(
    dir: &Path,
    args: &[&str],
    setup: impl FnOnce(&mut Command),
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_p2pmarket"));
    command.current_dir(dir).args(args);
    setup(&mut command);
    let out = command.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
