#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 10 s each): `fuzz/run.sh [SECONDS]`.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). On a stable toolchain the sanitizer is
# off and RUSTC_BOOTSTRAP lets cargo-fuzz pass its unstable flags.
#
# The committed seeds in fuzz/corpus/<target> are only read; what a run finds goes to
# fuzz/target/corpus/<target> (ignored by git, kept between runs), crashes to
# fuzz/artifacts/<target>. Extra arguments after SECONDS go to libFuzzer, e.g.
# `fuzz/run.sh 600 -jobs=2 -workers=2` or `fuzz/run.sh 600 -len_control=0`.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-10}"
shift || true
targets=(goodbye peer_list core_ops)

RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${secs}s"
  mkdir -p "corpus/$target" "target/corpus/$target"
  # -timeout: one input running for more than 10 s counts as a crash (a hang).
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" \
    "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 "$@"
done
