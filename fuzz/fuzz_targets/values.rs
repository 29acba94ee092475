//! The address parsers: `--connect-to HOST:PORT:ADDR:PORT`, and `accept`/`connect` values (the
//! file's and the `--accept`/`--connect` flags' go through the same parsers). Any text gives a
//! value or a message, never a panic; a value printed and parsed again is the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use retunnel::config::{Config, Host, OneOff, Target, parse_accept, parse_target};
use retunnel::upstream::ConnectTo;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match parse_target(&text) {
        Ok(t) => assert_eq!(parse_target(&t.to_string()).as_ref(), Ok(&t), "{text:?} → {t}"),
        Err(e) => assert!(!e.is_empty()),
    }

    let mut map = ConnectTo::default();
    match (map.add(&text), ConnectTo::parse(&text)) {
        // The mapping applies to the target it names, whatever the case of its name.
        (Ok(()), Ok((from, to))) => {
            assert_eq!(map.apply(&from), &to, "{text:?}");
            if let Host::Name(name) = &from.host {
                let upper = Target {
                    host: Host::Name(name.to_ascii_uppercase()),
                    port: from.port,
                };
                assert_eq!(map.apply(&upper), &to, "{text:?}");
            }
        }
        (Err(e), Err(same)) => assert!(!e.is_empty() && e == same),
        (added, parsed) => panic!("add and parse disagree on {text:?}: {added:?} / {parsed:?}"),
    }

    match parse_accept(&text) {
        Ok(a) => assert_eq!(parse_accept(&a.to_string()), Ok(a), "{text:?} → {a}"),
        Err(e) => assert!(!e.is_empty()),
    }

    // `--accept` as the one-off flags read it (TCP addresses or a Unix socket path).
    let flags = OneOff {
        accept: text.to_string(),
        connect: "db.example.com:6379".into(),
        ..OneOff::default()
    };
    match Config::one_off(&flags) {
        Ok(c) => assert!(!c.services[0].accept.is_empty(), "{text:?}"),
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
});
