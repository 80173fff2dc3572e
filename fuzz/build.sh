#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into build-fuzz/. Not part of the CMake
# build. Run:  fuzz/build.sh && fuzz/run.sh [runs]   (see docs/fuzzing.md)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT_DIR:-build-fuzz}
mkdir -p "$OUT"
CXX=${CXX_FUZZ:-clang++}
FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -ffp-contract=off
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc)
CORE=(src/qarl/core/dtype.cpp src/qarl/core/tensor.cpp src/qarl/core/fs.cpp)
$CXX "${FLAGS[@]}" fuzz/safetensors_header_fuzz.cpp src/qarl/io/safetensors.cpp \
  src/qarl/io/json_strict.cpp "${CORE[@]}" -lfmt -o "$OUT/safetensors_header_fuzz"
$CXX "${FLAGS[@]}" fuzz/hf_config_fuzz.cpp src/qarl/io/hf_config.cpp \
  src/qarl/io/json_strict.cpp "${CORE[@]}" -lfmt -o "$OUT/hf_config_fuzz"
TOKENIZER=(src/qarl/tokenizer/*.cpp src/qarl/core/fs.cpp src/qarl/core/log.cpp)
for t in tokenizer_roundtrip_fuzz stop_strings_fuzz; do
  $CXX "${FLAGS[@]}" fuzz/$t.cpp "${TOKENIZER[@]}" -lpcre2-8 -lutf8proc -lfmt -o "$OUT/$t"
done
echo "built $OUT/{safetensors_header_fuzz,hf_config_fuzz,tokenizer_roundtrip_fuzz,stop_strings_fuzz}"
