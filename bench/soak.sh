#!/usr/bin/env bash
# Soak: mixed load through a release retunnel in front of a TLS-only redis-server for MINUTES
# (default 10): pipelined clients, connection churn, idle connections and a reload every
# 10 s, with retunnel's RSS, open descriptors and CPU sampled every second into a CSV.
# bench/soak.py drives the load and prints the summary: RSS at minute 1 and at the end
# (growth %), descriptors before and after the load, failed requests, and a verdict.
#
# Usage: bench/soak.sh [MINUTES] [PATH/TO/retunnel]   (default: 10, target/release/retunnel,
#        built with `cargo build --release --locked` if missing)
# Needs: redis-server, redis-benchmark (Debian's, built with TLS), openssl, python3.
# The CSV and logs are kept in bench/soak-out/ (columns: elapsed_s,phase,rss_kb,fds,cpu_pct).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-10}
[[ $MINUTES =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "MINUTES must be a number, not '$MINUTES'" >&2; exit 2; }
BIN=${2:-target/release/retunnel}
[ -x "$BIN" ] || [ -n "${2:-}" ] || cargo build --release --locked
BIN=$(realpath "$BIN")
OUT=$(realpath -m bench/soak-out)
mkdir -p "$OUT"

source bench/lib.sh
make_certs
start_tls_redis --maxclients 10000

PLAIN=$(free_port); AWARE=$(free_port)
cat > "$WORK/retunnel.conf" <<CONF
CAfile = $WORK/ca.pem
connect = localhost:$RP
[plain]
accept = 127.0.0.1:$PLAIN
TIMEOUTidle = 3600
[redis]
accept = 127.0.0.1:$AWARE
protocol = redis
CONF
"$BIN" -c "$WORK/retunnel.conf" 2>"$OUT/retunnel.log" &
RT=$!
PIDS+=("$RT")
wait_port "$PLAIN"; wait_port "$AWARE"

echo "soak: $MINUTES min, retunnel $("$BIN" --version 2>/dev/null | head -1) pid $RT, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/soak.py "$RT" "$WORK/retunnel.conf" "$OUT/retunnel.log" "$OUT/soak.csv" "$MINUTES" "$PLAIN" "$AWARE" |
  tee "$OUT/summary.txt"
status=${PIPESTATUS[0]}
kill -0 "$RT" 2>/dev/null || { echo "retunnel died during the soak; see $OUT/retunnel.log" >&2; exit 1; }
echo "CSV, summary and retunnel's log: $OUT/"
exit "$status"
