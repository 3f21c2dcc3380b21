# Local AWS stack for batchops: moto's server (S3, SQS, DynamoDB on one loopback port), installed
# from PyPI at a pinned version into the project's .venv, started on a free port, stopped at exit.
# Source this file, then call `local_stack_start`.

BATCHOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
# Azurite (npm, its Blob service only), pinned: the Azure store exports are tested against.
AZURITE_VERSION="${AZURITE_VERSION:-3.37.0}"
# The AWS CLI (v1, from PyPI) that the S3 Control tests drive `batchops serve` with; this version
# pins the botocore that moto's boto3 uses.
AWSCLI_VERSION="${AWSCLI_VERSION:-1.46.3}"
# The GCS emulator (PyPI) that scripts/gcs_emulator.py extends with the XML API object_store sends.
GCP_STORAGE_EMULATOR_VERSION="${GCP_STORAGE_EMULATOR_VERSION:-2026.7.19}"
# BATCHOPS_VENV: another checkout's venv (a worktree runs the main checkout's).
VENV="${BATCHOPS_VENV:-$BATCHOPS_ROOT/.venv}"
LOCAL_DIR="$BATCHOPS_ROOT/.local"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_python_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import moto, boto3, awscli, importlib.metadata as m; assert moto.__version__ == '$MOTO_VERSION' and awscli.__version__ == '$AWSCLI_VERSION' and m.version('gcp-storage-emulator') == '$GCP_STORAGE_EMULATOR_VERSION'" 2>/dev/null; then
    return 0
  fi
  if ! python3 -m venv --help >/dev/null 2>&1; then
    log "installing python3-venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  log "installing moto[server]==$MOTO_VERSION, awscli==$AWSCLI_VERSION and gcp-storage-emulator==$GCP_STORAGE_EMULATOR_VERSION into .venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "awscli==$AWSCLI_VERSION" \
    "gcp-storage-emulator==$GCP_STORAGE_EMULATOR_VERSION"
}

# npm packages (Azurite, playwright-core) live in one prefix of their own, pinned.
NPM_PREFIX="$BATCHOPS_ROOT/.local/npm"
AZURITE_BIN="$NPM_PREFIX/node_modules/.bin/azurite-blob"
# playwright-core drives Debian's Chromium in the page test (it downloads no browser of its own).
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.64.1}"

ensure_npm() {
  if ! command -v npm >/dev/null; then
    log "installing nodejs and npm"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p "$NPM_PREFIX"
}

ensure_azurite() {
  if [ -x "$AZURITE_BIN" ] && [ "$("$AZURITE_BIN" --version 2>/dev/null)" = "$AZURITE_VERSION" ]; then
    return 0
  fi
  ensure_npm
  log "installing azurite@$AZURITE_VERSION into .local/npm"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
}

ensure_playwright() {
  local installed="$NPM_PREFIX/node_modules/playwright-core/package.json"
  if [ -f "$installed" ] && python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["version"] != sys.argv[2])' "$installed" "$PLAYWRIGHT_VERSION"; then
    return 0
  fi
  ensure_npm
  log "installing playwright-core@$PLAYWRIGHT_VERSION into .local/npm"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION" >&2
}

# Debian's Chromium, for the page test in a real browser.
ensure_chromium() {
  if command -v chromium >/dev/null; then
    return 0
  fi
  log "installing chromium (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

local_stack_stop() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  MOTO_PID=""
  local pid
  for pid in "${OTHER_MOTO_PID:-}" "${AZURITE_PID:-}" "${GCS_PID:-}"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  OTHER_MOTO_PID="" AZURITE_PID="" GCS_PID=""
}

# Waits until `url` answers (any HTTP status) while process `pid` lives; `name` and `logfile`
# for the error.
wait_for_http() {
  local url=$1 pid=$2 name=$3 logfile=$4
  for _ in $(seq 1 300); do
    if python3 - "$url" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
    then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$logfile" >&2
      echo "$name exited" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name did not answer on $url within 30 s (log: $logfile)" >&2
  return 1
}

local_stack_start() {
  ensure_python_venv
  mkdir -p "$LOCAL_DIR"
  local port
  # BATCHOPS_MOTO_PORT: a port of one's own (default: a free one).
  port="${BATCHOPS_MOTO_PORT:-$(free_port)}"
  # moto with DynamoDB writes one at a time: see scripts/moto_server.py.
  "$VENV/bin/python" "$BATCHOPS_ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$LOCAL_DIR/moto.log" 2>&1 &
  MOTO_PID=$!
  trap local_stack_stop EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      cat "$LOCAL_DIR/moto.log" >&2
      echo "moto server exited" >&2
      return 1
    fi
    sleep 0.1
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
  export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export AWS_DEFAULT_REGION="$AWS_REGION"
  log "moto $MOTO_VERSION listening on $AWS_ENDPOINT_URL (pid $MOTO_PID, log .local/moto.log)"
}

# A second moto, the "other" S3-compatible store that exports write to (tests give it its own
# credentials through a Secrets Manager secret); its endpoint is BATCHOPS_TEST_OTHER_S3.
# Call after local_stack_start (whose EXIT trap stops it too).
other_store_start() {
  other_moto_launch
  wait_for_http "$BATCHOPS_TEST_OTHER_S3/moto-api/" "$OTHER_MOTO_PID" "second moto server" "$LOCAL_DIR/moto-other.log"
  log "second moto (export destination) listening on $BATCHOPS_TEST_OTHER_S3 (pid $OTHER_MOTO_PID)"
}

other_moto_launch() {
  local port
  port="$(free_port)"
  "$VENV/bin/python" "$BATCHOPS_ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$LOCAL_DIR/moto-other.log" 2>&1 &
  OTHER_MOTO_PID=$!
  export BATCHOPS_TEST_OTHER_S3="http://127.0.0.1:$port"
}

# Azurite's well-known development account (public: Azurite's documentation and every SDK carry it).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The container export tests write under (each test under a prefix of its own).
EXPORT_TEST_CONTAINER=batchops-exports

# The bucket GCS export tests write under (each test under a prefix of its own).
EXPORT_TEST_GCS_BUCKET=batchops-exports

# The stores exports are tested against, started at once and waited for together: the second
# moto (BATCHOPS_TEST_OTHER_S3), Azurite's Blob service in memory (BATCHOPS_TEST_AZURE_BLOB,
# the account URL http://127.0.0.1:PORT/devstoreaccount1, with container batchops-exports) and
# gcp-storage-emulator in memory through scripts/gcs_emulator.py, which adds the XML API requests
# object_store's GCS client sends (BATCHOPS_TEST_GCS, its base URL, with bucket
# batchops-exports; BATCHOPS_TEST_GCS_PORT chooses its port).
# Call after local_stack_start (whose EXIT trap stops them too).
export_stores_start() {
  ensure_python_venv
  ensure_azurite
  other_moto_launch
  local gcs_port="${BATCHOPS_TEST_GCS_PORT:-$(free_port)}"
  "$VENV/bin/python" "$BATCHOPS_ROOT/scripts/gcs_emulator.py" --host 127.0.0.1 --port "$gcs_port" \
    --bucket "$EXPORT_TEST_GCS_BUCKET" >"$LOCAL_DIR/gcs.log" 2>&1 &
  GCS_PID=$!
  export BATCHOPS_TEST_GCS="http://127.0.0.1:$gcs_port"
  local azure_port
  azure_port="$(free_port)"
  mkdir -p "$LOCAL_DIR/azurite"
  (cd "$LOCAL_DIR/azurite" && exec "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$azure_port" \
    --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --silent) >"$LOCAL_DIR/azurite.log" 2>&1 &
  AZURITE_PID=$!
  export BATCHOPS_TEST_AZURE_BLOB="http://127.0.0.1:$azure_port/$AZURITE_ACCOUNT"
  wait_for_http "$BATCHOPS_TEST_OTHER_S3/moto-api/" "$OTHER_MOTO_PID" "second moto server" "$LOCAL_DIR/moto-other.log"
  wait_for_http "$BATCHOPS_TEST_AZURE_BLOB?comp=list" "$AZURITE_PID" "Azurite" "$LOCAL_DIR/azurite.log"
  wait_for_http "$BATCHOPS_TEST_GCS/" "$GCS_PID" "GCS emulator" "$LOCAL_DIR/gcs.log"
  azurite_create_container "$EXPORT_TEST_CONTAINER"
  log "export stores: second moto $BATCHOPS_TEST_OTHER_S3, Azurite $BATCHOPS_TEST_AZURE_BLOB, GCS emulator $BATCHOPS_TEST_GCS"
}

# Creates a container in Azurite (Shared Key signed PUT ?restype=container; 409 if it exists).
azurite_create_container() {
  python3 - "$BATCHOPS_TEST_AZURE_BLOB" "$AZURITE_ACCOUNT" "$AZURITE_KEY" "$1" <<'PY'
import base64, email.utils, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request
url, account, key, container = sys.argv[1:5]
date, version = email.utils.formatdate(usegmt=True), "2021-08-06"
path = urllib.parse.urlparse(url).path
# Fields: encoding, language, length (empty for 0), MD5, type, date and five conditionals.
to_sign = ("PUT\n" + "\n" * 4 + "application/octet-stream\n" + "\n" * 6 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{account}{path}/{container}\nrestype:container")
signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
request = urllib.request.Request(f"{url}/{container}?restype=container", method="PUT", data=b"", headers={
    "Content-Type": "application/octet-stream", "x-ms-date": date, "x-ms-version": version,
    "Authorization": f"SharedKey {account}:{signature.decode()}"})
try:
    urllib.request.urlopen(request, timeout=10)
except urllib.error.HTTPError as err:
    if err.code != 409:
        sys.exit(f"creating Azurite container {container}: HTTP {err.code} {err.read()[:300]!r}")
PY
}
