#!/usr/bin/env bash
# Builds the npm package into pkg/: release wasm, wasm-bindgen glue, wasm-opt
# (npm binaryen: Debian's corrupts output), the files of pkg-template/.
# Prints the .wasm size raw and gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --lib --target wasm32-unknown-unknown
rm -rf pkg && mkdir -p pkg
wasm-bindgen target/wasm32-unknown-unknown/release/kvsweep.wasm --out-dir pkg --out-name kvsweep --target web
before=$(stat -c %s pkg/kvsweep_bg.wasm)
node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers pkg/kvsweep_bg.wasm -o pkg/kvsweep_bg.opt.wasm
mv pkg/kvsweep_bg.opt.wasm pkg/kvsweep_bg.wasm
cp pkg-template/* pkg/
raw=$(stat -c %s pkg/kvsweep_bg.wasm)
gz=$(gzip -9 -c pkg/kvsweep_bg.wasm | wc -c)
echo "kvsweep_bg.wasm: ${raw} bytes raw (${before} before wasm-opt), ${gz} bytes gzipped"
