#!/usr/bin/env bash
# Runs every test project, one after another (integration tests create namespaces and devices and
# must not race each other), and ends with one line: `N passed, N failed, N skipped`.
# Counts come from each project's TRX report, not from console lines that parallel output can split.
set -uo pipefail
config=${1:-Release}
filter=${2:-}
cd "$(dirname "$0")/.."
results=TestResults/run
rm -rf "$results"
mkdir -p "$results"
total_passed=0 total_failed=0 total_skipped=0
for proj in $(ls tests/*/*.Tests.csproj | sort); do
  name=$(basename "$proj" .csproj)
  args=(test "$proj" -c "$config" --no-build --nologo --blame-hang-timeout 10m
        --logger "trx;LogFileName=$name.trx" --results-directory "$results")
  [ -n "$filter" ] && args+=(--filter "$filter")
  echo "=== $name"
  dotnet "${args[@]}" 2>&1 | grep -vE '^(A total of 1 test files matched|Additionally, path to test adapters|\s*$)'
  rc=${PIPESTATUS[0]}
  trx="$results/$name.trx"
  if [ ! -f "$trx" ]; then
    echo "$name: no test report (the test host crashed or hung; exit $rc)"
    total_failed=$((total_failed + 1))
    continue
  fi
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
  passed=$(get passed); failed=$(get failed); notexec=$(get notExecuted); errors=$(get error); aborted=$(get aborted); timeout=$(get timeout)
  failed=$(( ${failed:-0} + ${errors:-0} + ${aborted:-0} + ${timeout:-0} ))
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && [ -z "$filter" ]; then
    echo "$name: dotnet test exited $rc with no failed test recorded (crash or hang)"
    failed=1
  fi
  total_passed=$((total_passed + ${passed:-0})); total_failed=$((total_failed + failed)); total_skipped=$((total_skipped + ${notexec:-0}))
  echo "$name: ${passed:-0} passed, $failed failed, ${notexec:-0} skipped"
done
# Name every skipped test and its reason, so a skip is never silent.
for trx in "$results"/*.trx; do
  python3 - "$trx" <<'PY' 2>/dev/null || true
import sys, xml.etree.ElementTree as ET
ns = {'t': 'http://microsoft.com/schemas/VisualStudio/TeamTest/2010'}
root = ET.parse(sys.argv[1]).getroot()
for r in root.iter('{%s}UnitTestResult' % ns['t']):
    if r.get('outcome') == 'NotExecuted':
        msg = r.find('.//t:Output/t:ErrorInfo/t:Message', ns)
        text = (msg.text or '').strip() if msg is not None else ''
        if not text:
            so = r.find('.//t:Output/t:StdOut', ns)
            text = (so.text or '').strip() if so is not None else ''
        print(f"skipped: {r.get('testName')}: {text.splitlines()[0] if text else '(no reason given)'}")
PY
done
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
