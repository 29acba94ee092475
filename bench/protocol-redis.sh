#!/usr/bin/env bash
# Plain relay versus `protocol = redis` (the Redis-aware relay of cluster mode), side by side:
# one TLS-only redis-server, one retunnel with two sections in front of it, and
# redis-benchmark driving pipelined GETs through each section in alternating runs.
#
# Usage: bench/protocol-redis.sh [PATH/TO/retunnel] [RUNS]   (default: target/release/retunnel, 5)
# Needs: redis-server, redis-benchmark (Debian's, built with TLS), openssl, python3.
# Prints each run and the medians; compare the ratio, not absolute figures (the machine is noisy).
set -euo pipefail

BIN=$(realpath "${1:-target/release/retunnel}")
RUNS=${2:-5}
source "$(dirname "$0")/lib.sh"
make_certs
start_tls_redis
cd "$WORK"

PLAIN=$(free_port); AWARE=$(free_port)
cat > retunnel.conf <<CONF
debug = 3
CAfile = $WORK/ca.pem
connect = localhost:$RP
[plain]
accept = 127.0.0.1:$PLAIN
[redis]
accept = 127.0.0.1:$AWARE
protocol = redis
CONF
start_retunnel retunnel.conf "$PLAIN" "$AWARE"
redis-cli -p "$PLAIN" set key:__rand_int__ xxxxxxxxxxxxxxxx >/dev/null

bench() { redis-benchmark -h 127.0.0.1 -p "$1" -c 50 -P 16 -n 200000 -t get -q --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f2; }
printf '%-5s %14s %14s\n' run 'plain req/s' 'redis req/s'
P=(); R=()
for i in $(seq 1 "$RUNS"); do
  p=$(bench "$PLAIN"); r=$(bench "$AWARE"); P+=("$p"); R+=("$r")
  printf '%-5s %14s %14s\n' "$i" "$p" "$r"
done
python3 - "${P[*]}" "${R[*]}" <<'PY'
import statistics, sys
p = [float(x) for x in sys.argv[1].split()]
r = [float(x) for x in sys.argv[2].split()]
mp, mr = statistics.median(p), statistics.median(r)
print(f"median {mp:14.0f} {mr:14.0f}   protocol = redis keeps {100 * mr / mp:.1f}% of plain")
PY
