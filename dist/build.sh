#!/usr/bin/env bash
# Builds the release artifacts of retunnel for one Linux target:
#   target/dist/retunnel-VERSION-ARCH-linux.tar.gz   binary, man pages, completions, example
#                                                    config, systemd unit, LICENSE, README
#   target/dist/retunnel_VERSION-1_ARCH.deb          (cargo-deb)
#   target/dist/retunnel-VERSION-1.ARCH.rpm          (cargo-generate-rpm)
#
#   dist/build.sh [TARGET]      TARGET defaults to x86_64-unknown-linux-gnu.2.17
#
# The binary is built with cargo-zigbuild: zig links it against glibc 2.17's symbol versions, so
# it runs on every x86_64 distribution since 2014 (Amazon Linux 2 and 2023, RHEL 8/9, Debian 11/12,
# Ubuntu 20.04-24.04); TLS (rustls + aws-lc-rs) is compiled in, so no system TLS library is
# needed. TARGET is a parameter so that aarch64-unknown-linux-gnu.2.17 (Graviton) can be built
# where a Rust standard library for it is installed (`rustup target add aarch64-unknown-linux-gnu`);
# these machines have none, so only x86_64 is built and checked here.
#
# Missing tools are installed: cargo-zigbuild, cargo-deb, cargo-generate-rpm with `cargo install`
# (into ~/.cargo/bin), zig from PyPI's `ziglang` package (into a virtualenv under target/). Their
# caches (~/.cache/cargo-zigbuild, ~/.cache/zig) stay outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:-x86_64-unknown-linux-gnu.2.17}"
TRIPLE="${TARGET%.2.*}"                   # cargo-zigbuild's glibc suffix is not part of the triple
ARCH="${TRIPLE%%-*}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
BUILT="${CARGO_TARGET_DIR:-target}/$TRIPLE/release/retunnel"
OUT=target/dist
STAGE="$OUT/stage"                         # fixed path: Cargo.toml's package metadata names it
NAME="retunnel-$VERSION-$ARCH-linux"

# Tool versions known to work together here (zig 0.16's `ar` could not create archives).
ZIGBUILD_VERSION=0.24.1
DEB_VERSION=3.8.0
RPM_VERSION=0.21.1
ZIG_VERSION=0.17.1

need_cargo_tool() { # SUBCOMMAND CRATE VERSION
  if ! command -v "cargo-$1" >/dev/null 2>&1; then
    echo "build.sh: installing $2 $3 (cargo install)"
    cargo install --locked "$2@$3"
  fi
}

need_zig() {
  if command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; then
    return
  fi
  local venv="$PWD/target/dist-tools/venv"
  if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
    echo "build.sh: installing zig $ZIG_VERSION (PyPI: ziglang) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "ziglang==$ZIG_VERSION"
  fi
  export PATH="$venv/bin:$PATH" # cargo-zigbuild runs `python3 -m ziglang` when there is no `zig`
}

build_binary() {
  rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" || {
    echo "build.sh: no Rust standard library for $TRIPLE here; install it with" >&2
    echo "  rustup target add $TRIPLE" >&2
    exit 1
  }
  cargo zigbuild --release --locked --target "$TARGET"
}

# The man pages and completions come from the binary itself (src/cli.rs); a binary for another
# architecture cannot run here, so a native build writes them instead (same clap definition).
generator() {
  if [ "$ARCH" = "$(uname -m)" ]; then echo "$BUILT"; return; fi
  cargo build --release --locked >&2
  echo "${CARGO_TARGET_DIR:-target}/release/retunnel"
}

stage() {
  local gen
  gen="$(generator)"
  rm -rf "$STAGE" && mkdir -p "$STAGE"/{man,completions,contrib,systemd}
  install -m 0755 "$BUILT" "$STAGE/retunnel"
  "$gen" man >"$STAGE/man/retunnel.1"
  "$gen" man check >"$STAGE/man/retunnel-check.1"
  "$gen" completions bash >"$STAGE/completions/retunnel.bash"
  "$gen" completions zsh >"$STAGE/completions/_retunnel"
  "$gen" completions fish >"$STAGE/completions/retunnel.fish"
  for page in "$STAGE"/man/*.1; do gzip -9 -n -c "$page" >"$page.gz"; done
  install -m 0644 tunnel.conf.example LICENSE README.md "$STAGE/"
  install -m 0644 contrib/retunnel.service "$STAGE/contrib/"
  # The packages install the binary in /usr/bin; the example unit expects /usr/local/bin (a
  # hand install from the tarball).
  sed 's#/usr/local/bin/retunnel#/usr/bin/retunnel#g' contrib/retunnel.service \
    >"$STAGE/systemd/retunnel.service"
  grep -q '^ExecStart=/usr/bin/retunnel ' "$STAGE/systemd/retunnel.service" || {
    echo "build.sh: contrib/retunnel.service has no ExecStart=/usr/local/bin/retunnel to point at /usr/bin" >&2
    exit 1
  }
}

tarball() {
  local dir="$OUT/$NAME"
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$STAGE"/retunnel "$STAGE"/man "$STAGE"/completions "$STAGE"/contrib \
    "$STAGE"/tunnel.conf.example "$STAGE"/LICENSE "$STAGE"/README.md "$dir/"
  rm -f "$dir"/man/*.gz
  tar -C "$OUT" --owner=0 --group=0 --sort=name -czf "$OUT/$NAME.tar.gz" "$NAME"
  rm -rf "$dir"
}

packages() {
  cargo deb --no-build --no-strip --target "$TRIPLE" --output "$OUT/" >/dev/null
  # xz, not the default zstd: Amazon Linux 2's rpm 4.11 cannot read zstd payloads.
  cargo generate-rpm --target "$TRIPLE" --payload-compress xz --output "$OUT/" >/dev/null
}

need_cargo_tool zigbuild cargo-zigbuild "$ZIGBUILD_VERSION"
need_cargo_tool deb cargo-deb "$DEB_VERSION"
need_cargo_tool generate-rpm cargo-generate-rpm "$RPM_VERSION"
need_zig
build_binary
stage
tarball
packages
ls -l "$OUT"/*.tar.gz "$OUT"/*.deb "$OUT"/*.rpm
