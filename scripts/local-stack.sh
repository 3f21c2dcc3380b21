# Local AWS stack for batchops: moto's server (S3, SQS, DynamoDB on one loopback port), installed
# from PyPI at a pinned version into the project's .venv, started on a free port, stopped at exit.
# Source this file, then call `local_stack_start`.

BATCHOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
# The AWS CLI (v1, from PyPI) that the S3 Control tests drive `batchops serve` with; this version
# pins the botocore that moto's boto3 uses.
AWSCLI_VERSION="${AWSCLI_VERSION:-1.46.3}"
VENV="$BATCHOPS_ROOT/.venv"
LOCAL_DIR="$BATCHOPS_ROOT/.local"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_python_venv() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import moto, boto3, awscli; assert moto.__version__ == '$MOTO_VERSION' and awscli.__version__ == '$AWSCLI_VERSION'" 2>/dev/null; then
    return 0
  fi
  if ! python3 -m venv --help >/dev/null 2>&1; then
    log "installing python3-venv"
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  log "installing moto[server]==$MOTO_VERSION and awscli==$AWSCLI_VERSION into .venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "awscli==$AWSCLI_VERSION"
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
  if [ -n "${OTHER_MOTO_PID:-}" ] && kill -0 "$OTHER_MOTO_PID" 2>/dev/null; then
    kill "$OTHER_MOTO_PID" 2>/dev/null || true
    wait "$OTHER_MOTO_PID" 2>/dev/null || true
  fi
  OTHER_MOTO_PID=""
}

local_stack_start() {
  ensure_python_venv
  mkdir -p "$LOCAL_DIR"
  local port
  port="$(free_port)"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOCAL_DIR/moto.log" 2>&1 &
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
  local port
  port="$(free_port)"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOCAL_DIR/moto-other.log" 2>&1 &
  OTHER_MOTO_PID=$!
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$OTHER_MOTO_PID" 2>/dev/null; then
      cat "$LOCAL_DIR/moto-other.log" >&2
      echo "second moto server exited" >&2
      return 1
    fi
    sleep 0.1
  done
  export BATCHOPS_TEST_OTHER_S3="http://127.0.0.1:$port"
  log "second moto (export destination) listening on $BATCHOPS_TEST_OTHER_S3 (pid $OTHER_MOTO_PID)"
}
