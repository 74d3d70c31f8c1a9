# Sourced by scripts/setup.sh and scripts/build.sh: the nightly toolchain
# that builds the release .wasm (see build.sh), pinned to one date because
# its flags change between nightlies. The machine's `nightly`, when it is
# that date, saves a download.
KVSWEEP_NIGHTLY_DATE=2026-05-19
if rustc +nightly --version 2>/dev/null | grep -q "$KVSWEEP_NIGHTLY_DATE"; then
  KVSWEEP_NIGHTLY=nightly
else
  KVSWEEP_NIGHTLY="nightly-$KVSWEEP_NIGHTLY_DATE"
fi
export KVSWEEP_NIGHTLY
