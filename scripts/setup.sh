#!/usr/bin/env bash
# Installs what building and testing kvsweep needs, skipping what is already
# there: the wasm targets, the wasm-bindgen CLI matching Cargo.lock, npm
# packages, and (with --browser) Debian's Chromium and ChromeDriver.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n== setup: %s\n' "$*"; }

installed_targets=$(rustup target list --installed)
for target in wasm32-unknown-unknown wasm32v1-none; do
  if ! grep -qx "$target" <<<"$installed_targets"; then
    say "adding Rust target $target"
    rustup target add "$target"
  fi
done

# The release .wasm is built by a pinned nightly with its standard library's
# source (scripts/build.sh): install what of it is missing.
source scripts/nightly.sh
if ! rustc "+$KVSWEEP_NIGHTLY" --version >/dev/null 2>&1; then
  say "installing Rust $KVSWEEP_NIGHTLY (the release .wasm's toolchain)"
  rustup toolchain install "$KVSWEEP_NIGHTLY" --profile minimal
fi
if ! rustup "+$KVSWEEP_NIGHTLY" target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding wasm32-unknown-unknown to $KVSWEEP_NIGHTLY"
  rustup "+$KVSWEEP_NIGHTLY" target add wasm32-unknown-unknown
fi
if ! rustup "+$KVSWEEP_NIGHTLY" component list --installed | grep -q '^rust-src'; then
  say "adding rust-src to $KVSWEEP_NIGHTLY"
  rustup "+$KVSWEEP_NIGHTLY" component add rust-src
fi

# The CLI must match the wasm-bindgen crate exactly (pinned in Cargo.toml).
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, "", $0); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  say "installing wasm-bindgen-cli $want (about 3.5 minutes the first time)"
  # Without --locked: its lockfile names a crate version the registry here lacks.
  cargo install wasm-bindgen-cli --version "=$want" --force
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund
fi

if [ "${1:-}" = "--browser" ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    say "installing Debian's chromium and chromium-driver"
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup: chromium and chromedriver are missing; install them (apt-get install chromium chromium-driver) as root" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi
