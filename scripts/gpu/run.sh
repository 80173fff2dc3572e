#!/usr/bin/env bash
# One call on the H200 device machine: configure and build qarl with CUDA, run the test
# suite (GPU tests included), run `qarl bench` and the PyTorch peers (bench/gpu/peers.py),
# and print the summary table last. Logs and JSON go under $OUT (default ./gpu-out).
#
# The machine has CUDA 13, g++ 13, cmake, ninja and PyTorch but no apt and no network, so the
# C++ dependencies travel in .carry/gpu-deps (scripts/gpu/prepare-carry.sh makes it here):
#   run(command="bash scripts/gpu/run.sh", carry=[".carry/gpu-deps"])
# Environment: QARL_GPU_JOBS (build jobs, default nproc), QARL_GPU_SKIP_TESTS=1,
# QARL_GPU_SKIP_PEERS=1, QARL_GPU_TRANSFORMERS=0 (leave out the transformers generate/train peers),
# QARL_GPU_TEST_FILTER (gtest filter, default all), QARL_GPU_SKIP_BENCH=1 (no qarl bench, no peers),
# QARL_GPU_BENCH_FILTER (only the qarl bench cases whose name contains it; several: a,b),
# QARL_NCCL_ROOT (NCCL for the refit NCCL wire; default: the PyTorch pip package's nvidia/nccl),
# QARL_GPU_PREBUILT (a folder with qarl and tests/qarl_tests built elsewhere, e.g. by
# scripts/gpu/stage.sh --prebuilt on the dev box: no configure/build here, which saves the
# 80-100 s build of each call; the final run of a change should still build here).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
BUILD="${QARL_GPU_BUILD:-$ROOT/build-gpu}"
DEPS="${QARL_GPU_DEPS:-$ROOT/.carry/gpu-deps/prefix/usr}"
JOBS="${QARL_GPU_JOBS:-$(nproc)}"
summary=()
note() { summary+=("$1"); echo "== $1"; }
t0=$(date +%s)

# ---- environment ------------------------------------------------------------------------
{
  date -u; uname -a; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1
  nvcc --version | tail -1; g++ --version | head -1; cmake --version | head -1; ninja --version
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' 2>&1
} > "$OUT/env.log" 2>&1
cat "$OUT/env.log"
if [ -d "$DEPS" ]; then
  export CMAKE_PREFIX_PATH="$DEPS${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export PKG_CONFIG_LIBDIR="$DEPS/lib/x86_64-linux-gnu/pkgconfig:$DEPS/share/pkgconfig"
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu:$DEPS/../lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  command -v pkg-config >/dev/null || export PKG_CONFIG="$DEPS/bin/pkgconf"
  note "deps: carried prefix $DEPS ($(du -sh "$DEPS" | cut -f1))"
else
  note "deps: no carried prefix (expecting system packages)"
fi

# NVLink multicast stays off in everything this starts (the machine's rule for NCCL).
export NCCL_NVLS_ENABLE=0
# NCCL (optional, for the refit NCCL wire) ships inside PyTorch's pip packages:
# <site-packages>/nvidia/nccl/{include/nccl.h,lib/libnccl.so.2}.
if [ -z "${QARL_NCCL_ROOT:-}" ]; then
  QARL_NCCL_ROOT=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ ! -f "${QARL_NCCL_ROOT:-/nonexistent}/include/nccl.h" ]; then
    QARL_NCCL_ROOT=""
    for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
      h=$(find "$sp" -name nccl.h -path '*nvidia*' 2>/dev/null | head -1)
      if [ -n "$h" ]; then QARL_NCCL_ROOT=$(dirname "$(dirname "$h")"); break; fi
    done
  fi
fi
if [ -n "${QARL_NCCL_ROOT:-}" ]; then
  export QARL_NCCL_ROOT
  export LD_LIBRARY_PATH="$QARL_NCCL_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "nccl: $QARL_NCCL_ROOT"
else
  note "nccl: not found (the refit NCCL wire is built off; its tests skip)"
fi

# ---- build ------------------------------------------------------------------------------
tb=$(date +%s)
if [ -n "${QARL_GPU_PREBUILT:-}" ]; then
  BUILD=$(cd "$QARL_GPU_PREBUILT" && pwd)
  for f in qarl tests/qarl_tests tests/refit_peer; do
    [ -f "$BUILD/$f.gz" ] && gunzip -f "$BUILD/$f.gz"
    [ -x "$BUILD/$f" ] || { note "prebuilt: $BUILD/$f missing"; printf '%s\n' "${summary[@]}"; exit 1; }
  done
  for f in bench/wgmma_probe bench/wgmma_forms_probe; do  # optional (older stages lack them)
    [ -f "$BUILD/$f.gz" ] && gunzip -f "$BUILD/$f.gz"
  done
  # The test binary's baked-in paths are the dev box's; point it at this copy.
  export QARL_TEST_BINARY="$BUILD/qarl" QARL_TEST_DATA_DIR="$ROOT/tests/data" QARL_TEST_SOURCE_DIR="$ROOT"
  export QARL_TEST_REFIT_PEER="$BUILD/tests/refit_peer"
  : > "$OUT/configure.log"; : > "$OUT/build.log"
  note "build: prebuilt binaries from $QARL_GPU_PREBUILT (not built here)"
else
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQARL_ENABLE_CUDA=ON \
  ${QARL_NCCL_ROOT:+-DQARL_NCCL_ROOT=$QARL_NCCL_ROOT} \
  ${PKG_CONFIG:+-DPKG_CONFIG_EXECUTABLE=$PKG_CONFIG} > "$OUT/configure.log" 2>&1
rc=$?
grep -E "qarl:|CUDA|NCCL|Error" "$OUT/configure.log" | head -20
if [ $rc -ne 0 ]; then tail -40 "$OUT/configure.log"; note "configure: FAILED (rc $rc)"; printf '%s\n' "${summary[@]}"; exit 1; fi
cmake --build "$BUILD" -j "$JOBS" --target qarl qarl_tests refit_peer wgmma_probe wgmma_forms_probe > "$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then grep -E "error|FAILED" "$OUT/build.log" | head -40; note "build: FAILED (rc $rc)"; printf '%s\n' "${summary[@]}"; exit 1; fi
note "build: ok in $(( $(date +%s) - tb )) s (-j $JOBS)"
fi
"$BUILD/qarl" version

# ---- probes: the hardware facts the wgmma kernels rely on (bench/gpu/*_probe.cu) ------------
for p in wgmma_probe wgmma_forms_probe; do
  if [ -x "$BUILD/bench/$p" ]; then
    timeout 60 "$BUILD/bench/$p" > "$OUT/$p.log" 2>&1
    note "probe $p: rc $?, $(grep -h '^RESULT' "$OUT/$p.log" | head -1)"
  fi
done

# ---- tests ------------------------------------------------------------------------------
if [ "${QARL_GPU_SKIP_TESTS:-0}" != 1 ]; then
  tt=$(date +%s)
  # The GPU tests first (their counts are the point), then the rest of the suite.
  timeout 420 "$BUILD/tests/qarl_tests" --gtest_filter="${QARL_GPU_TEST_FILTER:-Cuda*:*.Cuda*}" \
    --gtest_output=xml:"$OUT/tests.xml" > "$OUT/tests.log" 2>&1
  rc=$?
  if [ -z "${QARL_GPU_TEST_FILTER:-}" ]; then
    timeout 60 "$BUILD/tests/qarl_tests" --gtest_filter='-Cuda*:*.Cuda*' --gtest_brief=1 > "$OUT/tests_rest.log" 2>&1
    rest_rc=$?
    note "other tests (CPU suite on this machine): rc $rest_rc, $(grep -oE '^\[  PASSED  \] [0-9]+' "$OUT/tests_rest.log" | grep -oE '[0-9]+$') passed, $(grep -cE '^\[  FAILED  \] .*\(' "$OUT/tests_rest.log") failed"
    grep -E '^\[  FAILED  \] .*\(' "$OUT/tests_rest.log" | head -10
  fi
  grep -E "^\[  (FAILED|SKIPPED) |^\[  PASSED|^\[==========\]" "$OUT/tests.log" | tail -40
  cuda_run=$(grep -cE '^\[       OK \] ' "$OUT/tests.log")
  cuda_fail=$(grep -cE '^\[  FAILED  \] .*\(' "$OUT/tests.log")
  cuda_skip=$(grep -cE '^\[  SKIPPED \] .*\(' "$OUT/tests.log")
  passed=$(grep -oE '^\[  PASSED  \] [0-9]+' "$OUT/tests.log" | grep -oE '[0-9]+$')
  failed=$(grep -cE '^\[  FAILED  \] .*\(' "$OUT/tests.log")
  skipped=$(grep -cE '^\[  SKIPPED \] .*\(' "$OUT/tests.log")
  note "tests: rc $rc, passed ${passed:-0}, failed $failed, skipped $skipped (Cuda*: $cuda_run ok, $cuda_fail failed, $cuda_skip skipped) in $(( $(date +%s) - tt )) s"
  [ "$failed" -gt 0 ] && grep -E '^\[  FAILED  \] .*\(' "$OUT/tests.log" | head -20 | while read -r l; do note "  $l"; done
  [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && tail -30 "$OUT/tests.log"
fi

# ---- benchmarks -------------------------------------------------------------------------
[ "${QARL_GPU_SKIP_BENCH:-0}" = 1 ] && QARL_GPU_SKIP_PEERS=1
if [ "${QARL_GPU_SKIP_BENCH:-0}" != 1 ]; then
  "$BUILD/qarl" bench --backend cuda ${QARL_GPU_BENCH_FILTER:+--filter "$QARL_GPU_BENCH_FILTER"} --json "$OUT/qarl_bench.json" > "$OUT/qarl_bench.log" 2>&1
  rc=$?
  cat "$OUT/qarl_bench.log"
  note "qarl bench: rc $rc"
fi
if [ "${QARL_GPU_SKIP_PEERS:-0}" != 1 ]; then
  peer_args=(--qarl-json "$OUT/qarl_bench.json" --out "$OUT/peers.json")
  [ "${QARL_GPU_TRANSFORMERS:-1}" = 1 ] && peer_args+=(--transformers)
  PYTHONUNBUFFERED=1 timeout 170 python3 bench/gpu/peers.py "${peer_args[@]}" > "$OUT/peers.log" 2>&1
  rc=$?
  note "peers: rc $rc"
  [ $rc -ne 0 ] && tail -30 "$OUT/peers.log"
fi

# ---- summary (last, so the reply's tail carries it) -------------------------------------
echo
echo "================ summary ($(( $(date +%s) - t0 )) s) ================"
printf '%s\n' "${summary[@]}"
[ -f "$OUT/peers.log" ] && sed -n '/^=== side by side/,$p' "$OUT/peers.log"
# at most 8 files come back: fold the build logs into one archive
tar -C "$OUT" -czf "$OUT/logs.tgz" env.log configure.log build.log 2>/dev/null &&
  rm -f "$OUT/env.log" "$OUT/configure.log" "$OUT/build.log"
exit 0
