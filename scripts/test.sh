#!/usr/bin/env bash
# The whole test suite, from a clean clone on a new machine: installs what it needs (moto pinned
# into .venv, cfn-lint pinned into .venv-tools), checks formatting and lints, starts the local
# AWS stack, and runs every test against it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/local-stack.sh

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "cfn-lint template.yaml"
scripts/lint-template.sh

if [ "${BATCHOPS_TEST_LAMBDA_BUILD:-0}" = "1" ]; then
  log "cargo lambda build --release --arm64"
  scripts/build.sh
fi

local_stack_start
log "cargo test --workspace"
cargo test --workspace 2>&1
