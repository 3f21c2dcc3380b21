#!/usr/bin/env bash
# Lints the SAM template with a pinned cfn-lint, in two passes:
#   1. cfn-lint on template.yaml (SAM resources checked against SAM's schemas);
#   2. the template expanded by the pinned SAM translator (what `sam deploy` uploads), linted
#      again, so the generated Lambda, event source mapping, IAM and Scheduler resources are
#      checked value by value (runtimes, batch sizes, ...), which pass 1 does not do.
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
cat >"$work/translate.py" <<'EOF'
"""Expands a SAM template offline, as `sam deploy` would after `sam build`."""
import json
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no managed policies by name, so nothing is looked up in IAM."""

    def load(self):
        return {}


with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
# `sam build` replaces local CodeUri paths with the S3 location of the built artifact.
for resource in (template.get("Resources") or {}).values():
    props = resource.get("Properties") or {}
    code = props.get("CodeUri")
    if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code, str) \
            and not code.startswith("s3://"):
        props["CodeUri"] = "s3://sam-build-artifacts/" + resource.get("Metadata", {}) \
            .get("BuildProperties", {}).get("Binary", "function") + ".zip"
try:
    expanded = transform(template, {}, NoManagedPolicies())
except InvalidDocumentException as e:
    for cause in e.causes:
        print(f"SAM: {cause.message}", file=sys.stderr)
    sys.exit(1)
with open(sys.argv[2], "w") as f:
    json.dump(expanded, f, indent=1)
EOF

echo "==> aws-sam-translator $SAM_TRANSLATOR_VERSION + cfn-lint: expanded $TEMPLATE"
if AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    "$VENV/bin/python" "$work/translate.py" "$TEMPLATE" "$work/expanded.json"; then
    "$VENV/bin/cfn-lint" -- "$work/expanded.json" || status=1
else
    echo "SAM transform failed" >&2
    status=1
fi

if [[ "$status" -eq 0 ]]; then
    echo "==> template OK"
fi
exit "$status"
