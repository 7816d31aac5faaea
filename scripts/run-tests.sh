#!/usr/bin/env bash
# Runs every test project and ends with one line: `N passed, N failed, N skipped`.
set -uo pipefail
config=${1:-Release}
filter=${2:-}
cd "$(dirname "$0")/.."
log=$(mktemp)
args=(test XenIo.sln -c "$config" --no-build --nologo -v quiet --blame-hang-timeout 15m)
[ -n "$filter" ] && args+=(--filter "$filter")
dotnet "${args[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# VSTest's per-assembly summary: "Passed!  - Failed: 0, Passed: 12, Skipped: 1, Total: 13, ..."
read -r passed failed skipped < <(grep -E '^\s*(Passed|Failed)!\s+-\s+Failed:' "$log" | awk '
  { for (i = 1; i <= NF; i++) { gsub(",", "", $(i+1)); if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) } }
  END { printf "%d %d %d\n", p, f, s }')
# A crashed or hung test host prints no summary: count the run as failed.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "dotnet test exited $rc without reporting a failed test (crash or hang)"; fi
grep -E '^\s*Skipped ' "$log" | sed 's/^\s*/skipped: /' | sort -u | head -50
rm -f "$log"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
