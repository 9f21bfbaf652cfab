#!/usr/bin/env bash
# compare.sh: the same remote-write load into fedgate, Prometheus 2.x and
# VictoriaMetrics (single-node), then one gzip'd /federate of everything each
# holds, timed. Each receiver is pinned to CPU 0, the load generator and curl
# to CPU 1. Everything listens on 127.0.0.1; data lives in a temp dir that is
# removed on exit (KEEP=1 keeps it, with the receivers' logs).
#
#   bench/compare.sh                     # SIZES="100000 1000000"
#   QUICK=1 bench/compare.sh             # 20k series, a smoke test
#   SIZES=100000 RECEIVERS="fedgate victoriametrics" bench/compare.sh
#
# Knobs (env): SIZES, TENANTS, SERIES_PER_REQUEST, CONCURRENCY, ROUNDS,
# WARMUP_ROUNDS, HALF_ROUNDS (rounds paced at half the measured samples/s,
# for p99_half_ms; 0: none), RECEIVERS, PROMETHEUS, VICTORIA_METRICS,
# RECEIVER_CPU, LOADGEN_CPU, BASE_PORT, LOG_SLOW (e.g. 50ms: the load
# generator prints each request slower than that, with its due time).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100000 1000000"}
if [[ ${QUICK:-0} == 1 ]]; then SIZES=20000; fi
TENANTS=${TENANTS:-50}
SERIES_PER_REQUEST=${SERIES_PER_REQUEST:-2000}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-5}
WARMUP_ROUNDS=${WARMUP_ROUNDS:-1}
HALF_ROUNDS=${HALF_ROUNDS:-5}
RECEIVERS=${RECEIVERS:-"fedgate prometheus victoriametrics"}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
VICTORIA_METRICS=${VICTORIA_METRICS:-/usr/bin/victoria-metrics}
RECEIVER_CPU=${RECEIVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BASE_PORT=${BASE_PORT:-19090}
HOST=127.0.0.1

for tool in taskset curl go; do
	command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-compare.XXXXXX")
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

log "building fedgate and loadgen into $TMP"
mkdir -p "$TMP/bin"
go build -o "$TMP/bin/fedgate" .
go build -o "$TMP/bin/loadgen" ./bench/cmd/loadgen

# wait_ready PID URL: polls until URL answers 200 (60 s at most).
wait_ready() {
	for _ in $(seq 300); do
		if ! kill -0 "$1" 2>/dev/null; then
			echo "compare.sh: receiver exited; its log:" >&2
			cat "$3" >&2
			return 1
		fi
		if curl -sf --max-time 1 -o /dev/null "$2"; then return 0; fi
		sleep 0.2
	done
	echo "compare.sh: $2 never became ready; log in $3" >&2
	return 1
}

# start NAME: starts receiver NAME pinned to RECEIVER_CPU with fresh data;
# sets PID, WRITE_URL, FEDERATE_URL, AUTH, TENANT_LABEL.
start() {
	local name=$1 dir="$TMP/$1"
	rm -rf "$dir" && mkdir -p "$dir/data"
	case $name in
	fedgate)
		{
			echo "cluster_label: cluster_id"
			echo "tenants:"
			for ((t = 0; t < TENANTS; t++)); do printf '  - {id: t-%03d, token: tok-%03d}\n' "$t" "$t"; done
			echo "limits: {ingestion_rate: 1e9, ingestion_burst: 1e9, max_series: 10000000}"
			echo "storage: {retention: 1h}"
		} >"$dir/fedgate.yml"
		taskset -c "$RECEIVER_CPU" "$TMP/bin/fedgate" --config.file="$dir/fedgate.yml" --storage.path="$dir/data" \
			--web.listen-address=$HOST:$((BASE_PORT + 5)) --web.internal-listen-address=$HOST:$((BASE_PORT + 6)) \
			--log.level=warn >"$dir/log" 2>&1 &
		PID=$!
		WRITE_URL=http://$HOST:$((BASE_PORT + 5))/api/v1/write
		FEDERATE_URL=http://$HOST:$((BASE_PORT + 6))/federate
		READY_URL=http://$HOST:$((BASE_PORT + 5))/-/ready
		AUTH=bearer TENANT_LABEL=""
		;;
	prometheus)
		echo "global: {scrape_interval: 1m}" >"$dir/prometheus.yml"
		taskset -c "$RECEIVER_CPU" "$PROMETHEUS" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
			--web.listen-address=$HOST:$BASE_PORT --web.enable-remote-write-receiver \
			--query.lookback-delta=1h --log.level=warn >"$dir/log" 2>&1 &
		PID=$!
		WRITE_URL=http://$HOST:$BASE_PORT/api/v1/write
		FEDERATE_URL=http://$HOST:$BASE_PORT/federate
		READY_URL=http://$HOST:$BASE_PORT/-/ready
		AUTH=none TENANT_LABEL=cluster_id
		;;
	victoriametrics)
		taskset -c "$RECEIVER_CPU" "$VICTORIA_METRICS" -storageDataPath="$dir/data" -httpListenAddr=$HOST:$((BASE_PORT + 8)) \
			-search.maxFederateSeries=100000000 -search.maxLookback=1h -loggerLevel=WARN >"$dir/log" 2>&1 &
		PID=$!
		WRITE_URL=http://$HOST:$((BASE_PORT + 8))/api/v1/write
		FEDERATE_URL=http://$HOST:$((BASE_PORT + 8))/federate
		READY_URL=http://$HOST:$((BASE_PORT + 8))/health
		AUTH=none TENANT_LABEL=cluster_id
		;;
	*) echo "compare.sh: unknown receiver $name" >&2; exit 2 ;;
	esac
	PIDS+=("$PID")
	wait_ready "$PID" "$READY_URL" "$dir/log"
}

stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# field NAME LINE: the value of NAME=... in a RESULT line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

ROWS=()
NOTES=()
for size in $SIZES; do
	per_tenant=$((size / TENANTS))
	for name in $RECEIVERS; do
		start "$name"
		log "$name (pid $PID): $size series = $TENANTS tenants x $per_tenant"
		taskset -c "$LOADGEN_CPU" "$TMP/bin/loadgen" -url="$WRITE_URL" -auth="$AUTH" -tenant-label="$TENANT_LABEL" \
			-tenants="$TENANTS" -series-per-tenant="$per_tenant" -series-per-request="$SERIES_PER_REQUEST" \
			-concurrency="$CONCURRENCY" -rounds="$ROUNDS" -warmup-rounds="$WARMUP_ROUNDS" -half-rounds="$HALF_ROUNDS" -log-slow="${LOG_SLOW:-0}" -pid="$PID" \
			| tee "$TMP/$name-$size.out" >&2
		result=$(grep '^RESULT ' "$TMP/$name-$size.out")
		if [[ $name == victoriametrics ]]; then
			# VictoriaMetrics buffers new samples for up to a second or two
			# before they are searchable; flush first, untimed.
			curl -sf -o /dev/null "http://$HOST:$((BASE_PORT + 8))/internal/force_flush"
			sleep 2
		fi
		cpu_before=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$PID/stat")
		fed_s=$(taskset -c "$LOADGEN_CPU" curl -sS --compressed -H 'Accept-Encoding: gzip' -o "$TMP/federate.txt" \
			-w '%{time_total}' -G "$FEDERATE_URL" --data-urlencode 'match[]={__name__=~".+"}')
		cpu_after=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$PID/stat")
		held=$(grep -vc '^#' "$TMP/federate.txt" || true)
		rss_all=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$PID/status")
		rm -f "$TMP/federate.txt"
		log "$name: federate ${fed_s}s, $held series"
		# p99 at half rate: "-" when the phase did not run.
		p99_half=$(field half_p99_ms "$result")
		p99_half=${p99_half:+$(printf '%.1f' "$p99_half")}
		half_errors=$(field half_errors "$result")
		if [[ ${half_errors:-0} != 0 ]]; then
			NOTES+=("$size $name: $half_errors errors at half rate (its loadgen output is above)")
		fi
		ROWS+=("$(printf '%-8s %-16s %14.0f %14.0f %9.1f %11s %10.0f %12.0f %9.2f %9.2f %9d %6s' \
			"$size" "$name" "$(field samples_per_s "$result")" "$(field samples_per_cpu_s "$result")" \
			"$(field p99_ms "$result")" "${p99_half:--}" "$(field peak_rss_mb "$result")" "$rss_all" "$fed_s" \
			"$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN {print (b - a) / 100}')" "$held" "$(field errors "$result")")")
		stop "$PID"
	done
done

printf '\n%-8s %-16s %14s %14s %9s %11s %10s %12s %9s %9s %9s %6s\n' series receiver samples/s samples/cpu-s p99_ms p99_half_ms rss_mb rss+fed_mb fed_s fed_cpu_s fed_lines errors
printf '%s\n' "${ROWS[@]}"
if ((${#NOTES[@]})); then printf '%s\n' "${NOTES[@]}"; fi
