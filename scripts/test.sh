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

# The LambdaInvoke tests run the example function's binary under scripts/lambda_emulator.py:
# `cargo test` builds test targets only, so build the binary itself first.
log "cargo build -p batchops-example-invoke"
cargo build --quiet -p batchops-example-invoke

local_stack_start
export_stores_start
log "cargo test --workspace"
mkdir -p "$LOCAL_DIR"
set +e
cargo test --workspace 2>&1 | tee "$LOCAL_DIR/test.log"
status=${PIPESTATUS[0]}
set -e
# --- lambda-e2e (the Lambda binaries under a Runtime API emulator; own moto) -------------------
log "scripts/lambda_e2e.sh"
set +e
scripts/lambda_e2e.sh 2>&1 | tee -a "$LOCAL_DIR/test.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
# --- end lambda-e2e ------------------------------------------------------------------------------
# --- page-e2e (the job center page in headless Chromium, against batchops serve; own moto) ------
log "scripts/page_e2e.sh"
set +e
scripts/page_e2e.sh 2>&1 | tee -a "$LOCAL_DIR/test.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
# --- end page-e2e --------------------------------------------------------------------------------
# ---- chaos run (scripts/chaos.sh short): faults and SIGKILLs; its failure fails the suite ----
log "scripts/chaos.sh short"
if ! scripts/chaos.sh short 2>&1 | tee "$LOCAL_DIR/chaos.log"; then
  echo "chaos run FAILED (log: .local/chaos.log, details: .local/chaos/)" >&2
  status=1
fi
# ---- end of chaos run ----
# One closing line for the whole run (cargo ends with the doc tests' own "0 passed").
python3 - "$LOCAL_DIR/test.log" <<'PY'
import re, sys
passed = failed = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    m = m or re.match(r"(?:lambda|page)-e2e: (\d+) passed, (\d+) failed$", line)  # their closing lines
    if m:
        passed += int(m.group(1)); failed += int(m.group(2))
print(f"tests: {passed} passed, {failed} failed")
PY
exit "$status"
