#!/usr/bin/env bash
# Prepares the real-GPU check (issue 10, item 5) on a machine with cargo: the device
# machine has no Rust toolchain and reaches no registry, so the binaries travel.
#
# Writes, in the repository root (both ignored by git):
#   .devbin/  p2pmarket, the library's unit tests and the integration tests, release
#             builds, stripped and gzipped (about 33 MB together);
#   .gl/      the Vulkan loader's Debian packages (amd64), unpacked there by check.sh.
# Then call the device tool's `run` with carry [".devbin", ".gl"] and the command
#   bash scripts/device/check.sh
# (see scripts/device/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TERM_COLOR=never
cargo build --release --bin p2pmarket
# The test executables, by name, from cargo's own report.
tests_json="$(cargo test --release --lib --test integration --no-run --message-format=json)"
paths="$(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        kind = m["target"]["kind"][0]
        print(("lib-tests" if kind == "lib" else m["target"]["name"]) + " " + m["executable"])
' <<<"$tests_json")"

rm -rf .devbin.tmp && mkdir .devbin.tmp
pack() {
  strip -o ".devbin.tmp/$1" "$2"
  gzip -9 ".devbin.tmp/$1"
}
pack p2pmarket target/release/p2pmarket
while read -r name path; do
  pack "$name" "$path"
done <<<"$paths"
git rev-parse HEAD >.devbin.tmp/commit
if ! git diff --quiet HEAD; then echo dirty >>.devbin.tmp/commit; fi
rm -rf .devbin && mv .devbin.tmp .devbin

if ! ls .gl/libglvnd0_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update -qq
  # The loader, and the GL dispatch libraries the NVIDIA driver's ICD library links.
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .devbin .gl
ls -l .devbin .gl
