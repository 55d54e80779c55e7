#!/usr/bin/env bash
# Build llama.cpp's own server (`llama-server`) from the llama.cpp sources inside llama-cpp-python's sdist
# (PyPI is the one place this machine can fetch from), for bench/backends.py --llama-server.
#   bash bench/build_llama_server.sh [OUT_DIR]   (default: build/llama-server; about 10 minutes on 2 cores)
set -euo pipefail
out="${1:-build/llama-server}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
work="$(mktemp -d)"
pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
tar xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$work/build" --target llama-server -j"$(nproc)"
mkdir -p "$out"
cp "$work"/build/bin/llama-server "$out"/
echo "built $out/llama-server"
