#!/usr/bin/env python3
"""The soak's load and measurements (bench/soak.sh sets up redis-server and retunnel first).

For MINUTES, through retunnel's two sections (plain and `protocol = redis`):
- pipelined load: redis-benchmark, 20 clients, 16 commands per pipeline, SET/GET/INCR/LPUSH/LPOP;
- connection churn: redis-benchmark reconnecting for every request, and checking clients that
  connect, SET a unique value, GET it back, compare and close (every failure counted);
- idle connections: IDLE clients connected the whole time, each answering a PING at the end;
- a reload (SIGHUP) every 10 s, every other one changing a section (`TIMEOUTidle`).
Every second it samples retunnel's RSS, open descriptors and CPU into a CSV, from 5 s before
the load until the descriptors are back to the baseline after it (at most 30 s).

Usage: soak.py PID CONF LOG CSV MINUTES PLAIN_PORT REDIS_PORT
"""
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

PID, CONF, LOG, CSV = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
MINUTES = float(sys.argv[5])
PORTS = [int(sys.argv[6]), int(sys.argv[7])]
IDLE = 200
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

phase = "baseline"
stop = threading.Event()
lock = threading.Lock()
counts = {"check_ok": 0, "check_failed": 0, "bench_runs": 0, "bench_failed": 0, "reloads": 0, "idle_failed": 0}
failures = []


def count(key, n=1, why=None):
    with lock:
        counts[key] += n
        if why and len(failures) < 20:
            failures.append(why)


# --- measurements -----------------------------------------------------------------------------

def sample():
    with open(f"/proc/{PID}/statm") as f:
        rss_kb = int(f.read().split()[1]) * PAGE_KB
    fds = len(os.listdir(f"/proc/{PID}/fd"))
    with open(f"/proc/{PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return rss_kb, fds, cpu_ticks


def sampler(rows):
    start = time.monotonic()
    _, _, last_ticks = sample()
    last = start
    while True:
        time.sleep(max(0.0, 1 - (time.monotonic() - last)))
        now = time.monotonic()
        rss, fds, ticks = sample()
        cpu = 100 * (ticks - last_ticks) / TICKS / (now - last)
        last, last_ticks = now, ticks
        rows.append((round(now - start, 1), phase, rss, fds, round(cpu, 1)))
        if phase == "done":
            return


# --- load -------------------------------------------------------------------------------------

def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise IOError(f"connection closed mid-reply ({line!r})")
    if line[:1] == b"$" and line[1:3] != b"-1":
        body = f.read(int(line[1:-2]) + 2)
        return body[:-2]
    return line[:-2]


def checker(worker):
    """Connection churn with every reply checked."""
    n = 0
    while not stop.is_set():
        port = PORTS[n % 2]
        key, value = f"soak:{worker}:{n % 1000}", f"{worker}-{n}-{random.getrandbits(64):x}"
        n += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(resp("SET", key, value) + resp("GET", key))
                f = s.makefile("rb")
                got = (read_reply(f), read_reply(f))
                if got != (b"+OK", value.encode()):
                    raise IOError(f"wrong replies {got!r}")
            count("check_ok", 2)
        except (OSError, ValueError) as e:
            count("check_failed", 2, f"checker on port {port}: {e}")


def benchmark(args):
    """redis-benchmark in a loop, alternating sections; a run with any error counts as failed.
    The run going on when the load ends is stopped and not counted."""
    n = 0
    while not stop.is_set():
        port = PORTS[n % 2]
        n += 1
        p = subprocess.Popen(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        reader = threading.Thread(target=lambda: out.extend(p.stdout))
        reader.start()
        while p.poll() is None and not stop.wait(0.2):
            pass
        if p.poll() is None:
            p.terminate()
            p.wait()
            reader.join()
            return
        reader.join()
        count("bench_runs")
        err = [l.strip() for l in out if "rror" in l or "ould not" in l]
        if p.returncode != 0 or err:
            count("bench_failed", 1, f"redis-benchmark {' '.join(args)} on port {port}: "
                                     f"exit {p.returncode} {err[:1]}")


def idle_clients():
    """IDLE connections held through the load; each must still answer at the end."""
    conns = []
    for i in range(IDLE):
        conns.append(socket.create_connection(("127.0.0.1", PORTS[i % 2]), timeout=10))
    stop.wait()
    for s in conns:
        try:
            s.sendall(resp("PING"))
            if read_reply(s.makefile("rb")) != b"+PONG":
                raise IOError("no PONG")
        except (OSError, ValueError) as e:
            count("idle_failed", 1, f"idle client: {e}")
        s.close()


def reloader():
    """A SIGHUP every 10 s; every other one changes a section's TIMEOUTidle (3600 ↔ 3601)."""
    text = open(CONF).read()
    n = 0
    while not stop.wait(10):
        n += 1
        with open(CONF, "w") as f:
            f.write(text.replace("TIMEOUTidle = 3600", "TIMEOUTidle = 3601") if n // 2 % 2 else text)
        os.kill(PID, signal.SIGHUP)
        count("reloads")


# --- the run ----------------------------------------------------------------------------------

def main():
    global phase
    rows = []
    t = threading.Thread(target=sampler, args=(rows,))
    t.start()
    time.sleep(5)
    base_fds = sample()[1]
    phase = "load"
    load_start = len(rows)
    workers = [threading.Thread(target=idle_clients), threading.Thread(target=reloader)]
    workers += [threading.Thread(target=checker, args=(i,)) for i in range(2)]
    workers.append(threading.Thread(target=benchmark, args=(
        ["-c", "20", "-P", "16", "-n", "50000", "-r", "100000", "-d", "64", "-t", "set,get,incr,lpush,lpop"],)))
    workers.append(threading.Thread(target=benchmark, args=(
        ["-c", "10", "-k", "0", "-n", "2000", "-t", "ping"],)))
    for w in workers:
        w.start()
    time.sleep(MINUTES * 60)
    stop.set()
    for w in workers:
        w.join()
    phase = "drain"
    drain_start = time.monotonic()
    while time.monotonic() - drain_start < 30 and sample()[1] > base_fds:
        time.sleep(1)
    time.sleep(1)
    phase = "done"
    t.join()

    with open(CSV, "w") as f:
        f.write("elapsed_s,phase,rss_kb,fds,cpu_pct\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    summary(rows, load_start, base_fds)


def summary(rows, load_start, base_fds):
    load = [r for r in rows if r[1] == "load"]
    minute1 = load[min(len(load) - 1, 59)]
    end = load[-1]
    after = rows[-1]
    growth = 100 * (end[2] - minute1[2]) / minute1[2]
    cpu = sum(r[4] for r in load) / len(load)
    with open(LOG, errors="replace") as f:
        log = f.read()
    reloaded = log.count(" reloaded")
    levels = {lvl: sum(1 for l in log.splitlines() if f" {lvl} " in l[:40]) for lvl in ("WARN", "ERROR")}
    reload_failed = sum(1 for l in log.splitlines() if " reloaded" in l and "failed=0" not in l)
    requests = counts["check_ok"] + counts["check_failed"]
    print(f"soak: {MINUTES:g} min of load, {len(rows)} samples in {os.path.basename(CSV)}")
    print(f"RSS: {rows[load_start - 1][2] / 1024:.1f} MB before load, {minute1[2] / 1024:.1f} MB at minute 1, "
          f"{end[2] / 1024:.1f} MB at the end ({growth:+.1f}%), peak {max(r[2] for r in rows) / 1024:.1f} MB, "
          f"{after[2] / 1024:.1f} MB after")
    print(f"descriptors: {base_fds} before load, peak {max(r[3] for r in rows)}, {after[3]} after "
          f"({'back to baseline' if after[3] <= base_fds else 'NOT back to baseline'})")
    print(f"CPU: {cpu:.0f}% of one core on average under load, peak {max(r[4] for r in load):.0f}%")
    print(f"checked requests: {requests} ({counts['check_failed']} failed); redis-benchmark runs: "
          f"{counts['bench_runs']} ({counts['bench_failed']} with errors); idle clients: {IDLE} "
          f"({counts['idle_failed']} failed)")
    print(f"reloads: {counts['reloads']} sent, {reloaded} logged, {reload_failed} with a failed section")
    print(f"retunnel's log: {len(log.splitlines())} lines, {levels['WARN']} warnings, {levels['ERROR']} errors")
    for why in failures:
        print(f"  failure: {why}")
    failed = counts["check_failed"] + counts["bench_failed"] + counts["idle_failed"] + reload_failed
    ok = failed == 0 and after[3] <= base_fds and growth <= 10
    print(f"verdict: {'PASS' if ok else 'FAIL'} (wanted: 0 failures, descriptors back to baseline, RSS growth <= 10%)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
