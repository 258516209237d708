#!/usr/bin/env bash
# The test command: services up, Python peers installed, then fmt, clippy, the Rust test suite
# (SQLite and PostgreSQL, local and S3 blobs) and the real `mlflow` client against the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${CAPSTAN_CACHE:-$HOME/.cache/capstan}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"

# --- services: start what is down, fail if it cannot be reached ---------------------------
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is down; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "error: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -d test -qtAc 'select 1' >/dev/null || { echo "error: cannot query PostgreSQL database 'test' as postgres" >&2; exit 1; }
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Redis is down; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "error: Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }

# --- Python peers (the real mlflow client, moto as the S3 server), outside the checkout ----
venv="$cache/venv"
stamp="$venv/.requirements-$(sha256sum tests/python/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing Python test peers into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/python/requirements.txt
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
export CAPSTAN_TEST_MOTO="$venv/bin/moto_server"

# --- Rust -----------------------------------------------------------------------------------
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# --- the real mlflow client against the real binary ------------------------------------------
cargo build -p capstan --locked
CAPSTAN_BIN="$CARGO_TARGET_DIR/debug/capstan" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
