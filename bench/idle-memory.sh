#!/usr/bin/env bash
# RSS of retunnel per idle relayed connection: N clients connect through one plain section to a
# TLS-only redis-server, each does one PING/PONG (so the relay and upstream TLS are up), and
# they stay open; retunnel's VmRSS before and after, divided by N.
# Usage: bench/idle-memory.sh [PATH/TO/retunnel] [N]   (defaults: target/release/retunnel, 2000)
set -euo pipefail
BIN=$(realpath "${1:-target/release/retunnel}")
N=${2:-2000}
source "$(dirname "$0")/lib.sh"
make_certs
start_tls_redis --maxclients $((N + 100))
cd "$WORK"
PORT=$(free_port)
cat > tunnel.conf <<CONF
[idle]
accept = 127.0.0.1:$PORT
connect = localhost:$RP
CAfile = $WORK/ca.pem
CONF
start_retunnel tunnel.conf "$PORT"
ulimit -n $((N * 2 + 100))
python3 - "$PORT" "$N" "$RT" <<'PY'
import socket, sys
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def ping(s):
    s.sendall(b"PING\r\n")
    got = b""
    while not got.endswith(b"\r\n"):
        got += s.recv(64)
    assert got == b"+PONG\r\n", got
# Warm the allocator and runtime with one round first, as a long-running tunnel would be.
warm = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
for s in warm: ping(s)
for s in warm: s.close()
before = rss()
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    ping(s)
    conns.append(s)
after = rss()
print(f"retunnel VmRSS {before} KiB -> {after} KiB with {n} idle connections: {(after - before) / n:.1f} KiB per connection")
PY
