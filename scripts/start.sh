#!/usr/bin/env bash
# `npm start`: install what is missing, build the package, serve the demo on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
bash scripts/build.sh
exec node scripts/serve.mjs
