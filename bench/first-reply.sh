#!/usr/bin/env bash
# How long a NEW client waits for its first reply, with and without `prewarm`: one TLS-only
# redis-server, one retunnel with two sections in front of it (`prewarm = 0` and
# `prewarm = N`), and a client that opens a fresh connection, sends PING and times the +PONG,
# over and over, alternating between the sections.
#
# Usage: bench/first-reply.sh [PATH/TO/retunnel] [CLIENTS] [PREWARM] [PAUSE_MS]
#   defaults: target/release/retunnel, 300 clients per section, prewarm = 8, 10 ms between
#   clients (per-request clients arrive spaced; with no pause the pool drains and the figure
#   becomes the refill rate).
# Needs: redis-server (Debian's, built with TLS), openssl, python3.
# Prints p50/p90/p99 in milliseconds per section; compare the two, not absolute figures.
set -euo pipefail

BIN=$(realpath "${1:-target/release/retunnel}")
CLIENTS=${2:-300}
PREWARM=${3:-8}
PAUSE_MS=${4:-10}
source "$(dirname "$0")/lib.sh"
make_certs
start_tls_redis
cd "$WORK"

COLD=$(free_port)
WARM=$(free_port)
cat > tunnel.conf <<CONF
[cold]
accept = 127.0.0.1:$COLD
connect = localhost:$RP
CAfile = $WORK/ca.pem

[warm]
accept = 127.0.0.1:$WARM
connect = localhost:$RP
CAfile = $WORK/ca.pem
prewarm = $PREWARM
CONF
start_retunnel tunnel.conf "$COLD" "$WARM"
# Let the warm section fill before timing.
for _ in $(seq 1 200); do
  grep -q "ready=$PREWARM" "$WORK/retunnel.log" 2>/dev/null && break
  sleep 0.05
done

python3 - "$COLD" "$WARM" "$CLIENTS" "$PAUSE_MS" <<'PY'
import socket, sys, time
cold, warm, n, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000
times = {"prewarm = 0": [], "prewarm = N": []}
def first_reply(port):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PING\r\n")
    got = b""
    while not got.endswith(b"\r\n"):
        chunk = s.recv(64)
        if not chunk:
            raise SystemExit(f"port {port} closed before answering")
        got += chunk
    dt = time.perf_counter() - t
    s.close()
    assert got == b"+PONG\r\n", got
    return dt * 1000
for _ in range(n):
    for name, port in (("prewarm = 0", cold), ("prewarm = N", warm)):
        times[name].append(first_reply(port))
        time.sleep(pause)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]
for name, v in times.items():
    print(f"{name}: first reply p50 {pct(v, .5):.2f} ms, p90 {pct(v, .9):.2f} ms, p99 {pct(v, .99):.2f} ms ({len(v)} clients)")
PY
