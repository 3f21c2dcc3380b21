#!/usr/bin/env bash
# Builds the five Lambda functions (planner, worker, finalizer, events, api) for arm64 with cargo-lambda and
# checks that each bootstrap is an aarch64 ELF executable.
#
# Tools are pinned and installed into .venv-tools (PyPI: cargo-lambda ships the binary, ziglang
# is its cross-linker).
# Usage: scripts/build.sh [cargo lambda build args...]
#        scripts/build.sh --verify-only   (only check the existing bootstraps)
set -euo pipefail

VERIFY_ONLY=0
if [[ "${1:-}" == "--verify-only" ]]; then
    VERIFY_ONLY=1
    shift
fi

CARGO_LAMBDA_VERSION="1.9.2"
ZIGLANG_VERSION="0.17.1"
TARGET_TRIPLE="aarch64-unknown-linux-gnu"
FUNCTIONS=(planner worker finalizer events api)
PACKAGES=(batchops-planner batchops-worker batchops-finalizer batchops-events batchops-api)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-tools"

# --- tools ------------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
fi
have_pinned() { # name version
    [[ "$("$VENV/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" == "$2" ]]
}
if ! have_pinned cargo-lambda "$CARGO_LAMBDA_VERSION" || ! have_pinned ziglang "$ZIGLANG_VERSION"; then
    echo "==> installing cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
# cargo-lambda finds `cargo-lambda` and zig (`python3 -m ziglang`) through PATH.
export PATH="$VENV/bin:$PATH"

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$TARGET_TRIPLE"; then
        echo "==> rustup target add $TARGET_TRIPLE"
        rustup target add "$TARGET_TRIPLE"
    fi
else
    echo "warning: rustup not found; assuming the $TARGET_TRIPLE standard library is installed" >&2
fi

echo "==> $(cargo lambda --version)"

# --- build ------------------------------------------------------------------------------------
if [[ "$VERIFY_ONLY" -eq 0 ]]; then
    pkg_args=()
    for p in "${PACKAGES[@]}"; do pkg_args+=(-p "$p"); done
    start=$(date +%s)
    cargo lambda build --release --arm64 "${pkg_args[@]}" "$@"
    echo "==> cargo lambda build took $(( $(date +%s) - start ))s"
fi

# --- verify -----------------------------------------------------------------------------------
# e_machine (bytes 18-19, little-endian) of an ELF file; 183 (0xb7) is EM_AARCH64.
elf_machine() {
    "$VENV/bin/python" - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(20)
if len(head) < 20 or head[:4] != b"\x7fELF":
    print("not-elf")
else:
    print(struct.unpack("<H", head[18:20])[0])
EOF
}

target_dir="$(cargo metadata --format-version 1 --no-deps \
    | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
status=0
for fn in "${FUNCTIONS[@]}"; do
    bin="$target_dir/lambda/$fn/bootstrap"
    if [[ ! -f "$bin" ]]; then
        echo "MISSING  $bin" >&2
        status=1
        continue
    fi
    machine="$(elf_machine "$bin")"
    size="$(stat -c %s "$bin")"
    desc=""
    if command -v file >/dev/null 2>&1; then
        desc="$(file -b "$bin")"
    fi
    if [[ "$machine" != "183" ]]; then
        echo "BAD      $bin: not an aarch64 ELF (e_machine=$machine) $desc" >&2
        status=1
        continue
    fi
    printf 'ok       %-45s %10d bytes (%s MiB)  %s\n' "${bin#"$ROOT"/}" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')" "$desc"
done
exit "$status"
