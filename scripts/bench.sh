#!/usr/bin/env bash
# The planner benchmark, natively and in wasm under Node, in one run:
#   bash scripts/bench.sh [entries]      (default 1,000,000)
# Prints time, entries/s and memory for both, and the ratio wasm/native.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
entries="${1:-1000000}"
bash scripts/setup.sh

native=$(mktemp)
cargo bench --bench plan_bench -- "$entries" | tee "$native"
median=$(sed -n 's/^plan(): best [0-9.]* s, median \([0-9.]*\) s.*/\1/p' "$native")

# The bench profile builds into release/ (it inherits from release).
cargo build --profile bench --example plan_bench_wasm --target wasm32-unknown-unknown
out=target/bench-wasm
wasm-bindgen target/wasm32-unknown-unknown/release/examples/plan_bench_wasm.wasm --out-dir "$out" --target nodejs
echo '{ "type": "commonjs" }' > "$out/package.json"  # wasm-bindgen --target nodejs writes CommonJS
node benches/plan_wasm.mjs "$out" "$median" "$entries"
