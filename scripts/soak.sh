#!/usr/bin/env bash
# The mirror's fault soak: the scenarios of tests/faults.rs (primary killed, primary hung, mirror
# killed, proxy killed with repair records pending and drained by a second instance, primary
# answering 503 SlowDown, objects rolled back and deleted in one store behind the proxy's back and
# `mirror reconcile` run during and after the workload), each with a longer workload: FAULT_OPS operations per scenario
# (default 10000) from 4 concurrent clients, through the debug build of the proxy.
#
#   bash scripts/soak.sh                 # all scenarios, 10,000 operations each
#   FAULT_OPS=20000 bash scripts/soak.sh mirror_killed   # one scenario (a test-name filter)
#
# Prints, per scenario: operations, client-visible failures (failed attempts, and operations that
# failed after the client's 3 attempts), reads and writes that failed while the proxy and at least
# one store were up, wrong (stale or resurrected) reads, acknowledged writes lost (any store holding
# something a key may not hold, checked by offline `escrow-proxy decrypt` of each store alone),
# and the time to converge after the workload stopped. Logs of the run: $SOAK_LOG.
# Exit status: non-zero if any scenario failed its checks.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export FAULT_OPS="${FAULT_OPS:-10000}"
SOAK_LOG="${SOAK_LOG:-$(mktemp -t escrow-soak.XXXXXX.log)}"

bash scripts/install-test-deps.sh

echo "==> building the fault tests (debug)"
# Run the test binary itself afterwards, so cargo's lock is not held for the whole soak.
built="$(cargo test --locked --no-run --test faults 2>&1)" || { echo "$built"; exit 1; }
bin="$(sed -n 's/.*Executable tests\/faults.rs (\(.*\))$/\1/p' <<<"$built" | tail -n1)"
[[ -x $bin ]] || { echo "soak: cannot find the fault test binary in:"; echo "$built"; exit 1; }

echo "==> soak: FAULT_OPS=$FAULT_OPS per scenario; log: $SOAK_LOG"
start=$SECONDS
# One scenario at a time: the figures are then not skewed by the others.
"$bin" --include-ignored --nocapture --test-threads=1 "$@" >"$SOAK_LOG" 2>&1
status=$?

printf '\n%-17s %7s %7s %11s %10s %16s %17s %11s %5s %10s %12s\n' \
    scenario verdict ops failed_att failed_ops reads_failed_up writes_failed_up wrong_reads lost workload_s converge_ms
grep -o 'FAULTS scenario=.*' "$SOAK_LOG" | while read -r line; do
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    printf '%-17s %7s %7s %11s %10s %16s %17s %11s %5s %10s %12s\n' "$(field scenario)" "$(field verdict)" \
        "$(field ops)" "$(field failed_attempts)" "$(field failed_ops)" "$(field failed_reads_store_up)" \
        "$(field failed_writes_store_up)" \
        "$(field wrong_reads)" "$(field lost)" "$(field workload_s)" "$(field converge_ms)"
done
echo
grep -E '^test result:' "$SOAK_LOG"
echo "soak: $((SECONDS - start)) s, exit $status (details and examples in $SOAK_LOG)"
exit "$status"
