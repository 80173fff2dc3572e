#!/usr/bin/env bash
# Runs both fuzzers for RUNS executions each (default 2,000,000) from the committed seeds,
# with the dictionaries. Usage: fuzz/run.sh [RUNS] [extra libFuzzer flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-build-fuzz}
RUNS=${1:-2000000}; shift || true
for t in safetensors_header hf_config; do
  dict=fuzz/safetensors.dict; [ $t = hf_config ] && dict=fuzz/hf_config.dict
  corpus="$OUT/corpus_$t"; mkdir -p "$corpus"
  seeds=fuzz/seeds/safetensors; [ $t = hf_config ] && seeds=fuzz/seeds/hf_config
  "$OUT/${t}_fuzz" -runs="$RUNS" -dict="$dict" -max_len=4096 -print_final_stats=1 "$@" \
    "$corpus" "$seeds" 2>&1 | tee "$OUT/$t.log" | grep -E "^(stat::|==|SUMMARY|Done|INFO: Seed)" || true
  grep -q "^Done" "$OUT/$t.log" || { echo "fuzz/run.sh: $t did not finish cleanly"; exit 1; }
done
