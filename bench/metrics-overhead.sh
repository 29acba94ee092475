#!/usr/bin/env bash
# What serving metrics costs the relay: ../shared/bench/peers.sh run against retunnel alone
# (`--only retunnel`), alternately without and with the metrics endpoint, N rounds, and per
# workload the median over the rounds of (with / without) for requests per second, p50 latency
# and retunnel's CPU seconds. A req/s ratio of 0.98 means 2% slower with metrics on.
#
# `metrics` is a global option, so peers.sh's --retunnel-option (lines added to the section)
# cannot set it: "on" runs get a wrapper as --retunnel that execs retunnel with
# `--metrics 127.0.0.1:PORT` and, while it lives, scrapes /metrics every SCRAPE_EVERY seconds
# (default 1, fifteen times Prometheus' usual rate; 0: never). The counters themselves are
# kept whether or not the endpoint is on, so "off" already counts: the ratio is the cost of the
# endpoint and its scrapes. Rounds alternate which variant goes first, so a drift in the
# machine's load does not favour one.
#
# Usage: bench/metrics-overhead.sh [--rounds N] [--quick] [--retunnel PATH] [-- PEERS-ARGS...]
#   --rounds N   rounds of (off, on) pairs (default 5)
#   --quick      peers.sh --quick (fewer requests: a smoke run, not a measurement)
#   --retunnel   the binary (default target/release/retunnel)
#   PEERS-ARGS   passed on to peers.sh (e.g. --workloads pipelined-16B); --no-idle is always set
# Env: PEERS (default ../shared/bench/peers.sh next to the repository), SCRAPE_EVERY (seconds).
# Needs: what peers.sh needs (redis-server, redis-benchmark, openssl), curl, python3.
# Takes about N x 2 peers.sh runs of retunnel alone (about 1 min each without --quick): run it
# on a quiet machine. Raw tables: target/metrics-overhead/round-K-{off,on}.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=5; QUICK=(); BIN="$ROOT/target/release/retunnel"; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift ;;
    --quick) QUICK=(--quick) ;;
    --retunnel) BIN="$2"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "metrics-overhead.sh: unknown argument: $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
  shift
done
BIN=$(realpath "$BIN")
PEERS=${PEERS:-$ROOT/../shared/bench/peers.sh}
[ -x "$BIN" ] || { echo "metrics-overhead.sh: no retunnel at $BIN; build it (cargo build --release) or pass --retunnel PATH" >&2; exit 2; }
[ -f "$PEERS" ] || { echo "metrics-overhead.sh: no peers.sh at $PEERS; set PEERS=PATH" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "metrics-overhead.sh: --rounds wants a whole number above 0, not '$ROUNDS'" >&2; exit 2; }
command -v curl >/dev/null || { echo "metrics-overhead.sh: needs curl (apt-get install curl)" >&2; exit 2; }

OUT="$ROOT/target/metrics-overhead"
mkdir -p "$OUT"
rm -f "$OUT"/round-*.txt
WRAP=$(mktemp -d /tmp/metrics-overhead.XXXXXX)
trap 'rm -rf "$WRAP"' EXIT
# The "on" binary: a free port for the endpoint, a scraper that stops when retunnel does.
cat > "$WRAP/retunnel" <<WRAPPER
#!/usr/bin/env bash
port=\$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()')
if [ "${SCRAPE_EVERY:-1}" != 0 ]; then
  ( while sleep "${SCRAPE_EVERY:-1}" && kill -0 \$\$ 2>/dev/null; do
      curl -sf "http://127.0.0.1:\$port/metrics" >/dev/null && echo >>"$WRAP/scrapes"
    done ) </dev/null >/dev/null 2>&1 &
fi
exec "$BIN" --metrics "127.0.0.1:\$port" "\$@"
WRAPPER
chmod +x "$WRAP/retunnel"

run() { # ROUND on|off
  local bin="$BIN"; [ "$2" = on ] && bin="$WRAP/retunnel"
  : >"$WRAP/scrapes"
  bash "$PEERS" --only retunnel --no-idle "${QUICK[@]}" --retunnel "$bin" "${EXTRA[@]}" >"$OUT/round-$1-$2.txt"
  grep -q '^retunnel ' "$OUT/round-$1-$2.txt" || { echo "round $1 ($2): peers.sh printed no retunnel row; see $OUT/round-$1-$2.txt" >&2; exit 1; }
  if [ "$2" = on ] && [ "${SCRAPE_EVERY:-1}" != 0 ]; then
    [ -s "$WRAP/scrapes" ] || { echo "round $1 (on): the metrics endpoint never answered a scrape; is $BIN one with --metrics?" >&2; exit 1; }
    echo "round $1 (on): $(wc -l <"$WRAP/scrapes") scrapes of /metrics answered"
  fi
}
echo "metrics on/off: $ROUNDS rounds, $("$BIN" --version | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for k in $(seq 1 "$ROUNDS"); do
  if [ $((k % 2)) = 1 ]; then run "$k" off; run "$k" on; else run "$k" on; run "$k" off; fi
  echo "round $k of $ROUNDS done"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def table(k, variant):
    rows = {}
    for line in open(f"{out}/round-{k}-{variant}.txt"):
        f = line.split()
        if len(f) == 7 and f[0] == "retunnel":
            rows[f[1]] = f[2:]  # req/s, p50, p99, cpu s, rss MiB
    return rows
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
ratios = {}
for k in range(1, rounds + 1):
    off, on = table(k, "off"), table(k, "on")
    for w in off:
        if w not in on:
            continue
        for i, what in ((0, "req/s"), (1, "p50"), (3, "cpu")):
            a, b = num(off[w][i]), num(on[w][i])
            if a and b is not None:
                ratios.setdefault(w, {}).setdefault(what, []).append(b / a)
print(f"\n{'workload':<28} {'req/s on/off':>13} {'p50 on/off':>11} {'cpu on/off':>11} {'rounds':>7}")
for w, r in ratios.items():
    med = lambda what: f"{statistics.median(r[what]):.3f}" if r.get(what) else "-"
    print(f"{w:<28} {med('req/s'):>13} {med('p50'):>11} {med('cpu'):>11} {len(r.get('req/s', [])):>7}")
print("\nmedians of per-round ratios; req/s below 0.98 or p50 above 1.02 is a workload more than 2% slower with metrics on")
PY
