#!/usr/bin/env bash
# Stage this checkout for one call on the device machine, and print the `run` call to make.
#
#   scripts/gpu/stage.sh NAME              # committed tree only; the device builds it (~90 s)
#   scripts/gpu/stage.sh --prebuilt NAME   # also build qarl + qarl_tests here (Release, CUDA,
#                                          # sm_90) and ship the binaries: no build there
#
# The `run` tool copies the main checkout, not a worktree, so the tree goes to
# <main checkout>/.carry/NAME (git-ignored) and travels through `carry`. Only committed files
# go (git archive HEAD): commit first. The binaries travel gzipped (about 15 MB) beside
# .carry/gpu-deps (scripts/gpu/prepare-carry.sh), under the 64 MiB carry limit. This box's glibc (2.36) is
# older than the device image's, so its binaries run there; libnccl.so.2, CUDA and cuBLAS come
# from the device (run.sh points LD_LIBRARY_PATH at them).
set -euo pipefail
prebuilt=0
if [ "${1:-}" = --prebuilt ]; then prebuilt=1; shift; fi
name="${1:?usage: scripts/gpu/stage.sh [--prebuilt] NAME}"
cd "$(dirname "$0")/../.."
here=$PWD
main=$(cd "$(git rev-parse --git-common-dir)/.." && pwd)
dest="$main/.carry/$name"
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "stage: uncommitted changes are NOT staged (commit first)" >&2

rm -rf "$dest" && mkdir -p "$dest"
git archive HEAD | tar -x -C "$dest"
env_prefix="QARL_GPU_DEPS=\$PWD/../gpu-deps/prefix/usr"
if [ $prebuilt = 1 ]; then
  build="${QARL_STAGE_BUILD:-$here/build-gpu-local}"
  cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQARL_ENABLE_CUDA=ON >/dev/null
  cmake --build "$build" -j "${QARL_STAGE_JOBS:-2}" --target qarl qarl_tests refit_peer wgmma_probe wgmma_forms_probe
  mkdir -p "$dest/prebuilt/tests" "$dest/prebuilt/bench"
  # The binaries travel gzipped (run.sh unpacks them): with .carry/gpu-deps they would pass
  # the 64 MiB carry limit otherwise.
  for f in qarl tests/qarl_tests tests/refit_peer bench/wgmma_probe bench/wgmma_forms_probe; do
    cp "$build/$f" "$dest/prebuilt/$f"
    strip --strip-debug "$dest/prebuilt/$f" 2>/dev/null || true
    gzip -1 "$dest/prebuilt/$f"
  done
  env_prefix="$env_prefix QARL_GPU_PREBUILT=prebuilt"
fi
[ -d "$main/.carry/gpu-deps" ] || echo "stage: $main/.carry/gpu-deps is missing: run scripts/gpu/prepare-carry.sh" >&2
echo "staged $(git rev-parse --short HEAD) in $dest ($(du -sh "$dest" | cut -f1)); call:"
echo "  run(command=\"cd .carry/$name && $env_prefix [QARL_GPU_TEST_FILTER=...] [QARL_GPU_SKIP_BENCH=1] [QARL_GPU_BENCH_FILTER=...] bash scripts/gpu/run.sh\","
echo "      carry=[\".carry/gpu-deps\", \".carry/$name\"])"
