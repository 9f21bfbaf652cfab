#!/usr/bin/env bash
# churn.sh: waves of new series into fedgate, as pods replaced in a
# cluster bring them, each wave expiring a retention later, with a gzip'd
# /federate of everything every second; after each wave it prints the
# series held, the symbol tables and their symbols, the series moved off
# sparse tables, and fedgate's RSS. It shows whether memory per series
# stays level as label strings come and go (wal/head's "Label storage").
# fedgate is pinned to CPU 0, the load generator and curl to CPU 1.
#
#   bench/churn.sh                     # 90 waves of 40,000 series
#   WAVES=20 bench/churn.sh
#   FEDGATE=/path/to/other/fedgate bench/churn.sh   # another build
#
# Knobs (env): WAVES, TENANTS, SERIES_PER_TENANT (a wave is TENANTS x
# SERIES_PER_TENANT series; every wave's differ: loadgen's series are
# seeded by their number), PAUSE (seconds between waves), RETENTION,
# CHECKPOINT_INTERVAL, FEDGATE (a binary; default: built from this tree),
# RECEIVER_CPU, LOADGEN_CPU, BASE_PORT.
set -euo pipefail

if [[ -n ${FEDGATE:-} ]]; then FEDGATE=$(realpath "$FEDGATE"); fi
cd "$(dirname "$0")/.."
WAVES=${WAVES:-90}
TENANTS=${TENANTS:-20}
SERIES_PER_TENANT=${SERIES_PER_TENANT:-2000}
PAUSE=${PAUSE:-3}
RETENTION=${RETENTION:-30s}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-5s}
RECEIVER_CPU=${RECEIVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BASE_PORT=${BASE_PORT:-19290}
HOST=127.0.0.1

for tool in taskset curl go; do
	command -v "$tool" >/dev/null || { echo "churn.sh: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-churn.XXXXXX")
PIDS=()
cleanup() {
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/bin" "$TMP/data"
if [[ -z ${FEDGATE:-} ]]; then
	go build -o "$TMP/bin/fedgate" .
	FEDGATE=$TMP/bin/fedgate
fi
go build -o "$TMP/bin/loadgen" ./bench/cmd/loadgen

{
	echo "cluster_label: cluster_id"
	echo "tenants:"
	for ((t = 0; t < TENANTS; t++)); do printf '  - {id: t-%03d, token: tok-%03d}\n' "$t" "$t"; done
	echo "limits: {ingestion_rate: 1e9, ingestion_burst: 1e9, max_series: 10000000}"
	echo "storage: {retention: $RETENTION, checkpoint_interval: $CHECKPOINT_INTERVAL}"
} >"$TMP/fedgate.yml"
PUBLIC=$HOST:$BASE_PORT INTERNAL=$HOST:$((BASE_PORT + 1))
taskset -c "$RECEIVER_CPU" "$FEDGATE" --config.file="$TMP/fedgate.yml" --storage.path="$TMP/data" \
	--web.listen-address="$PUBLIC" --web.internal-listen-address="$INTERNAL" --log.level=warn >"$TMP/log" 2>&1 &
PID=$!
PIDS+=("$PID")
ready=0
for _ in $(seq 300); do
	kill -0 "$PID" 2>/dev/null || break
	if curl -sf --max-time 1 -o /dev/null "http://$PUBLIC/-/ready"; then ready=1; break; fi
	sleep 0.2
done
if [[ $ready == 0 ]] || ! kill -0 "$PID" 2>/dev/null; then
	echo "churn.sh: fedgate did not become ready; its log:" >&2
	cat "$TMP/log" >&2
	exit 1
fi

# A scrape a second, as a central Prometheus would (more often).
(
	while kill -0 "$PID" 2>/dev/null; do
		taskset -c "$LOADGEN_CPU" curl -s --compressed -o /dev/null -w '%{http_code}\n' -G "http://$INTERNAL/federate" \
			--data-urlencode 'match[]={__name__=~".+"}' >>"$TMP/federate" || true
		sleep 1
	done
) &
PIDS+=($!)

metric() { curl -s "http://$INTERNAL/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
printf '%-5s %8s %6s %8s %7s %8s %7s %7s\n' wave series tables symbols sym_mb moved rss_mb hwm_mb
failed=0
for ((k = 0; k < WAVES; k++)); do
	# The warmup round creates the wave's series: its refusals are
	# reported apart from the measured round's errors.
	if ! taskset -c "$LOADGEN_CPU" "$TMP/bin/loadgen" -url="http://$PUBLIC/api/v1/write" -auth=bearer -tenants="$TENANTS" \
		-series-per-tenant=$((SERIES_PER_TENANT + k)) -series-per-request=2000 -concurrency=4 -rounds=1 -warmup-rounds=1 \
		-interval=1s >"$TMP/loadgen" 2>&1 || ! grep -q ' errors=0 ' "$TMP/loadgen" || grep -q '^warmup: first error' "$TMP/loadgen"; then
		echo "churn.sh: wave $k failed:" >&2
		tail -3 "$TMP/loadgen" >&2
		failed=1
	fi
	sleep "$PAUSE"
	if ! kill -0 "$PID" 2>/dev/null; then
		echo "churn.sh: fedgate exited after wave $k; its log:" >&2
		tail -20 "$TMP/log" >&2
		exit 1
	fi
	printf '%-5d %8.0f %6.0f %8.0f %7.2f %8.0f %7.1f %7.1f\n' "$k" "$(metric fedgate_head_series)" \
		"$(metric fedgate_head_symbol_tables)" "$(metric fedgate_head_symbols)" \
		"$(awk -v b="$(metric fedgate_head_symbol_bytes)" 'BEGIN { print b / 1048576 }')" \
		"$(metric fedgate_head_series_moved_total)" \
		"$(awk '/^VmRSS/ { print $2 / 1024 }' /proc/$PID/status)" "$(awk '/^VmHWM/ { print $2 / 1024 }' /proc/$PID/status)"
done
echo "federate answers: $(sort "$TMP/federate" | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')"
if grep -qv '^200$' "$TMP/federate"; then
	echo "churn.sh: a /federate did not answer 200" >&2
	failed=1
fi
if ! kill -0 "$PID" 2>/dev/null; then
	echo "churn.sh: fedgate exited; its log:" >&2
	tail -20 "$TMP/log" >&2
	failed=1
fi
if grep -qi panic "$TMP/log"; then
	echo "churn.sh: fedgate logged a panic:" >&2
	grep -i -A5 panic "$TMP/log" >&2
	failed=1
fi
exit $failed
