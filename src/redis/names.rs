//! The command names the relay's followers look at: the session ([`super::relay`]: MULTI,
//! CLIENT REPLY, pub/sub, HELLO, topology commands), the replay recorder ([`super::failover`]:
//! setup, blocking and WATCH commands) and reuse ([`super::reuse`]). Any other command (GET,
//! SET, HGETALL…: nearly all traffic) changes nothing they follow, so the relay pairs it with
//! a plain reply and records it without asking each of them: about 45 name comparisons per
//! command saved. A test reads those modules' code and fails on a quoted word that is
//! neither listed here nor known to be an argument, so a name added there cannot be missed.

use super::resp::WORD_MAX;

const _: () = assert!(WORD_MAX >= 12);

/// Whether `name` (a command's first word, any case) is none of the names the followers look
/// at. A name longer than the longest of them is ordinary.
pub fn ordinary(name: &[u8]) -> bool {
    // The names below are 4 to 12 letters long: GET, SET, DEL and the like end here.
    if !(4..=12).contains(&name.len()) {
        return true;
    }
    let mut lower = [0u8; WORD_MAX];
    let l = &mut lower[..name.len()];
    l.copy_from_slice(name);
    l.make_ascii_lowercase();
    !matches!(
        &*l,
        // The session: transactions, replies switched off, pub/sub, protocol, topology.
        b"multi" | b"exec" | b"discard" | b"client" | b"reset" | b"hello" | b"monitor" | b"cluster"
            | b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe" | b"sunsubscribe"
            // Reuse: commands after which the connection is something else, or gone.
            | b"sync" | b"psync" | b"replconf" | b"failover" | b"shutdown" | b"quit"
            // The replay recorder: setup, blocking commands, WATCH.
            | b"auth" | b"select" | b"readonly" | b"readwrite" | b"watch" | b"unwatch"
            | b"blpop" | b"brpop" | b"brpoplpush" | b"blmove" | b"blmpop" | b"bzpopmin" | b"bzpopmax"
            | b"bzmpop" | b"xread" | b"xreadgroup" | b"wait" | b"waitaof"
            // Looked at only as a CLIENT subcommand, but a command name too: listed, so
            // that the test below needs no exception for a real name.
            | b"info"
    )
}

#[cfg(test)]
mod tests {
    use super::ordinary;

    /// Quoted words in those modules that are no command names: subcommands and arguments
    /// (looked at only after a name listed in `ordinary`), and struct and field names of `Debug`
    /// output.
    const NOT_NAMES: &[&str] = &[
        "3",
        "caching",
        "getname",
        "getredir",
        "help",
        "id",
        "kill",
        "lib-name",
        "lib-ver",
        "list",
        "no-evict",
        "no-touch",
        "nodes",
        "off",
        "on",
        "replicas",
        "reply",
        "setinfo",
        "setname",
        "shards",
        "skip",
        "slaves",
        "slots",
        "tracking",
        "trackinginfo",
        "partial",
        "plan",
        "published",
        "recorder",
        "setup",
        "sticky",
        "unknown",
        "watching",
    ];

    #[test]
    fn every_name_the_followers_look_at_is_not_ordinary() {
        let modules = [
            ("relay.rs", include_str!("relay.rs")),
            ("failover.rs", include_str!("failover.rs")),
            ("reuse.rs", include_str!("reuse.rs")),
        ];
        let mut seen = 0;
        for (file, source) in modules {
            let code = source.split("#[cfg(test)]\nmod tests").next().unwrap();
            for word in code.split('"').skip(1).step_by(2) {
                // `is` ignores case: `"WATCH"` would be looked at as much as `"watch"`.
                if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    continue;
                }
                let word = word.to_ascii_lowercase();
                let word = word.as_str();
                seen += 1;
                assert!(
                    !ordinary(word.as_bytes()) || NOT_NAMES.contains(&word),
                    "{file} looks at \"{word}\": list it in names::ordinary (or, if it is no command name, in NOT_NAMES)"
                );
            }
        }
        assert!(
            seen > 50,
            "the scan found only {seen} quoted words: has the code moved?"
        );
        for name in ["GET", "set", "HGetAll", "evalsha", "a-command-name-longer-than-kept"] {
            assert!(ordinary(name.as_bytes()), "{name}");
        }
        for name in ["MULTI", "Client", "quit", "XREADGROUP", "subscribe"] {
            assert!(!ordinary(name.as_bytes()), "{name}");
        }
    }
}
