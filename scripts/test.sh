#!/usr/bin/env bash
# Installs what the tests need, then runs them: the test command of README.md.
#
# The tests run real clients and servers (kcat, confluent-kafka, kafka-python,
# MariaDB, InfluxDB 1.x, nginx, headless Chromium); this script installs the
# missing ones (Debian packages with apt-get, Python packages with pip for the
# python3 on PATH, cargo-nextest with cargo) and then runs
# `cargo nextest run --workspace` with any arguments given to it, e.g.
# `scripts/test.sh -p weir-log` or `scripts/test.sh -E 'test(compaction)'`.
# Each step is skipped when what it installs is already there, so a second run
# goes straight to the tests. `scripts/test.sh --setup-only` installs and
# stops there. The servers are started by the tests themselves
# on free 127.0.0.1 ports, never as services.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

# Debian packages: what each is for.
apt=()
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || apt+=("$1"); }
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt+=("$2"); }
# librdkafka and SQLite are compiled in: a C toolchain, make, OpenSSL and
# zlib headers, pkg-config to find them.
for pkg in build-essential pkg-config libssl-dev zlib1g-dev; do need_pkg "$pkg"; done
need_cmd mount util-linux          # the tmpfs disk-full tests
need_cmd kcat kcat                 # librdkafka's command-line client
need_cmd npm npm                   # weir up fetches its IP database from npm
# Real servers of the database tests, curl and gzip for the HTTP ingest test.
for pkg in mariadb-server mariadb-client influxdb nginx curl gzip; do need_pkg "$pkg"; done
need_cmd chromium chromium         # renders the web console in its test
# Debian's kafka-python 2.0.2, for /usr/bin/python3.
/usr/bin/python3 -c 'import kafka' >/dev/null 2>&1 || apt+=(python3-kafka)
if [ ${#apt[@]} -gt 0 ]; then
  say "installing Debian packages: ${apt[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${apt[@]}"
fi

# confluent-kafka (librdkafka 2.x) and kafka-python 3.x for the python3 on
# PATH; prometheus-client's parser reads /metrics in the console test.
if ! python3 -c 'import confluent_kafka, kafka, prometheus_client' >/dev/null 2>&1; then
  say "installing Python packages: confluent-kafka kafka-python prometheus-client"
  python3 -m pip install --quiet confluent-kafka kafka-python prometheus-client
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi
exec cargo nextest run --workspace "$@"
