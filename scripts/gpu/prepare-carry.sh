#!/usr/bin/env bash
# Prepares, on this (Debian 12, networked) machine, the build dependencies that the H200 device
# machine lacks: it has CUDA 13, g++ 13, cmake, ninja and PyTorch, but no apt and no network.
# Downloads the Debian .debs of qarl's C++ dependencies and unpacks them into a relocatable
# prefix under <repo>/.carry/gpu-deps/ (git-ignored). scripts/gpu/run.sh points CMake and
# pkg-config at it; the device call passes carry [".carry/gpu-deps"].
#
# Debian 12 binaries (glibc 2.36, libstdc++ of gcc 12) link and run against Ubuntu 24.04's
# glibc 2.39 and g++ 13 libstdc++ (both are backwards compatible).
#
# Usage: scripts/gpu/prepare-carry.sh [REPO_ROOT]   (default: /work/main, since the device
#        tool copies the session's main checkout, not a worktree)
set -euo pipefail
ROOT="${1:-/work/main}"
DEST="$ROOT/.carry/gpu-deps"
PKGS=(
  nlohmann-json3-dev
  libyaml-cpp-dev libyaml-cpp0.7
  libfmt-dev libfmt9
  libcli11-dev
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  libutf8proc-dev libutf8proc2
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
  pkgconf pkgconf-bin libpkgconf3
  zlib1g-dev zlib1g
)
rm -rf "$DEST"
mkdir -p "$DEST/debs" "$DEST/prefix"
(cd "$DEST/debs" && apt-get download "${PKGS[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
n=$(ls "$DEST"/debs/*.deb | wc -l)
[ "$n" -eq "${#PKGS[@]}" ] || { echo "prepare-carry: expected ${#PKGS[@]} debs, got $n" >&2; exit 1; }
for f in "$DEST"/debs/*.deb; do dpkg -x "$f" "$DEST/prefix"; done
rm -rf "$DEST/debs" "$DEST/prefix/usr/share/doc" "$DEST/prefix/usr/share/man" \
       "$DEST/prefix/usr/share/lintian" "$DEST/prefix/usr/src"
# pkg-config files say prefix=/usr: make them relative to where they lie.
for pc in "$DEST"/prefix/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$DEST"/prefix/usr/share/pkgconfig/*.pc; do
  [ -f "$pc" ] || continue
  case "$pc" in
    */lib/x86_64-linux-gnu/pkgconfig/*) rel='${pcfiledir}/../../..' ;;
    *) rel='${pcfiledir}/../..' ;;
  esac
  sed -i "s|^prefix=/usr\$|prefix=$rel|" "$pc"
  # files that spell out /usr/include or /usr/lib without ${prefix}
  sed -i -e "s|-I/usr/include|-I\${prefix}/include|g" -e "s|-L/usr/lib|-L\${prefix}/lib|g" "$pc"
done
# Absolute symlinks (e.g. libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) would point
# outside the prefix: point them at the unpacked file.
find "$DEST/prefix" -type l -print | while read -r l; do
  t=$(readlink "$l"); case "$t" in /*) [ -e "$DEST/prefix$t" ] && ln -sfn "$DEST/prefix$t" "$l";; esac
done
# Make absolute links relative so the folder can move (carry copies it elsewhere).
find "$DEST/prefix" -type l | while read -r l; do
  t=$(readlink "$l")
  case "$t" in "$DEST"/prefix/*) ln -sfn "$(realpath --relative-to="$(dirname "$l")" "$t")" "$l";; esac
done
echo "prepare-carry: $(du -sh "$DEST" | cut -f1) in $DEST"
