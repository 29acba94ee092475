#!/usr/bin/env python3
"""Builds the fuzz seed corpora in fuzz/corpus/TARGET from what the project already knows:
tunnel.conf.example and the test fixtures, the string literals of the unit and integration
tests (configs, RESP frames, addresses), and the small hand-written seeds in fuzz/seeds/TARGET.
Run from the repository root (bench/fuzz.sh does it before every run); existing corpus files,
which hold what earlier runs found, are kept."""
import hashlib
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_SEED = 64 * 1024

# A Rust string literal: raw (r"…", r#"…"#) or ordinary with escapes.
LITERAL = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)
ESCAPE = re.compile(r'\\(n|r|t|0|\\|"|\'|x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|\n\s*)')


def unescape(body):
    def one(m):
        e = m.group(1)
        simple = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
        if e in simple:
            return simple[e]
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0] == "u":
            return chr(int(e[2:-1], 16))
        return ""  # a line continuation
    return ESCAPE.sub(one, body)


def literals(paths):
    for path in paths:
        for m in LITERAL.finditer(path.read_text(errors="replace")):
            text = m.group(2) if m.group(2) is not None else unescape(m.group(3))
            if text:
                yield text.encode("utf-8", "replace")


def files(*globs):
    return sorted(p for g in globs for p in ROOT.glob(g))


def save(target, seeds):
    out = ROOT / "fuzz" / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    new = 0
    for seed in seeds:
        if not seed or len(seed) > MAX_SEED:
            continue
        f = out / hashlib.sha1(seed).hexdigest()
        if not f.exists():
            f.write_bytes(seed)
            new += 1
    print(f"{target}: {new} new seeds, {len(list(out.iterdir()))} in fuzz/corpus/{target}")


def committed(target):
    d = ROOT / "fuzz" / "seeds" / target
    return [p.read_bytes() for p in sorted(d.iterdir())] if d.is_dir() else []


def config_seeds():
    example = (ROOT / "tunnel.conf.example").read_bytes()
    yield example
    # Each section of the example alone, after the global part.
    parts = re.split(rb"(?m)^(?=\[)", example)
    for section in parts[1:]:
        yield parts[0] + section
    for fixture in files("tests/fixtures/**/*.conf"):
        yield fixture.read_bytes()
    for lit in literals(files("src/config/*.rs", "src/redis/mod.rs", "tests/*.rs", "tests/support/*.rs")):
        if b"=" in lit and (b"\n" in lit or lit.startswith(b"[")):
            yield lit


def frames():
    rs = files("src/redis/*.rs", "tests/*.rs", "tests/support/*.rs")
    return [lit for lit in literals(rs) if b"\r\n" in lit]


def resp_seeds():
    for lit in frames():
        for ctl in (0x00, 0x01, 0x0E, 0x0F):  # server or client side, read whole or in pieces
            yield bytes([ctl]) + lit


def rewrite_seeds():
    for lit in frames():
        yield struct.pack("<I", 0x5EED) + lit


ADDRESS = re.compile(rb"^[\w.\-\[\]:*%]{1,120}$")


def values_seeds():
    srcs = files("src/config/*.rs", "src/upstream.rs", "src/cli.rs", "tests/*.rs")
    for lit in literals(srcs):
        if ADDRESS.match(lit) and (b":" in lit or lit.isdigit()):
            yield lit


for name, make in [("config", config_seeds), ("resp", resp_seeds), ("rewrite", rewrite_seeds), ("values", values_seeds)]:
    save(name, list(make()) + committed(name))
