#!/usr/bin/env bash
# The one list of what qarl needs to build and test. Used by `make demo`, `make test`,
# .ci/run and developers alike. Debian 12 packages, plus the npm packages the tokenizer
# tests compare against. Safe to run repeatedly: it skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  nlohmann-json3-dev libyaml-cpp-dev libfmt-dev libcli11-dev libpcre2-dev
  libutf8proc-dev            # tokenizer: NFC normalization
  zlib1g-dev                 # quant: the embedded Triton reciprocal table is zlib-compressed
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev            # only the GEMM benchmark compares against it
  libopenmpi-dev openmpi-bin # refit's packed stream across processes on CPU
  clang libclang-rt-14-dev   # libFuzzer targets with ASan/UBSan
)
# Node.js runs the reference tokenizers of the tokenizer tests. Some machines carry a
# NodeSource nodejs that bundles npm and conflicts with Debian's npm package: only ask
# apt for what is really missing.
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs)
command -v npm  >/dev/null 2>&1 || APT_PACKAGES+=(npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm references for tests/tokenizer (kept out of the source tree's git history).
if [ -f tests/tokenizer/package.json ] && [ ! -d tests/tokenizer/node_modules ]; then
  echo "install-deps: npm install (tests/tokenizer)"
  (cd tests/tokenizer && npm install --no-audit --no-fund --silent)
fi
echo "install-deps: ok"
