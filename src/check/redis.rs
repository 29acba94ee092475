//! The one Redis exchange `check` makes through the section's TLS connection: `PING`, then
//! `INFO server` and `INFO replication` (or `ROLE` where INFO is refused) for the version and
//! role. It never sends AUTH, so a server with a password answers NOAUTH, which still proves
//! Redis is reachable. Only the few RESP2 reply types these commands produce are read.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::RedisInfo;

/// The longest reply line or bulk string read; INFO sections are a few kilobytes.
const MAX_REPLY: usize = 1 << 20;

/// One RESP2 reply; arrays give only their length, the caller reads the elements.
#[derive(Debug)]
enum Reply {
    Simple(String),
    Error(String),
    Integer,
    Bulk(Option<Vec<u8>>),
    Array(i64),
}

/// PINGs, then asks for version and role when the server allows it.
pub async fn probe<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<RedisInfo, String> {
    let mut s = BufReader::new(stream);
    let started = Instant::now();
    send(&mut s, &[b"PING"]).await?;
    let reply = read(&mut s).await?;
    let ms = super::probe::millis(started.elapsed());
    let mut info = RedisInfo {
        ms,
        reply: String::new(),
        auth_required: false,
        role: None,
        version: None,
        primary: None,
    };
    match reply {
        Reply::Simple(s) => info.reply = s,
        Reply::Error(e) => {
            info.auth_required = e.starts_with("NOAUTH");
            info.reply = e;
            return Ok(info);
        }
        other => return Err(format!("PING got {other:?} instead of PONG; is this port Redis?")),
    }
    server_info(&mut s, &mut info).await?;
    if info.role.is_none() {
        role(&mut s, &mut info).await?;
    }
    Ok(info)
}

async fn server_info<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    info: &mut RedisInfo,
) -> Result<(), String> {
    for section in [&b"server"[..], b"replication"] {
        send(s, &[b"INFO", section]).await?;
        let Reply::Bulk(Some(text)) = read(s).await? else {
            return Ok(()); // refused (ACL, renamed command): try ROLE
        };
        let text = String::from_utf8_lossy(&text);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        if let Some(v) = field("redis_version") {
            info.version = Some(v);
        }
        if let Some(r) = field("role") {
            info.role = Some(role_name(&r));
        }
        if let (Some(h), Some(p)) = (field("master_host"), field("master_port")) {
            let link = field("master_link_status").unwrap_or_else(|| "unknown".into());
            info.primary = Some(format!("{h}:{p} (link {link})"));
        }
    }
    Ok(())
}

async fn role<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, info: &mut RedisInfo) -> Result<(), String> {
    send(s, &[b"ROLE"]).await?;
    if let Reply::Array(n) = read(s).await?
        && n > 0
        && let Reply::Bulk(Some(r)) = read(s).await?
    {
        info.role = Some(role_name(&String::from_utf8_lossy(&r)));
    }
    Ok(())
}

/// Redis says master/slave; the report says primary/replica.
fn role_name(r: &str) -> String {
    match r {
        "master" => "primary".into(),
        "slave" => "replica".into(),
        other => other.into(),
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, args: &[&[u8]]) -> Result<(), String> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    s.write_all(&buf).await.map_err(|e| io_failure("cannot send", &e))?;
    s.flush().await.map_err(|e| io_failure("cannot send", &e))
}

/// A failed read or write, with the cause and fix when TLS knows it (a TLS 1.3 server that
/// wants a client certificate, or refuses ours, says so only after the handshake).
fn io_failure(what: &str, e: &std::io::Error) -> String {
    match crate::tls::after_handshake(e) {
        Some(why) => format!("{what}: {why}"),
        None => format!("{what}: {e}"),
    }
}

async fn read<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<Reply, String> {
    let mut line = Vec::new();
    let n = (&mut *s)
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| io_failure("no answer", &e))?;
    if n == 0 {
        return Err("the server closed the connection without answering (is it Redis?)".into());
    }
    let Some(body) = line.strip_suffix(b"\r\n").filter(|b| !b.is_empty()) else {
        return Err(not_redis(&line));
    };
    let text = String::from_utf8_lossy(&body[1..]).into_owned();
    let number = || text.parse::<i64>().map_err(|_| not_redis(&line));
    match body[0] {
        b'+' => Ok(Reply::Simple(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => number().map(|_| Reply::Integer),
        b'*' => Ok(Reply::Array(number()?)),
        b'$' => bulk(s, number()?).await,
        _ => Err(not_redis(&line)),
    }
}

async fn bulk<S: AsyncRead + Unpin>(s: &mut BufReader<S>, len: i64) -> Result<Reply, String> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(Reply::Bulk(None)); // $-1: nil
    };
    if len > MAX_REPLY {
        return Err(format!("a reply of {len} bytes is more than check reads"));
    }
    let mut buf = vec![0; len + 2];
    s.read_exact(&mut buf)
        .await
        .map_err(|e| format!("reply cut short: {e}"))?;
    buf.truncate(len);
    Ok(Reply::Bulk(Some(buf)))
}

fn not_redis(line: &[u8]) -> String {
    let start: String = String::from_utf8_lossy(&line[..line.len().min(24)])
        .escape_debug()
        .collect();
    format!("the server does not speak Redis (it answered \"{start}\")")
}
