# Shared by the bench scripts (source it): a scratch directory cleaned on exit, free ports, a
# throw-away CA and a TLS-only redis-server on 127.0.0.1.
# Needs: redis-server (Debian's, built with TLS), openssl, python3.

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

# Writes $WORK/ca.pem and a server certificate for localhost/127.0.0.1 signed by it.
make_certs() {
  (
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
      -days 2 -subj "/CN=bench-ca" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
      -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
      -extfile san.ext 2>/dev/null
  )
}

# Starts a TLS-only redis-server on a free port (extra arguments go to redis-server); sets RP
# to its port and REDIS_PID to its pid.
start_tls_redis() {
  RP=$(free_port)
  redis-server --port 0 --tls-port "$RP" --bind 127.0.0.1 --tls-cert-file "$WORK/server.pem" \
    --tls-key-file "$WORK/server.key" --tls-ca-cert-file "$WORK/ca.pem" --tls-auth-clients no \
    --save '' --appendonly no --logfile "$WORK/redis.log" "$@" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$RP"
}

# Starts $BIN -c CONF in the background, its log in ${RT_LOG:-$WORK/retunnel.log}, and waits
# until every PORT given accepts; sets RT to its pid.
start_retunnel() { # CONF PORT...
  local conf="$1"; shift
  "$BIN" -c "$conf" 2>"${RT_LOG:-$WORK/retunnel.log}" &
  RT=$!
  PIDS+=("$RT")
  for p in "$@"; do wait_port "$p"; done
}
