//! Embeds the commit the binary is built from (`P2PMARKET_BUILD_COMMIT`, and
//! `P2PMARKET_BUILD_DIRTY` when git could tell), so that a sweep's manifest names the code
//! that computed it rather than whatever repository the binary later runs next to.
//! `P2PMARKET_GIT_COMMIT` at build time overrides git (builds from a tarball, or CI).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=P2PMARKET_GIT_COMMIT");
    // What decides the commit and whether the tree is dirty: the checked-out ref and the
    // sources (a worktree's git files live outside the package). Not the index, which
    // `git status` rewrites: that would rebuild the crate for nothing.
    for rel in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", rel])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &head_ref])
        && std::path::Path::new(&p).exists()
    {
        println!("cargo:rerun-if-changed={p}");
    }
    for p in ["build.rs", "Cargo.toml", "src", "shaders"] {
        println!("cargo:rerun-if-changed={p}");
    }

    let given = std::env::var("P2PMARKET_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    let (commit, dirty) = match given {
        Some(c) => (c.trim().to_string(), None),
        None => match git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty()) {
            Some(c) => {
                let dirty =
                    git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
                (c, dirty)
            }
            None => ("unknown".to_string(), None),
        },
    };
    println!("cargo:rustc-env=P2PMARKET_BUILD_COMMIT={commit}");
    if let Some(d) = dirty {
        println!("cargo:rustc-env=P2PMARKET_BUILD_DIRTY={d}");
    }
}
