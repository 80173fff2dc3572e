#!/usr/bin/env bash
# Runs each fuzzer for RUNS executions (default 2,000,000) from the committed seeds, with its
# dictionary. Usage: fuzz/run.sh [RUNS] [extra libFuzzer flags...]
# FUZZ_TARGETS picks targets (default: all six), e.g. FUZZ_TARGETS="stop_strings".
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-build-fuzz}
RUNS=${1:-2000000}; shift || true
for t in ${FUZZ_TARGETS:-safetensors_header hf_config tokenizer_roundtrip stop_strings quant_recipe run_recipe}; do
  case $t in
    safetensors_header) dict=fuzz/safetensors.dict; seeds=fuzz/seeds/safetensors ;;
    hf_config) dict=fuzz/hf_config.dict; seeds=fuzz/seeds/hf_config ;;
    tokenizer_roundtrip|stop_strings) dict=fuzz/tokenizer.dict; seeds=fuzz/seeds/$t ;;
    quant_recipe|run_recipe) dict=fuzz/$t.dict; seeds=fuzz/seeds/$t ;;
    *) echo "fuzz/run.sh: unknown target $t"; exit 2 ;;
  esac
  corpus="$OUT/corpus_$t"; mkdir -p "$corpus"
  "$OUT/${t}_fuzz" -runs="$RUNS" -dict="$dict" -max_len=4096 -print_final_stats=1 "$@" \
    "$corpus" "$seeds" 2>&1 | tee "$OUT/$t.log" | grep -E "^(stat::|==|SUMMARY|Done|INFO: Seed)" || true
  grep -q "^Done" "$OUT/$t.log" || { echo "fuzz/run.sh: $t did not finish cleanly"; exit 1; }
done
