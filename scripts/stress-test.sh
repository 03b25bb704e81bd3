#!/usr/bin/env bash
# Run the test suite (or a pytest selection) N times while two busy-looping processes load the
# machine, and say which runs passed: a test that only passes on an idle machine fails here.
#
#   scripts/stress-test.sh                      # `make test`, 5 times
#   scripts/stress-test.sh -n 3 tests/test_profiling_core.py tests/test_backends.py -k open_loop
#   BUSY=4 PYTHON=/path/to/python scripts/stress-test.sh -n 2 -m "not slow"
#
# Arguments after the options go to `python -m pytest -q`; with none, each run is `make test`.
# Exit status: 0 when every run passed, 1 when any failed, 2 on bad usage.
set -u

RUNS=5
BUSY="${BUSY:-2}"
usage() { echo "usage: $0 [-n RUNS] [PYTEST ARGS...]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; RUNS="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
case "$RUNS" in ''|*[!0-9]*|0) echo "error: -n: '$RUNS' is not a positive whole number of runs" >&2; exit 2 ;; esac
case "$BUSY" in ''|*[!0-9]*) echo "error: BUSY: '$BUSY' is not a whole number of processes" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/stress-test.XXXXXX")"

pids=()
stop_busy() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    pids=()
}
trap 'stop_busy' EXIT
trap 'stop_busy; exit 130' INT TERM

for _ in $(seq "$BUSY"); do
    python3 -c 'while True: pass' &
    pids+=("$!")
done
echo "stress-test: $RUNS run(s) with $BUSY busy process(es); logs in $LOGS"

failed=0
for i in $(seq "$RUNS"); do
    log="$LOGS/run-$i.log"
    started=$(date +%s)
    if [ $# -eq 0 ]; then
        make test >"$log" 2>&1
    else
        "$PYTHON" -m pytest -q "$@" >"$log" 2>&1
    fi
    rc=$?
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
    summary=$(grep -E '(passed|failed|error)' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then verdict=PASS; else verdict=FAIL; failed=$((failed + 1)); fi
    echo "run $i/$RUNS: $verdict (exit $rc, $(( $(date +%s) - started )) s, load $load) ${summary}"
    if [ "$rc" -ne 0 ]; then
        grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /'
    fi
done
echo "stress-test: $((RUNS - failed)) of $RUNS run(s) passed"
[ "$failed" -eq 0 ]
