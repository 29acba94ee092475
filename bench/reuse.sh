#!/usr/bin/env bash
# Redis connection reuse on and off, for clients that open a new connection per request
# (PHP-FPM style): one TLS-only redis-server and one retunnel with three sections in front of
# it: `protocol = redis` without prewarm, a plain section with `prewarm = N` (warm connections,
# no reuse: reuse needs `protocol = redis`), and `protocol = redis` with `prewarm = N` (reuse
# on). redis-benchmark -k 0 opens a new connection for every request.
#
# Usage: bench/reuse.sh [PATH/TO/retunnel] [REQUESTS] [CLIENTS] [PREWARM]
#   defaults: target/release/retunnel, 20000 requests, 20 clients, prewarm = 16.
# Needs: redis-server and redis-benchmark (Debian's redis-tools), openssl, python3.
# Prints requests per second per section and the upstream connections the server accepted
# (`total_connections_received`) for each run; compare rows, not absolute figures: the
# machine, redis-server and redis-benchmark share its cores.
set -euo pipefail

BIN=$(realpath "${1:-target/release/retunnel}")
REQUESTS=${2:-20000}
CLIENTS=${3:-20}
PREWARM=${4:-16}
source "$(dirname "$0")/lib.sh"
make_certs
start_tls_redis
cd "$WORK"

COLD=$(free_port)
WARM=$(free_port)
REUSE=$(free_port)
cat > tunnel.conf <<CONF
[cold]
accept = 127.0.0.1:$COLD
connect = localhost:$RP
CAfile = $WORK/ca.pem
protocol = redis

[prewarm-only]
accept = 127.0.0.1:$WARM
connect = localhost:$RP
CAfile = $WORK/ca.pem
prewarm = $PREWARM

[prewarm-reuse]
accept = 127.0.0.1:$REUSE
connect = localhost:$RP
CAfile = $WORK/ca.pem
protocol = redis
prewarm = $PREWARM
CONF
"$BIN" -c tunnel.conf 2>"$WORK/retunnel.log" &
PIDS+=($!)
for p in "$COLD" "$WARM" "$REUSE"; do wait_port "$p"; done

accepted() {
  redis-cli -p "$RP" --tls --cacert "$WORK/ca.pem" info stats | tr -d '\r' |
    sed -n 's/^total_connections_received://p'
}
run() {
  local name=$1 port=$2 before after rps
  before=$(accepted)
  rps=$(redis-benchmark -p "$port" -k 0 -c "$CLIENTS" -n "$REQUESTS" -t get -q 2>/dev/null | tr '\r' '\n' |
    sed -n 's/.*GET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  after=$(accepted)
  printf '%-34s %10s req/s  %7d upstream connections\n' "$name" "$rps" $((after - before - 1))
}
echo "redis-benchmark -k 0 -c $CLIENTS -n $REQUESTS -t get (a new connection per request)"
run "protocol = redis, no prewarm" "$COLD"
run "plain, prewarm = $PREWARM (no reuse)" "$WARM"
run "protocol = redis, prewarm = $PREWARM (reuse)" "$REUSE"
