#!/usr/bin/env bash
# Checks the artifacts of dist/build.sh (run it first) on this machine, as root:
#   1. the binary needs nothing but glibc's own libraries, and no glibc symbol newer than 2.17;
#   2. started in an empty chroot holding only what ldd lists, the binary tunnels with
#      certificate verification to a local TLS redis-server, finding the CA bundle at Amazon
#      Linux's / RHEL's path, then at Debian's / Ubuntu's; a wrong CA there fails the handshake;
#      SSL_CERT_FILE wins over the system bundle;
#   3. the .deb installs with dpkg -i, runs from /usr/bin, its unit passes systemd-analyze verify
#      (where available), no service is enabled, and dpkg -r / dpkg -P remove it cleanly;
#   4. the .rpm's information, files, config files and dependencies (rpm -qpi/-qpl/-qpc/-qpR),
#      and it unpacks into an empty rpm root;
#   5. sizes, and the start-up time to the "listening" log line.
#
#   dist/check.sh [TARGET]      TARGET as given to dist/build.sh (x86_64-unknown-linux-gnu.2.17)
#
# Needs: binutils (readelf, objdump), redis-server and redis-tools (Debian's, built with TLS),
# openssl, rpm, python3; missing Debian packages are installed with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:-x86_64-unknown-linux-gnu.2.17}"
TRIPLE="${TARGET%.2.*}"
ARCH="${TRIPLE%%-*}"
GLIBC_MAX="${GLIBC_MAX:-2.17}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
OUT="$PWD/target/dist"
TARBALL="$OUT/retunnel-$VERSION-$ARCH-linux.tar.gz"
DEB="$(ls "$OUT"/retunnel_"$VERSION"*_*.deb 2>/dev/null | head -n1 || true)"
RPM="$(ls "$OUT"/retunnel-"$VERSION"*."$ARCH".rpm 2>/dev/null | head -n1 || true)"
[ "$(id -u)" = 0 ] || { echo "check.sh: run as root (chroot, dpkg -i)" >&2; exit 1; }
[ "$ARCH" = "$(uname -m)" ] || { echo "check.sh: a $ARCH binary cannot run on this $(uname -m) machine" >&2; exit 1; }
for f in "$TARBALL" "$DEB" "$RPM"; do
  [ -n "$f" ] && [ -f "$f" ] || { echo "check.sh: missing artifacts in $OUT; run dist/build.sh $TARGET first" >&2; exit 1; }
done

PKGS="binutils redis-server redis-tools openssl rpm python3"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

WORK="$(mktemp -d /tmp/retunnel-check.XXXXXX)"
PIDS=()
DEB_INSTALLED=""
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -z "$DEB_INSTALLED" ] || dpkg -P retunnel >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=0
section() { printf '\n== %s\n' "$*"; }
ok() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# Waits (polling, at most $2 seconds) until the command $1 succeeds.
wait_until() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.01
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. the binary -----------------------------------------------------------------------------
tar -C "$WORK" -xzf "$TARBALL"
PKGDIR="$WORK/retunnel-$VERSION-$ARCH-linux"
BIN="$PKGDIR/retunnel"

section "tarball $(basename "$TARBALL")"
tar -tzf "$TARBALL" | sort
for f in retunnel man/retunnel.1 man/retunnel-check.1 completions/retunnel.bash completions/_retunnel \
  completions/retunnel.fish tunnel.conf.example contrib/retunnel.service LICENSE README.md; do
  [ -s "$PKGDIR/$f" ] || fail "the tarball has no $f"
done
ok "the tarball holds the binary, man pages, completions, example config, unit, LICENSE, README"

section "retunnel --version"
"$BIN" --version
"$BIN" --version | grep -qi rustls || fail "--version does not name rustls"
"$BIN" --version | grep -qi aws-lc || fail "--version does not name aws-lc"
ok "--version names the TLS library and provider"

section "dynamic dependencies (readelf -d, ldd)"
readelf -d "$BIN" | grep -E 'NEEDED|RPATH|RUNPATH' || true
ldd "$BIN"
readelf -d "$BIN" | grep -qE 'RPATH|RUNPATH' && fail "the binary has an RPATH/RUNPATH"
ALLOWED='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|libgcc_s\.so\.1)$'
NEEDED="$(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')"
for lib in $NEEDED; do
  [[ "$lib" =~ $ALLOWED ]] || fail "the binary needs $lib, which is not part of glibc"
done
if grep -qx libgcc_s.so.1 <<<"$NEEDED"; then echo "note: libgcc_s.so.1 is needed (unwinding)"; fi
ok "needed: $(echo $NEEDED)"

section "glibc symbol versions (objdump -T)"
objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sort | uniq -c | sort -k2 -V
NEWEST="$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)"
[ "$(printf '%s\n%s\n' "$NEWEST" "$GLIBC_MAX" | sort -V | tail -n1)" = "$GLIBC_MAX" ] ||
  fail "the newest glibc symbol version is $NEWEST, above $GLIBC_MAX: $(objdump -T "$BIN" | grep "GLIBC_$NEWEST" | head -n3)"
ok "newest glibc symbol version: GLIBC_$NEWEST (limit $GLIBC_MAX)"

# --- 2. the chroot run -------------------------------------------------------------------------
section "chroot runs against a local TLS redis-server"
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout ca.key -out ca.pem -subj "/CN=retunnel dist check CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout other.key -out other-ca.pem -subj "/CN=some other CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem 2>/dev/null

RPORT="$(free_port)"
redis-server --port 0 --tls-port "$RPORT" --bind 127.0.0.1 --tls-cert-file server.pem \
  --tls-key-file server.key --tls-ca-cert-file ca.pem --tls-auth-clients no \
  --save '' --appendonly no --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_until "redis-cli --tls --cacert ca.pem -h 127.0.0.1 -p $RPORT ping 2>/dev/null | grep -q PONG" 20 ||
  fail "redis-server did not start: $(cat "$WORK/redis.log")"
redis-cli --tls --cacert ca.pem -h 127.0.0.1 -p "$RPORT" set dist-check "through the tunnel" >/dev/null
echo "TLS redis-server on 127.0.0.1:$RPORT (certificate for localhost / 127.0.0.1 from a test CA)"

# An empty root with the binary, exactly the libraries ldd lists, and a config file.
make_root() { # DIR
  local root="$1" lib
  mkdir -p "$root"
  for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp "$BIN" "$root/retunnel"
}

STARTUP_MS=()
CHROOT="$(command -v chroot)"
# Runs retunnel in ROOT with ENV, waits for "listening", reads a key through it into REPLY.
tunnel_in_root() { # NAME ROOT [ENV...]
  local name="$1" root="$2" lport log t0 t1 pid
  shift 2
  lport="$(free_port)"
  log="$WORK/$name.log"
  cat >"$root/tunnel.conf" <<CONF
[redis]
client = yes
accept = 127.0.0.1:$lport
connect = 127.0.0.1:$RPORT
checkHost = localhost
CONF
  t0="$(date +%s%N)"
  env -i "$@" "$CHROOT" "$root" /retunnel -c /tunnel.conf 2>"$log" &
  pid=$!
  PIDS+=("$pid")
  wait_until "grep -q listening '$log' || ! kill -0 $pid 2>/dev/null" 20 || fail "$name: no 'listening' line: $(cat "$log")"
  t1="$(date +%s%N)"
  kill -0 "$pid" 2>/dev/null || fail "$name: retunnel exited: $(cat "$log")"
  STARTUP_MS+=($(((t1 - t0) / 1000000)))
  REPLY="$(redis-cli -h 127.0.0.1 -p "$lport" get dist-check 2>&1 || true)"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

ROOTS="$WORK/roots"
# A fresh root NAME whose system CA bundle, at BUNDLE, holds the test CA: the tunnel must work.
verified_with_bundle() { # NAME BUNDLE DISTRIBUTIONS
  local root="$ROOTS/$1"
  make_root "$root"
  mkdir -p "$root$(dirname "$2")"
  cp ca.pem "$root$2"
  tunnel_in_root "$1" "$root"
  echo "CA bundle at $2: redis-cli get dist-check -> $REPLY"
  [ "$REPLY" = "through the tunnel" ] || fail "$1: $(cat "$WORK/$1.log")"
  grep listening "$WORK/$1.log"
  ok "verified tunnel in a chroot with the CA bundle at $3's path"
}

verified_with_bundle amazon /etc/pki/tls/certs/ca-bundle.crt "Amazon Linux's / RHEL"
echo "chroot contents:"
(cd "$ROOTS/amazon" && find . -type f | sort | sed 's/^/  /')
verified_with_bundle debian /etc/ssl/certs/ca-certificates.crt "Debian's / Ubuntu"

cp other-ca.pem "$ROOTS/debian/etc/ssl/certs/ca-certificates.crt"
tunnel_in_root wrong-ca "$ROOTS/debian"
reply="$REPLY"
echo "a bundle without the server's CA: redis-cli get dist-check -> ${reply:-<nothing>}"
[ "$reply" != "through the tunnel" ] || fail "the tunnel worked although the trust store lacks the server's CA"
grep -i certificate "$WORK/wrong-ca.log" | tail -n1
grep -qi certificate "$WORK/wrong-ca.log" || fail "wrong-ca: no certificate error logged: $(cat "$WORK/wrong-ca.log")"
ok "a trust store without the server's CA refuses the server"

mkdir -p "$ROOTS/debian/custom"
cp ca.pem "$ROOTS/debian/custom/ca.pem"
tunnel_in_root env-file "$ROOTS/debian" SSL_CERT_FILE=/custom/ca.pem
reply="$REPLY"
echo "SSL_CERT_FILE=/custom/ca.pem beside the wrong system bundle: redis-cli get dist-check -> $reply"
[ "$reply" = "through the tunnel" ] || fail "SSL_CERT_FILE: $(cat "$WORK/env-file.log")"
ok "SSL_CERT_FILE wins over the system bundle"

# --- 3. the .deb -------------------------------------------------------------------------------
section "dpkg -i $(basename "$DEB")"
dpkg -s retunnel >/dev/null 2>&1 && fail "a retunnel package is installed already; remove it first (dpkg -P retunnel)"
dpkg-deb --info "$DEB" | sed -n '/Package:/,$p'
DEB_INSTALLED=yes
dpkg -i "$DEB"
dpkg -L retunnel | sort
FILES="$(dpkg -L retunnel)"
command -v retunnel
[ "$(command -v retunnel)" = /usr/bin/retunnel ] || fail "retunnel is not run from /usr/bin"
/usr/bin/retunnel --version
echo "conffiles: $(dpkg-query -W -f='${Conffiles}' retunnel | awk '{print $1}' | xargs)"
dpkg-query -W -f='${Conffiles}' retunnel | grep -q ' /etc/retunnel/retunnel.conf ' ||
  fail "/etc/retunnel/retunnel.conf is not a conffile"
UNIT=/lib/systemd/system/retunnel.service
[ -f "$UNIT" ] || fail "no $UNIT"
grep '^ExecStart=' "$UNIT"
/usr/bin/retunnel check --offline -c /etc/retunnel/retunnel.conf
for f in /usr/share/man/man1/retunnel.1.gz /usr/share/bash-completion/completions/retunnel \
  /usr/share/zsh/vendor-completions/_retunnel /usr/share/fish/vendor_completions.d/retunnel.fish; do
  [ -s "$f" ] || fail "the package did not install $f"
done
ls /etc/systemd/system/*.wants/ 2>/dev/null | grep -q retunnel && fail "the package enabled the service"
if [ -d /run/systemd/system ]; then
  state="$(systemctl is-enabled retunnel 2>&1 || true)"
  echo "systemctl is-enabled retunnel: $state"
  [ "$state" = disabled ] || fail "the service is $state after install"
fi
ok "installed; /usr/bin/retunnel runs; the example config is a conffile and validates; nothing enabled"

section "systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$UNIT" && echo "(no complaints)"
  ok "systemd-analyze verify $UNIT"
else
  echo "systemd-analyze is not installed: skipped"
fi

section "dpkg -r retunnel, dpkg -P retunnel"
dpkg -r retunnel
for f in $FILES; do
  [ "$f" = /etc/retunnel/retunnel.conf ] && continue
  [ -f "$f" ] && fail "dpkg -r left $f behind"
done
[ -f /etc/retunnel/retunnel.conf ] || fail "dpkg -r removed the (possibly edited) config file"
echo "after dpkg -r: every file is gone but the conffile /etc/retunnel/retunnel.conf (Debian keeps it until purge)"
dpkg -P retunnel
DEB_INSTALLED=""
[ ! -e /etc/retunnel ] || fail "dpkg -P left /etc/retunnel behind"
[ ! -e /usr/bin/retunnel ] || fail "dpkg -P left /usr/bin/retunnel behind"
dpkg -s retunnel >/dev/null 2>&1 && fail "dpkg still lists retunnel"
echo "after dpkg -P: nothing left"
ok "dpkg -r and dpkg -P remove the package cleanly"

# --- 4. the .rpm -------------------------------------------------------------------------------
section "rpm -qpi $(basename "$RPM")"
rpm -qpi "$RPM" 2>/dev/null
section "rpm -qpl"
rpm -qpl "$RPM" 2>/dev/null
section "rpm -qpc (config files)"
rpm -qpc "$RPM" 2>/dev/null
section "rpm -qpR (dependencies)"
rpm -qpR "$RPM" 2>/dev/null
section "rpm -qp --scripts"
rpm -qp --scripts "$RPM" 2>/dev/null || true
LIST="$(rpm -qpl "$RPM" 2>/dev/null)"
for f in /usr/bin/retunnel /usr/lib/systemd/system/retunnel.service /etc/retunnel/retunnel.conf \
  /usr/share/man/man1/retunnel.1.gz /usr/share/bash-completion/completions/retunnel; do
  grep -qx "$f" <<<"$LIST" || fail "the rpm does not hold $f"
done
rpm -qpc "$RPM" 2>/dev/null | grep -qx /etc/retunnel/retunnel.conf || fail "the rpm's example config is not %config"
rpm -qpR "$RPM" 2>/dev/null | grep -Eqi 'libssl|libcrypto' && fail "the rpm requires a system TLS library"
rpm -qp --scripts "$RPM" 2>/dev/null | grep -q 'systemctl enable' && fail "the rpm enables the service"
RPMROOT="$WORK/rpmroot"
mkdir -p "$RPMROOT"
rpm --root "$RPMROOT" --initdb
rpm --root "$RPMROOT" -i --nodeps --noscripts "$RPM" 2>/dev/null
cmp "$RPMROOT/usr/bin/retunnel" "$BIN" || fail "the rpm's binary differs from the tarball's"
ok "the rpm holds the files, marks the config %config(noreplace), needs no TLS library, unpacks"

# --- 5. figures --------------------------------------------------------------------------------
section "sizes"
printf '%-52s %10s bytes (%s)\n' "binary" "$(stat -c %s "$BIN")" "$(du -h "$BIN" | cut -f1)"
for f in "$TARBALL" "$DEB" "$RPM"; do
  printf '%-52s %10s bytes (%s)\n' "$(basename "$f")" "$(stat -c %s "$f")" "$(du -h "$f" | cut -f1)"
done
section "start-up time to the \"listening\" line (chroot runs above, polled every 10 ms)"
echo "${STARTUP_MS[*]} ms"

printf '\ndist check: %s passed, 0 failed\n' "$PASSED"
