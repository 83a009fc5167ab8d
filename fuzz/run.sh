#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 10 s each): `fuzz/run.sh [SECONDS]`.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the sanitizer is off and
# RUSTC_BOOTSTRAP lets cargo-fuzz pass its unstable flags.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-10}"
for target in goodbye peer_list; do
  echo "== fuzzing $target for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" -- -max_total_time="$secs" -max_len=4096
done
