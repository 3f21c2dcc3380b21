#!/usr/bin/env bash
# Lints the SAM template with a pinned cfn-lint, in two passes:
#   1. cfn-lint on template.yaml (SAM resources checked against SAM's schemas);
#   2. the template expanded by the pinned SAM translator (what `sam deploy` uploads), linted
#      again, so the generated Lambda, event source mapping, IAM and Scheduler resources are
#      checked value by value (runtimes, batch sizes, ...), which pass 1 does not do;
#   3. scripts/check_iam.py on the expanded template (no write or delete on source buckets, no
#      wildcard write buckets, version deletes only by the finalizer), and its self-test.
# Exits non-zero on any cfn-lint error or warning. Tools live in .venv-tools (not committed).
# Usage: scripts/lint-template.sh [template]   (default: template.yaml at the repository root)
set -euo pipefail

CFN_LINT_VERSION="1.58.0"
SAM_TRANSLATOR_VERSION="1.115.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TEMPLATE="${1:-template.yaml}"
VENV="$ROOT/.venv-tools"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
fi
have_pinned() { # name version
    [[ "$("$VENV/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" == "$2" ]]
}
if ! have_pinned cfn-lint "$CFN_LINT_VERSION" || ! have_pinned aws-sam-translator "$SAM_TRANSLATOR_VERSION"; then
    echo "==> installing cfn-lint==$CFN_LINT_VERSION aws-sam-translator==$SAM_TRANSLATOR_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "cfn-lint==$CFN_LINT_VERSION" "aws-sam-translator==$SAM_TRANSLATOR_VERSION"
fi

status=0

echo "==> cfn-lint $CFN_LINT_VERSION: $TEMPLATE"
"$VENV/bin/cfn-lint" -- "$TEMPLATE" || status=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> aws-sam-translator $SAM_TRANSLATOR_VERSION + cfn-lint: expanded $TEMPLATE"
if "$VENV/bin/python" scripts/check_iam.py --expand "$TEMPLATE" "$work/expanded.json"; then
    "$VENV/bin/cfn-lint" -- "$work/expanded.json" || status=1
    # 3. Least privilege on the expanded roles: source buckets read-only, write buckets named.
    echo "==> IAM check (scripts/check_iam.py): expanded $TEMPLATE"
    samconfig=()
    if [[ "$TEMPLATE" == "template.yaml" && -f infra/samconfig.toml ]]; then
        samconfig=(--samconfig infra/samconfig.toml)
    fi
    "$VENV/bin/python" scripts/check_iam.py "$work/expanded.json" "${samconfig[@]}" || status=1
else
    echo "SAM transform failed" >&2
    status=1
fi

# The check must be able to fail: its bad fixtures have to be refused, its good one passed.
echo "==> IAM check self-test (scripts/fixtures/iam-*)"
"$VENV/bin/python" scripts/check_iam.py --self-test || status=1

if [[ "$status" -eq 0 ]]; then
    echo "==> template OK"
fi
exit "$status"
