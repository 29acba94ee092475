//! Redis connection reuse: an upstream connection whose client left at a clean point is
//! reset (`RESET`, Redis 6.2+) and kept warm for the next client, instead of closed.
//!
//! What makes a point clean is decided by the relay ([`super::relay`]): every reply
//! delivered, no transaction open, replies switched on, and nothing sent that `RESET` does not
//! undo (subscriptions, `MONITOR`, replication, `CLIENT` subcommands other than the ones
//! listed in [`bars_reuse`]). Here: which commands bar reuse, and the `RESET` exchange itself,
//! which must end with `+RESET` as the only reply (push frames before it are dropped) and
//! nothing after it, or the connection is closed.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::resp::{Scanner, Side};

/// `CLIENT` subcommands whose effect `RESET` undoes, or that change nothing on the
/// connection. Any other (`NO-EVICT`, `NO-TOUCH`, `SETINFO`, and whatever a later Redis adds)
/// bars reuse: Redis 7.0's `RESET` leaves those flags in place.
const CLIENT_HARMLESS: [&str; 12] = [
    "id",
    "info",
    "getname",
    "setname",
    "tracking",
    "trackinginfo",
    "getredir",
    "caching",
    "reply",
    "list",
    "kill",
    "help",
];

/// Besides the pub/sub commands: commands that turn the connection into something else (a
/// replica link, a monitor), or after which the server closes it (`QUIT`).
const BARRED: [&str; 7] = ["monitor", "sync", "psync", "replconf", "failover", "shutdown", "quit"];

/// Why the command the scanner just completed (client side) bars reusing the connection,
/// if it does.
pub fn bars_reuse(s: &Scanner) -> Option<&'static str> {
    let name = s.word(0)?;
    if BARRED
        .iter()
        .chain(&super::relay::PUBSUB)
        .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
    {
        return Some(match () {
            _ if name.eq_ignore_ascii_case(b"quit") => "QUIT went to Redis, which closes the connection",
            _ if name.eq_ignore_ascii_case(b"shutdown") || name.eq_ignore_ascii_case(b"failover") => {
                "SHUTDOWN or FAILOVER was sent"
            }
            _ => "subscribed, monitoring or replicating",
        });
    }
    if name.eq_ignore_ascii_case(b"client") {
        let harmless = s
            .word(1)
            .is_some_and(|sub| CLIENT_HARMLESS.iter().any(|c| sub.eq_ignore_ascii_case(c.as_bytes())));
        if !harmless {
            return Some("a CLIENT setting RESET may not undo");
        }
    }
    None
}

/// Why a connection could not be reset for reuse.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The server does not know `RESET` (Redis before 6.2) or refuses it to the user.
    #[error("the server refused RESET: {0}")]
    Refused(String),
    /// Anything else: a closed or slow connection, an unexpected reply.
    #[error("{0}")]
    Failed(String),
}

/// The most bytes of push frames read before `+RESET` (invalidation messages of a client
/// that used `CLIENT TRACKING` in RESP3).
const MAX_BEFORE: usize = 1 << 20;

/// Sends `RESET` and reads its answer within `wait`: `Ok` when it is `+RESET` and nothing
/// else comes with it.
pub async fn reset<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, wait: Duration) -> Result<(), ResetError> {
    let exchange = async {
        s.write_all(b"RESET\r\n").await?;
        s.flush().await?;
        read_answer(s).await
    };
    match tokio::time::timeout(wait, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ResetError::Failed(format!("RESET failed: {e}"))),
        Err(_) => Err(ResetError::Failed("no answer to RESET in time".into())),
    }
}

async fn read_answer<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Result<(), ResetError>> {
    let mut scanner = Scanner::new(Side::Server);
    let mut frame = Vec::new();
    let mut seen = 0;
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(Err(ResetError::Failed("the server closed the connection".into())));
        }
        seen += n;
        let mut i = 0;
        while i < n {
            let (used, done) = scanner
                .feed(&buf[i..n])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            frame.extend_from_slice(&buf[i..i + used]);
            i += used;
            if !done {
                continue;
            }
            if scanner.frame_type() == b'>' {
                frame.clear();
                continue;
            }
            return Ok(match () {
                _ if i < n => Err(ResetError::Failed("bytes came after the answer to RESET".into())),
                _ if frame == b"+RESET\r\n" => Ok(()),
                _ if frame.first() == Some(&b'-') => Err(ResetError::Refused(first_line(&frame))),
                _ => Err(ResetError::Failed("the server did not answer RESET with +RESET".into())),
            });
        }
        if seen > MAX_BEFORE {
            return Ok(Err(ResetError::Failed(
                "too much came before the answer to RESET".into(),
            )));
        }
    }
}

fn first_line(frame: &[u8]) -> String {
    let line = frame.split(|&b| b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(&line[1..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    async fn answer(server: &[u8]) -> Result<(), ResetError> {
        let (mut ours, mut theirs) = duplex(4096);
        theirs.write_all(server).await.unwrap();
        let r = reset(&mut ours, Duration::from_secs(5)).await;
        let mut sent = [0u8; 7];
        theirs.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"RESET\r\n");
        r
    }

    #[tokio::test]
    async fn only_a_lone_plus_reset_after_pushes_is_taken() {
        assert!(answer(b"+RESET\r\n").await.is_ok());
        assert!(
            answer(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+RESET\r\n")
                .await
                .is_ok()
        );
        let e = answer(b"-ERR unknown command 'RESET'\r\n").await.unwrap_err();
        assert!(
            matches!(e, ResetError::Refused(ref m) if m.starts_with("ERR unknown")),
            "{e:?}"
        );
        assert!(matches!(answer(b"+RESET\r\n+OK\r\n").await, Err(ResetError::Failed(_))));
        assert!(matches!(answer(b"+OK\r\n").await, Err(ResetError::Failed(_))));
        assert!(matches!(answer(b"$5\r\nRESET\r\n").await, Err(ResetError::Failed(_))));
    }

    #[test]
    fn subscriptions_monitor_and_unknown_client_settings_bar_reuse() {
        let bars = |cmd: &[u8]| {
            let mut s = Scanner::new(Side::Client);
            assert!(s.feed(cmd).unwrap().1);
            bars_reuse(&s)
        };
        for ok in [
            &b"GET a\r\n"[..],
            b"CLIENT SETNAME x\r\n",
            b"client tracking on\r\n",
            b"SELECT 3\r\n",
        ] {
            assert_eq!(bars(ok), None, "{}", String::from_utf8_lossy(ok));
        }
        for barred in [
            &b"SUBSCRIBE a\r\n"[..],
            b"monitor\r\n",
            b"CLIENT NO-EVICT on\r\n",
            b"CLIENT SETINFO lib-name x\r\n",
            b"CLIENT\r\n",
        ] {
            assert!(bars(barred).is_some(), "{}", String::from_utf8_lossy(barred));
        }
    }
}
