#!/bin/bash
# Every GPU check of the project in one run, for a machine lent for a few minutes:
#   1. the CUDA tests (tests/gpu), files in the order below, the slow compile test last;
#   2. benchmarks/gpu_throughput.py at its default size.
# Each step runs under its own `timeout` (SIGINT first, so that pytest and the benchmark
# end their Ray instances and write what they have; SIGKILL 20 s later). Logs and the
# benchmark's rows go to $OUT (default runs/gpu_check); a short summary is printed last
# and kept as $OUT/summary.txt. Six files in all.
#
# Sizes (estimates, not measurements): tests/gpu about 2-3 minutes on one H200 (eager
# step times scaled from the H200 step times measured before by each test's count of
# operations per step, plus Ray's and the workers' start-up; torch.compile's time is
# the least known part); the benchmark about 4 minutes and it starts no row after 270 s
# (see its --help). The timeouts below leave the whole script under 10 minutes.
#
# On a lent GPU machine, from the checkout's root, after .gpu/ was prepared here:
#   source .gpu/bootstrap.sh && bash benchmarks/gpu_check.sh
# Without CUDA it runs too: the tests skip and the benchmark runs its reduced CPU rows.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
TESTS_TIMEOUT=${TESTS_TIMEOUT:-210}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-320}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export MPLBACKEND=Agg RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
TESTS=(tests/gpu/test_gpu_graphs.py tests/gpu/test_gpu_packing.py
       tests/gpu/test_gpu_search.py tests/gpu/test_gpu_export.py
       tests/gpu/test_gpu_growth.py tests/gpu/test_gpu_precision.py
       tests/gpu/test_gpu_compile.py)
missing=$(comm -13 <(printf '%s\n' "${TESTS[@]}" | sort) <(ls tests/gpu/test_*.py | sort))
if [ -n "$missing" ]; then
  echo "gpu_check.sh: tests/gpu has files this script does not run: $missing" >&2
  exit 2
fi

{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
  $PYTHON -c "import sys, torch, ray; print('python', sys.version.split()[0], '| torch', \
torch.__version__, '| cuda', torch.version.cuda, torch.cuda.is_available(), '| ray', \
ray.__version__)"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

started=$SECONDS
echo "== tests/gpu (timeout ${TESTS_TIMEOUT} s)"
timeout -s INT -k 20 "$TESTS_TIMEOUT" $PYTHON -m pytest "${TESTS[@]}" -v -rA \
  --durations=0 -p no:cacheprovider --junitxml="$OUT/tests_gpu.xml" \
  > "$OUT/tests_gpu.log" 2>&1
tests_rc=$?
tests_s=$((SECONDS - started))
tail -n 3 "$OUT/tests_gpu.log"

started=$SECONDS
echo "== benchmarks/gpu_throughput.py (timeout ${BENCH_TIMEOUT} s)"
rm -f "$OUT/gpu_throughput.jsonl"
timeout -s INT -k 20 "$BENCH_TIMEOUT" $PYTHON benchmarks/gpu_throughput.py \
  --out "$OUT/gpu_throughput.jsonl" > "$OUT/gpu_throughput.log" 2>&1
bench_rc=$?
bench_s=$((SECONDS - started))

{
  echo "== summary"
  echo "tests/gpu: exit $tests_rc after ${tests_s} s$([ $tests_rc = 124 ] && echo ' (timed out)')"
  grep -E "^(PASSED|FAILED|ERROR|SKIPPED)|^[0-9.]+s (call|setup|teardown) " \
    "$OUT/tests_gpu.log" | head -n 40
  grep -E "^=+ .*(passed|failed|error|skipped|interrupted).* =+$" "$OUT/tests_gpu.log" | tail -n 1
  echo "gpu_throughput.py: exit $bench_rc after ${bench_s} s$([ $bench_rc = 124 ] && echo ' (timed out)')"
  grep -vE "^(Traceback|  |\[|[0-9]{4}-)" "$OUT/gpu_throughput.log" | tail -n 24
  echo "rows measured: $(grep -c '"record": "row"' "$OUT/gpu_throughput.jsonl" 2>/dev/null || echo 0)"
} | tee "$OUT/summary.txt"
[ $tests_rc = 0 ] && [ $bench_rc = 0 ]
