#!/usr/bin/env bash
# Install the bundled model's llama.cpp (llama-cpp-python) compiled for a portable CPU baseline.
#   PIP: the pip to install with (default: pip). LLAMA_WHEEL_DIR: where built wheels are kept
#   (default: ~/.cache/chatweb/wheels).
# pip would otherwise compile llama.cpp with -march=native: on a CPU with AMX its AMX kernels crash
# on SmolLM2's Q4_1 weights, and a wheel built on one CPU and reused from pip's cache (or a Docker
# image) on another dies with SIGILL. The wheel is kept in a folder named by the version, the CPU
# architecture and the flags, so a wheel built any other way is never picked up.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-pip}
version=$(sed -n 's/^llama-cpp-python\[server\]==\([0-9.]*\).*/\1/p' requirements-local.txt)
arch=$(uname -m)
case "$arch" in
  # x86-64-v3 (Haswell, Zen and every later x86-64 server CPU): no AVX-512 and no AMX.
  x86_64) flags="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
  # armv8-a with NEON, the compiler's default: every arm64 CPU.
  aarch64|arm64) flags="-DGGML_NATIVE=OFF" ;;
  *) echo "build-llama.sh: no portable flags for $arch" >&2; exit 1 ;;
esac
# No multimodal library (SmolLM2 is text only): a quarter less to compile.
flags="$flags -DLLAVA_BUILD=OFF"
key=$(printf '%s\n' "$version" "$arch" "$flags" | sha256sum | cut -c1-12)
dir="${LLAMA_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatweb/wheels}/llama-cpp-python-$version-$arch-$key"

if ! compgen -G "$dir/*.whl" >/dev/null; then
  echo "==> Compiling llama.cpp $version for $arch (portable: $flags)"
  echo "    About 4 minutes on two cores, once: the wheel is kept in $dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  set -o pipefail
  CMAKE_ARGS="$flags" $PIP wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$tmp" "llama-cpp-python==$version" 2>&1 | scripts/progress.sh
  mkdir -p "$dir"
  mv "$tmp"/*.whl "$dir/"
fi
wheel=$(compgen -G "$dir/*.whl" | head -1)
# --force-reinstall: a venv may hold the same version compiled natively by an older Makefile.
$PIP install -q --force-reinstall --no-deps "$wheel"
$PIP install -q --only-binary llama-cpp-python --find-links "$dir" -r requirements-local.txt
