#!/usr/bin/env bash
# `npm test`: every check and every test, in the order a failure is cheapest to find.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== test: %s\n' "$*"; }

bash scripts/setup.sh --browser

step "cargo fmt --check"
cargo fmt --check

step "clippy (native and wasm32)"
cargo clippy --all-targets -- -D warnings
# Benches are native tools (a counting allocator); everything else is linted for wasm too.
cargo clippy --target wasm32-unknown-unknown --lib --tests --examples -- -D warnings

step "Rust API docs (cargo doc, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "the core builds no_std (wasm32v1-none has no std to fall back on), as a dependency builds it"
cargo build --no-default-features --lib --target wasm32v1-none
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --no-default-features

step "native tests (unit, integration, planner properties)"
cargo test

step "npm package (release wasm, wasm-bindgen, wasm-opt)"
bash scripts/build.sh

step "Rust against a real IndexedDB in headless Chromium"
cargo test --target wasm32-unknown-unknown --tests

step "Node tests of the built package, and the demo page in Chromium"
node --test --test-timeout=120000 tests/node/ tests/edge/ tests/e2e/ tests/packaging/
