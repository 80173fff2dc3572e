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
# quant/fake_quant.cpp's __builtin_cpu_supports("avx512dq") is rejected by clang 14: that
# file (kernels, not parsing) is compiled by g++ without instrumentation.
mkdir -p "$OUT/obj"
g++ -std=c++20 -O1 -g -ffp-contract=off -fopenmp -Isrc -c src/qarl/quant/fake_quant.cpp -o "$OUT/obj/fake_quant.o"
QUANT=($(ls src/qarl/quant/*.cpp | grep -v '/fake_quant.cpp$') "$OUT/obj/fake_quant.o"
       src/qarl/refit/recipe_guard.cpp src/qarl/refit/recipe_guard_quant.cpp src/qarl/io/yaml_recipe.cpp
       src/qarl/io/json_strict.cpp
       src/qarl/core/fs.cpp src/qarl/core/log.cpp src/qarl/core/dtype.cpp src/qarl/core/tensor.cpp)
$CXX "${FLAGS[@]}" fuzz/quant_recipe_fuzz.cpp "${QUANT[@]}" -lyaml-cpp -lfmt -lz -fopenmp \
  -o "$OUT/quant_recipe_fuzz"
$CXX "${FLAGS[@]}" fuzz/run_recipe_fuzz.cpp src/qarl/train/run_recipe.cpp "${QUANT[@]}" -lyaml-cpp -lfmt \
  -lz -fopenmp -o "$OUT/run_recipe_fuzz"
echo "built $OUT/{safetensors_header,hf_config,tokenizer_roundtrip,stop_strings,quant_recipe,run_recipe}_fuzz"
