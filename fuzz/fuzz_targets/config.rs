//! The configuration reader: `bibridge_b2bua::config::Config::from_toml` on arbitrary text.
//! It must return a config or its named errors, never panic; an accepted config is queried
//! the way the engine and the API do, and must build an `Engine`.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_b2bua::config::{Config, Mode};
use bibridge_b2bua::engine::{Engine, LocalAddrs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml(&text, "fuzz.toml") {
        Err(errors) => {
            let shown = errors.to_string();
            assert!(!shown.is_empty(), "an error without a message");
        }
        Ok(cfg) => {
            let _ = cfg.route("1001");
            let _ = cfg.route("*811001");
            let _ = cfg.route("");
            let _ = cfg.trunk_for_source(SocketAddr::from(([127, 0, 0, 1], 5080)));
            let _ = cfg.uses_lab_passwords();
            let _ = cfg.features.parse_dialled("*811001");
            for d in ['1', '2', '3', '#'] {
                let _ = cfg.features.dtmf_mode(d);
            }
            if let (Some(a), Some(s)) = (cfg.users.first(), cfg.users.last()) {
                let _ = cfg.user(&a.extension);
                for (_, mode) in Mode::ALL {
                    let _ = cfg.may(s, a, mode);
                    let _ = cfg.notify_for(s, a, mode);
                }
            }
            let local = LocalAddrs {
                udp: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
                tcp: None,
            };
            let e = Engine::new(cfg, local, [7; 32], Instant::now());
            let _ = e.stats();
            let _ = e.poll_timeout();
        }
    }
});
