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
WORK=$(mktemp -d /tmp/retunnel-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
wait_port() {
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2; return 1
}

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj "/CN=bench-ca" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
  -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
  -extfile san.ext 2>/dev/null

RP=$(free_port)
redis-server --port 0 --tls-port "$RP" --bind 127.0.0.1 --tls-cert-file server.pem --tls-key-file server.key \
  --tls-ca-cert-file ca.pem --tls-auth-clients no --save '' --appendonly no --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_port "$RP"

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
"$BIN" -c retunnel.conf 2>retunnel.log &
PIDS+=($!)
wait_port "$PLAIN"; wait_port "$AWARE"
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
