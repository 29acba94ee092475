//! Rewriting the replies that name cluster nodes: `-MOVED`/`-ASK` redirects and the replies to
//! `CLUSTER SLOTS`, `SHARDS`, `NODES` and `REPLICAS`/`SLAVES`, in RESP2 and RESP3. A held frame is
//! parsed into a small tree, every node address is swapped for its local listener, and the tree
//! is written back. Anything of an unexpected shape is left exactly as it was: this module
//! never invents or drops a reply, it only changes addresses.

use super::resp::{Scanner, Side};

/// Deepest reply parsed into a tree (recursively): topology replies nest four levels, and a
/// deeper one is not a topology reply and passes unchanged.
const MAX_DEPTH: usize = 64;

/// Which topology command a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topo {
    /// `CLUSTER SLOTS`.
    Slots,
    /// `CLUSTER SHARDS`.
    Shards,
    /// `CLUSTER NODES`.
    Nodes,
    /// `CLUSTER REPLICAS` / `CLUSTER SLAVES`.
    Replicas,
}

/// Where a reply named a node: what a client can steer decides what may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// In the reply to a topology command: the cluster's own list of its nodes.
    Topology,
    /// In a `-MOVED`/`-ASK` redirect, whose text a client can make up
    /// (`EVAL "return redis.error_reply('MOVED 1 h:p')" 0`).
    Redirect,
}

/// The local listener port for a node `host`, `port` named where [`Seen`] says (opened on
/// first use, if the node may have one).
pub type NodeMap<'a> = dyn Fn(&str, u16, Seen) -> Option<u16> + Sync + 'a;

/// Where node addresses go: the client-facing IP and a way to get a node's local port.
pub struct Addresses<'a> {
    /// The IP the client connected to, substituted for every node host.
    pub local_ip: String,
    /// The host this connection tunnels to, for redirects with an empty host.
    pub base_host: &'a str,
    /// The local listener port of a node.
    pub map: &'a NodeMap<'a>,
}

impl Addresses<'_> {
    fn local(&self, host: &str, port: u16, seen: Seen) -> Option<u16> {
        match host {
            "?" => None, // Redis does not know the endpoint; nothing to point at
            // The node this connection reached: as trusted as a topology reply.
            "" => (self.map)(self.base_host, port, Seen::Topology),
            h => (self.map)(h, port, seen),
        }
    }
}

/// A parsed reply.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A one-line type (`+ - : _ , # (`) and its text.
    Line(u8, Vec<u8>),
    /// A length-prefixed type (`$ ! =`) and its payload.
    Blob(u8, Vec<u8>),
    /// A null of any type (`$-1`, `*-1`).
    Null(u8),
    /// An aggregate (`* ~ > % |`); maps and attributes hold keys and values in turn.
    Agg(u8, Vec<Value>),
}

impl Value {
    fn text(&self) -> Option<&str> {
        match self {
            Value::Line(_, t) | Value::Blob(_, t) => std::str::from_utf8(t).ok(),
            _ => None,
        }
    }

    fn port(&self) -> Option<u16> {
        self.text()?.parse().ok()
    }

    fn set_text(&mut self, s: &str) {
        if let Value::Line(_, t) | Value::Blob(_, t) = self {
            *t = s.as_bytes().to_vec();
        }
    }

    fn items_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Agg(_, items) => Some(items),
            _ => None,
        }
    }
}

fn parse(buf: &[u8], pos: &mut usize, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH + 1 {
        return None;
    }
    let rest = buf.get(*pos..)?;
    let nl = rest.windows(2).position(|w| w == b"\r\n")?;
    let (&kind, body) = rest[..nl].split_first()?;
    if rest[..nl].contains(&b'\n') {
        return None; // the scanner ended a line at this bare LF; parsing on would misread
    }
    *pos += nl + 2;
    if body == b"-1" && !matches!(kind, b':' | b'(' | b',') {
        return Some(Value::Null(kind));
    }
    match kind {
        b'$' | b'!' | b'=' => {
            let n = count(body)?;
            let end = pos.checked_add(n)?;
            let payload = buf.get(*pos..end)?.to_vec();
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            *pos = end + 2;
            Some(Value::Blob(kind, payload))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = count(body)? * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(parse(buf, pos, depth + 1)?);
            }
            Some(Value::Agg(kind, items))
        }
        _ => Some(Value::Line(kind, body.to_vec())),
    }
}

/// A length or count as Redis writes it. Any other spelling (`$08`, which the scanner lets
/// through) would not be written back byte for byte, so its frame is left as it is.
fn count(body: &[u8]) -> Option<usize> {
    let canonical = body.iter().all(u8::is_ascii_digit) && (body.first() != Some(&b'0') || body.len() == 1);
    canonical
        .then(|| std::str::from_utf8(body).ok()?.parse().ok())
        .flatten()
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Line(k, t) => {
            out.push(*k);
            out.extend_from_slice(t);
        }
        Value::Blob(k, t) => {
            out.push(*k);
            out.extend_from_slice(t.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(t);
        }
        Value::Null(k) => {
            out.push(*k);
            out.extend_from_slice(b"-1");
        }
        Value::Agg(k, items) => {
            let n = if matches!(k, b'%' | b'|') {
                items.len() / 2
            } else {
                items.len()
            };
            out.push(*k);
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            for item in items {
                write(item, out);
            }
            return;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Parses one whole frame (attributes before it are not expected here).
fn parse_frame(frame: &[u8]) -> Option<Value> {
    let mut pos = 0;
    let v = parse(frame, &mut pos, 0)?;
    (pos == frame.len()).then_some(v)
}

/// Highest hash slot of a Redis Cluster.
const MAX_SLOT: u16 = 16383;

/// `-MOVED <slot> <host>:<port>` or `-ASK …` with the address swapped; `None` for other frames.
/// Only the exact shape Redis sends counts: a script can return any error text, and every
/// redirect that counts may open a node listener.
pub fn redirect(frame: &[u8], a: &Addresses) -> Option<Vec<u8>> {
    let line = std::str::from_utf8(frame.strip_prefix(b"-")?.strip_suffix(b"\r\n")?).ok()?;
    let mut parts = line.split(' ');
    let (kind, slot, addr) = (parts.next()?, parts.next()?, parts.next()?);
    if !matches!(kind, "MOVED" | "ASK") || parts.next().is_some() || number(slot)? > MAX_SLOT {
        return None;
    }
    let (host, port) = addr.rsplit_once(':')?;
    let port = number(port).filter(|&p| p > 0)?;
    let host_ok = host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    if !host_ok {
        return None;
    }
    let local = a.local(host, port, Seen::Redirect)?;
    Some(format!("-{kind} {slot} {}:{local}\r\n", a.local_ip).into_bytes())
}

/// A decimal number as Redis writes it: digits only, no sign, no spaces.
fn number(text: &str) -> Option<u16> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// The reply to a topology command with every node address swapped; `None` if it has another
/// shape (an error, `+QUEUED` inside MULTI) and must pass unchanged.
pub fn topology(frame: &[u8], topo: Topo, a: &Addresses) -> Option<Vec<u8>> {
    let mut v = parse_frame(frame)?;
    rewrite_value(&mut v, topo, a)?;
    let mut out = Vec::with_capacity(frame.len() + 64);
    write(&v, &mut out);
    Some(out)
}

/// The reply to `EXEC`, whose elements answer the queued commands in order. Only the
/// elements that answer topology commands are parsed; the others (a script's table of
/// millions of values) are found by the scanner and copied as bytes.
pub fn exec(frame: &[u8], queued: &[Option<Topo>], a: &Addresses) -> Option<Vec<u8>> {
    let header = frame.windows(2).position(|w| w == b"\r\n")? + 2;
    if frame[..header] != *format!("*{}\r\n", queued.len()).as_bytes() {
        return None; // an error, a null, or not one element per queued command
    }
    let mut out = Vec::with_capacity(frame.len() + 64);
    out.extend_from_slice(&frame[..header]);
    let mut pos = header;
    for topo in queued {
        let element = &frame[pos..pos + frame_len(&frame[pos..])?];
        match topo.and_then(|t| topology(element, t, a)) {
            Some(new) => out.extend_from_slice(&new),
            None => out.extend_from_slice(element),
        }
        pos += element.len();
    }
    (pos == frame.len()).then_some(out)
}

/// The length of the whole frame `data` starts with.
fn frame_len(data: &[u8]) -> Option<usize> {
    match Scanner::new(Side::Server).feed(data) {
        Ok((used, true)) => Some(used),
        _ => None,
    }
}

fn rewrite_value(v: &mut Value, topo: Topo, a: &Addresses) -> Option<()> {
    match topo {
        Topo::Slots => v.items_mut()?.iter_mut().for_each(|range| slot_range(range, a)),
        Topo::Shards => v.items_mut()?.iter_mut().for_each(|shard| shard_nodes(shard, a)),
        Topo::Nodes => nodes_blob(v, a)?,
        Topo::Replicas => v.items_mut()?.iter_mut().for_each(|line| {
            let _ = nodes_blob(line, a);
        }),
    }
    Some(())
}

/// `[start, end, [host, port, id, {hostname, ip}], …]`.
fn slot_range(range: &mut Value, a: &Addresses) {
    let Some(items) = range.items_mut() else { return };
    for node in items.iter_mut().skip(2) {
        let Some(fields) = node.items_mut() else { continue };
        let (Some(host), Some(port)) = (
            fields.first().and_then(Value::text),
            fields.get(1).and_then(Value::port),
        ) else {
            continue;
        };
        let Some(local) = a.local(host, port, Seen::Topology) else {
            continue;
        };
        fields[0].set_text(&a.local_ip);
        fields[1].set_text(&local.to_string());
        if let Some(meta) = fields.get_mut(3).and_then(Value::items_mut) {
            for kv in meta.chunks_mut(2) {
                if let [k, v] = kv
                    && matches!(k.text(), Some("hostname" | "ip"))
                {
                    v.set_text(&a.local_ip);
                }
            }
        }
    }
}

/// A shard `{slots: …, nodes: [{id, port, tls-port, ip, endpoint, hostname, …}, …]}`.
fn shard_nodes(shard: &mut Value, a: &Addresses) {
    let Some(items) = shard.items_mut() else { return };
    for kv in items.chunks_mut(2) {
        if let [k, nodes] = kv
            && k.text() == Some("nodes")
            && let Some(nodes) = nodes.items_mut()
        {
            nodes
                .iter_mut()
                .filter_map(Value::items_mut)
                .for_each(|n| shard_node(n, a));
        }
    }
}

fn shard_node(fields: &mut Vec<Value>, a: &Addresses) {
    let get = |key: &str| {
        fields
            .chunks(2)
            .find(|kv| kv.len() == 2 && kv[0].text() == Some(key))
            .map(|kv| &kv[1])
    };
    let host = get("endpoint")
        .and_then(Value::text)
        .filter(|h| !h.is_empty() && *h != "?")
        .or_else(|| get("ip").and_then(Value::text));
    let port = get("tls-port").or_else(|| get("port")).and_then(Value::port);
    let (Some(host), Some(port)) = (host, port) else { return };
    let Some(local) = a.local(host, port, Seen::Topology) else {
        return;
    };
    let has_port = get("port").is_some();
    for kv in fields.chunks_mut(2) {
        if let [k, v] = kv {
            match k.text() {
                Some("ip" | "endpoint" | "hostname") => v.set_text(&a.local_ip),
                Some("port" | "tls-port") => v.set_text(&local.to_string()),
                _ => {}
            }
        }
    }
    if !has_port {
        // A TLS-only node has no plain `port`; the local listener is one.
        fields.push(Value::Blob(b'$', b"port".to_vec()));
        fields.push(Value::Line(b':', local.to_string().into_bytes()));
    }
}

/// A `CLUSTER NODES` text: a bulk string, or a RESP3 verbatim string with its `txt:` prefix.
fn nodes_blob(v: &mut Value, a: &Addresses) -> Option<()> {
    let Value::Blob(kind, bytes) = v else { return None };
    let text = std::str::from_utf8(bytes).ok()?;
    let (prefix, body) = if *kind == b'=' {
        text.split_at_checked(4)?
    } else {
        ("", text)
    };
    let lines: Vec<String> = body.split('\n').map(|l| nodes_line(l, a)).collect();
    *bytes = format!("{prefix}{}", lines.join("\n")).into_bytes();
    Some(())
}

/// `<id> <ip>:<port>@<cport>[,<hostname>] <flags> …` with the address swapped.
fn nodes_line(line: &str, a: &Addresses) -> String {
    let mut fields: Vec<&str> = line.split(' ').collect();
    let Some(addr) = fields.get(1) else {
        return line.to_string();
    };
    let Some(new) = nodes_addr(addr, a) else {
        return line.to_string();
    };
    fields[1] = &new;
    fields.join(" ")
}

fn nodes_addr(field: &str, a: &Addresses) -> Option<String> {
    let (addr, bus) = field.split_once('@')?;
    let (ip, port) = addr.rsplit_once(':')?;
    let (cport, hostname) = bus.split_once(',').unwrap_or((bus, ""));
    let host = if hostname.is_empty() { ip } else { hostname };
    if host.is_empty() {
        return None; // a node without an address yet
    }
    let local = a.local(host, port.parse().ok()?, Seen::Topology)?;
    let hostname = if bus.contains(',') && !hostname.is_empty() {
        format!(",{}", a.local_ip)
    } else if bus.contains(',') {
        ",".to_string()
    } else {
        String::new()
    };
    Some(format!("{}:{local}@{cport}{hostname}", a.local_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_addresses(f: impl FnOnce(&Addresses)) {
        let map = |host: &str, port: u16, _: Seen| match (host, port) {
            ("10.0.0.1", 6379) => Some(17001),
            ("node2.example", 6380) => Some(17002),
            ("base.example", 6381) => Some(17003),
            _ => None,
        };
        f(&Addresses {
            local_ip: "127.0.0.1".into(),
            base_host: "base.example",
            map: &map,
        });
    }

    #[test]
    fn redirects_point_at_local_listeners() {
        with_addresses(|a| {
            assert_eq!(
                redirect(b"-MOVED 3999 10.0.0.1:6379\r\n", a).unwrap(),
                b"-MOVED 3999 127.0.0.1:17001\r\n"
            );
            assert_eq!(
                redirect(b"-ASK 1 node2.example:6380\r\n", a).unwrap(),
                b"-ASK 1 127.0.0.1:17002\r\n"
            );
            assert_eq!(
                redirect(b"-MOVED 2 :6381\r\n", a).unwrap(),
                b"-MOVED 2 127.0.0.1:17003\r\n"
            );
            assert_eq!(redirect(b"-ERR MOVED 1 10.0.0.1:6379\r\n", a), None);
            assert_eq!(redirect(b"-MOVED 1 unknown:1\r\n", a), None);
        });
    }

    #[test]
    fn only_the_exact_redirect_shape_opens_anything() {
        let asked = std::sync::Mutex::new(Vec::new());
        let map = |host: &str, port: u16, _: Seen| {
            asked.lock().unwrap().push(format!("{host}:{port}"));
            Some(17001)
        };
        let a = Addresses {
            local_ip: "127.0.0.1".into(),
            base_host: "base.example",
            map: &map,
        };
        for bad in [
            "-MOVED 16384 10.0.0.1:6379\r\n",
            "-MOVED -1 10.0.0.1:6379\r\n",
            "-MOVED +1 10.0.0.1:6379\r\n",
            "-MOVED x 10.0.0.1:6379\r\n",
            "-MOVED 1 10.0.0.1:0\r\n",
            "-MOVED 1 10.0.0.1:65536\r\n",
            "-MOVED 1 10.0.0.1:+22\r\n",
            "-MOVED 1 10.0.0.1:\r\n",
            "-ASK 1 a/b:22\r\n",
            "-ASK 1 10.0.0.1:22 x\r\n",
            "-ASK  1 10.0.0.1:22\r\n",
            "-moved 1 10.0.0.1:22\r\n",
        ] {
            assert_eq!(redirect(bad.as_bytes(), &a), None, "{bad}");
        }
        assert!(asked.lock().unwrap().is_empty(), "{:?}", asked.lock().unwrap());
        for good in [
            "-MOVED 16383 10.0.0.1:6379\r\n",
            "-ASK 0 n-1.example_x:1\r\n",
            "-MOVED 5 ::1:6379\r\n",
        ] {
            assert!(redirect(good.as_bytes(), &a).is_some(), "{good}");
        }
    }

    #[test]
    fn cluster_slots_resp2_and_resp3() {
        with_addresses(|a| {
            let resp2 = b"*1\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$8\r\n10.0.0.1\r\n:6379\r\n$2\r\nid\r\n*2\r\n$8\r\nhostname\r\n$4\r\nnode\r\n";
            let out = topology(resp2, Topo::Slots, a).unwrap();
            assert_eq!(
                out,
                b"*1\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:17001\r\n$2\r\nid\r\n*2\r\n$8\r\nhostname\r\n$9\r\n127.0.0.1\r\n"
            );
            let resp3 = b"*1\r\n*3\r\n:0\r\n:5460\r\n*4\r\n$13\r\nnode2.example\r\n:6380\r\n$2\r\nid\r\n%1\r\n$2\r\nip\r\n$8\r\n10.0.0.2\r\n";
            let out = topology(resp3, Topo::Slots, a).unwrap();
            assert!(out.ends_with(b":17002\r\n$2\r\nid\r\n%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"));
        });
    }

    #[test]
    fn cluster_nodes_and_replicas_text() {
        with_addresses(|a| {
            let text = "abc 10.0.0.1:6379@16379,n1 myself,master - 0 0 1 connected 0-5460\ndef :0@0 noaddr - 0 0 0 disconnected\n";
            let frame = format!("${}\r\n{text}\r\n", text.len());
            let out = topology(frame.as_bytes(), Topo::Nodes, a).unwrap();
            assert_eq!(
                out,
                frame.as_bytes(),
                "n1 is unknown to the map and noaddr has none: left as they were"
            );
            let text = "abc 10.0.0.9:6380@16380,node2.example slave x 0 0 1 connected\n";
            let frame = format!("=${}\r\ntxt:{text}\r\n", text.len() + 4);
            let frame = frame.replacen("=$", "=", 1);
            let out = String::from_utf8(topology(frame.as_bytes(), Topo::Nodes, a).unwrap()).unwrap();
            assert!(out.contains("txt:abc 127.0.0.1:17002@16380,127.0.0.1 slave"), "{out}");
            let line = "abc 10.0.0.1:6379@16379 slave x 0 0 1 connected";
            let frame = format!("*1\r\n${}\r\n{line}\r\n", line.len());
            let out = String::from_utf8(topology(frame.as_bytes(), Topo::Replicas, a).unwrap()).unwrap();
            assert!(out.contains("abc 127.0.0.1:17001@16379 slave"), "{out}");
        });
    }

    #[test]
    fn cluster_shards_adds_a_plain_port() {
        with_addresses(|a| {
            let frame = b"*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*6\r\n$8\r\ntls-port\r\n:6379\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n$8\r\nendpoint\r\n$8\r\n10.0.0.1\r\n";
            let out = String::from_utf8(topology(frame, Topo::Shards, a).unwrap()).unwrap();
            assert!(
                out.contains("*8\r\n$8\r\ntls-port\r\n:17001\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"),
                "{out}"
            );
            assert!(out.ends_with("$4\r\nport\r\n:17001\r\n"), "{out}");
        });
    }

    proptest::proptest! {
        /// A parsed frame writes back byte for byte: rewriting changes addresses, nothing else.
        #[test]
        fn parse_then_write_is_identity(frame in crate::redis::resp::tests::arb_frame()) {
            let v = parse_frame(&frame).unwrap();
            let mut out = Vec::new();
            write(&v, &mut out);
            proptest::prop_assert_eq!(out, frame);
        }
    }

    #[test]
    fn exec_rewrites_topology_elements_and_copies_the_rest() {
        with_addresses(|a| {
            let slots = b"*1\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$8\r\n10.0.0.1\r\n:6379\r\n";
            let want = b"*1\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:17001\r\n";
            // Not written back from a tree: as it came, e.g. `$08` for a length stays as it is.
            let other = b"*3\r\n$08\r\n10.0.0.1\r\n%1\r\n+a\r\n:1\r\n|1\r\n+k\r\n+v\r\n:2\r\n";
            let frame = [&b"*3\r\n"[..], other, slots, b"-ERR x\r\n"].concat();
            let queued = [None, Some(Topo::Slots), Some(Topo::Nodes)];
            let out = exec(&frame, &queued, a).unwrap();
            assert_eq!(out, [&b"*3\r\n"[..], other, want, b"-ERR x\r\n"].concat());
            assert_eq!(exec(&frame, &queued[..2], a), None, "one element per queued command");
            assert_eq!(exec(&frame[..frame.len() - 1], &queued, a), None, "truncated");
            assert_eq!(exec(b"-EXECABORT x\r\n", &queued, a), None);
            assert_eq!(exec(b"*-1\r\n", &queued, a), None);
        });
    }

    #[test]
    fn other_shapes_pass_unchanged() {
        with_addresses(|a| {
            assert_eq!(topology(b"+QUEUED\r\n", Topo::Slots, a), None);
            assert_eq!(topology(b"-ERR no\r\n", Topo::Nodes, a), None);
            assert_eq!(topology(b"*1\r\n", Topo::Slots, a), None, "truncated");
        });
    }

    /// Found by `fuzz/` (target `rewrite`): frames the scanner accepts but Redis never sends
    /// came back changed (a length written `08` as `8`; a payload's end taken unchecked).
    #[test]
    fn frames_spelled_otherwise_pass_unchanged() {
        let slots = b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$08\r\n10.0.0.1\r\n:6379\r\n";
        let fuzzed: &[(&[u8], Topo)] = &[
            (b"$08\r\n10.0.0.1\r\n", Topo::Nodes),
            (b"*3\r\n$08\r\n10.0.0.1\r\n%1\r\n+\r\n+k\r\n+v\r\n:2\r\n", Topo::Slots),
            (slots, Topo::Slots),
            (
                b"*01\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$8\r\n10.0.0.9\r\n:6379\r\n",
                Topo::Slots,
            ),
            // A line ended by a bare LF hid the next header, and a payload was taken without
            // its CRLF: `\0\0` came back as `\r\n`.
            (b"*3\r\n:0\xf3\n$8\r\n$8\r\n.0.1\r\n:\0\0\0\0\x0558\r\n", Topo::Slots),
        ];
        with_addresses(|a| {
            for (frame, topo) in fuzzed {
                let out = topology(frame, *topo, a);
                assert!(
                    out.is_none() || out.as_deref() == Some(*frame),
                    "{:?}",
                    String::from_utf8_lossy(frame)
                );
            }
        });
    }
}
