#!/usr/bin/env bash
# Long torture runs, opt-in (CI runs the same suites briefly).
#
#   scripts/torture-long.sh [SECONDS] [ROUNDS]
#
# 1. The broker crash test (SIGKILL at uneven moments under an idempotent
#    acks=all producer and a committing group member) and the network fuzz
#    test, each running SECONDS (default 600) instead of 25.
# 2. The pipeline torture suites ROUNDS times (default 5): the shipper
#    killed and restarted through log rotations, the pipeline killed again
#    and again, MariaDB stopped mid-run (needs mariadb-server, nginx and
#    influxdb installed, as in .ci/run).
# 3. Every cargo fuzz target for SECONDS each.
#
# Any failure stops the script with the failing test's output.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
rounds=${2:-5}

echo "== crash and network fuzz: ${secs} s each"
WEIR_TORTURE_SECS=$secs cargo nextest run -p weir --test torture --no-fail-fast

for i in $(seq 1 "$rounds"); do
  echo "== pipeline torture, round $i of $rounds"
  cargo nextest run -p weir --test shipper --test interop --test databases
done

echo "== fuzz targets: ${secs} s each"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cd fuzz
for target in request_decode record_batch log_recovery; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" -- -max_total_time="$secs"
done
echo "== torture-long: all passed"
