#!/usr/bin/env bash
# run_all.sh: every deploy test, for scripts/test.sh or by hand.
#   test_image_build.sh  Dockerfile build stage + runtime libraries (builds)
#   test_chart.sh        chart lint/render/kubeconform/NOTES/deploy/k8s
#   test_chart_e2e.sh    rendered Deployments run here + helm test script
#   test_local_cluster.sh  deploy/local/cluster.sh start/round trip/stop
#   test_grafana.sh      dashboard JSON parses, queries only registered metrics
# HAWSER_BIN_DIR (default build/bin when complete) is used by test_chart_e2e.sh
# and test_local_cluster.sh.
# Prints each script's output and a total "N passed, N failed" line.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
total_pass=0
total_fail=0
rc=0
for t in test_image_build.sh test_chart.sh test_chart_e2e.sh test_local_cluster.sh test_grafana.sh; do
	echo "[deploy] $t"
	out="$(bash "$root/tests/deploy/$t" 2>&1)"
	trc=$?
	printf '%s\n' "$out"
	line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -1)"
	p="$(cut -d' ' -f1 <<<"${line:-0 passed, 0 failed}")"
	f="$(cut -d' ' -f3 <<<"${line:-0 passed, 0 failed}")"
	if [ "$trc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	[ "$trc" -eq 0 ] || rc=1
done
echo "[deploy] total (${SECONDS}s):"
echo "$total_pass passed, $total_fail failed"
exit "$rc"
