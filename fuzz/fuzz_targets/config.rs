//! The configuration parser: any bytes give a `Config` or an error that says something,
//! never a panic or a hang (libFuzzer's `-timeout` catches slow inputs).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use retunnel::config::Config;

fuzz_target!(|data: &[u8]| {
    // `Config::load` refuses text that is not UTF-8 before parsing; replacing the bad bytes
    // keeps every input useful to the parser instead.
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, Path::new("fuzz.conf")) {
        Ok((config, _warnings)) => {
            // What the rest of retunnel relies on: at least one tunnel, each with a target
            // and a name of its own.
            assert!(!config.services.is_empty(), "a config without tunnels: {text:?}");
            for (i, s) in config.services.iter().enumerate() {
                assert!(!s.connect.is_empty(), "[{}] without connect: {text:?}", s.name);
                assert!(
                    config.services[..i].iter().all(|o| o.name != s.name),
                    "[{}] twice",
                    s.name
                );
            }
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "an empty error for {text:?}"),
    }
});
