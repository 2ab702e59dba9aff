//! [`Config::from_toml`]: reads the document section by section (`[sip]`, `[[users]]`,
//! `[policy]`, ...), one method per section on the TOML reader of `parse`.

use super::model::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use toml_edit::{ImDocument, Item, Value};

use super::parse::*;

impl Config {
    /// Every problem is reported, not just the first.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let mut p = Parser {
            text,
            errors: Vec::new(),
        };
        let doc = match ImDocument::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                // The parser's message may span several lines; keep one line per error.
                let msg = e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                p.error(&e.span(), "", format!("invalid TOML: {msg}"));
                return Err(p.into_errors(file));
            }
        };
        let root = Tbl {
            path: String::new(),
            table: doc.as_table(),
            span: None,
        };
        p.check_keys(
            &root,
            &[
                "sip",
                "rtp",
                "http",
                "auth",
                "users",
                "trunks",
                "routes",
                "features",
                "policy",
                "compliance",
                "state",
            ],
        );
        let sip = p.sip(root.table.get("sip"));
        let rtp = p.rtp(root.table.get("rtp"));
        let http = p.http(root.table.get("http"));
        let auth = p.auth(root.table.get("auth"));
        let users = p.users(root.table.get("users"));
        let trunks = p.trunks(root.table.get("trunks"));
        let routes = p.routes(root.table.get("routes"), &trunks);
        let features = p.features(root.table.get("features"));
        let policy = p.policy(root.table.get("policy"), &users);
        let compliance = p.compliance(root.table.get("compliance"));
        let state = p.state(root.table.get("state"));
        if !p.errors.is_empty() {
            return Err(p.into_errors(file));
        }
        Ok(Config {
            sip,
            rtp,
            http,
            auth,
            users,
            trunks,
            routes,
            features,
            policy,
            compliance,
            state,
        })
    }
}

impl Parser<'_> {
    fn sip(&mut self, item: Option<&Item>) -> SipConfig {
        let mut c = SipConfig::default();
        let Some(t) = self.section(
            item,
            "sip",
            &[
                "udp",
                "tcp",
                "domain",
                "t1_ms",
                "t2_ms",
                "t4_ms",
                "registrar_min_expires",
                "registrar_max_expires",
                "registrar_default_expires",
                "user_agent",
                "no_answer_timeout_s",
                "tcp_max_connections",
                "tcp_max_per_address",
                "tcp_idle_timeout_s",
                "tcp_message_timeout_s",
            ],
        ) else {
            return c;
        };
        let listener = |v: &Value| match v {
            Value::Boolean(b) if !*b.value() => Some(None),
            _ => parsed::<SocketAddr>(v).map(Some),
        };
        if let Some((v, _)) = self.get(&t, "udp", EXP_ADDR_OR_FALSE, listener) {
            c.udp = v;
        }
        if let Some((v, _)) = self.get(&t, "tcp", EXP_ADDR_OR_FALSE, listener) {
            c.tcp = v;
        }
        if c.udp.is_none() && c.tcp.is_none() {
            self.error(
                &t.span,
                "sip",
                "expected at least one of sip.udp and sip.tcp to be an address, found both false",
            );
        }
        if let Some((v, _)) = self.get(&t, "domain", EXP_STRING, non_empty) {
            c.domain = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "no_answer_timeout_s",
            "a positive number of seconds",
            positive,
        ) {
            c.no_answer_timeout_s = v;
        }
        if let Some((v, _)) = self.get(&t, "user_agent", EXP_STRING, non_empty) {
            c.user_agent = v;
        }
        let count = "a positive number";
        let secs = "a positive number of seconds";
        if let Some((v, _)) = self.get(&t, "tcp_max_connections", count, positive) {
            c.tcp_max_connections = v;
        }
        if let Some((v, _)) = self.get(&t, "tcp_max_per_address", count, positive) {
            c.tcp_max_per_address = v;
        }
        if let Some((v, _)) = self.get(&t, "tcp_idle_timeout_s", secs, positive) {
            c.tcp_idle_timeout_s = v;
        }
        if let Some((v, _)) = self.get(&t, "tcp_message_timeout_s", secs, positive) {
            c.tcp_message_timeout_s = v;
        }
        let ms = "a positive number of milliseconds";
        let t1 = self.get(&t, "t1_ms", ms, positive);
        let t2 = self.get(&t, "t2_ms", ms, positive);
        if let Some((v, _)) = self.get(&t, "t4_ms", ms, positive) {
            c.t4_ms = v;
        }
        let t1_span = set(&mut c.t1_ms, t1);
        let t2_span = set(&mut c.t2_ms, t2);
        if c.t1_ms > c.t2_ms {
            // Blame whichever of the two the file actually sets.
            if t1_span.is_some() || t2_span.is_none() {
                self.error(
                    &t1_span,
                    "sip.t1_ms",
                    format!(
                        "expected at most sip.t2_ms ({}), found {}",
                        c.t2_ms, c.t1_ms
                    ),
                );
            } else {
                self.error(
                    &t2_span,
                    "sip.t2_ms",
                    format!(
                        "expected at least sip.t1_ms ({}), found {}",
                        c.t1_ms, c.t2_ms
                    ),
                );
            }
        }
        let secs = "a positive number of seconds";
        let min = self.get(&t, "registrar_min_expires", secs, positive);
        let max = self.get(&t, "registrar_max_expires", secs, positive);
        let def = self.get(&t, "registrar_default_expires", secs, positive);
        let min_span = set(&mut c.registrar_min_expires, min);
        let max_span = set(&mut c.registrar_max_expires, max);
        let def_span = set(&mut c.registrar_default_expires, def);
        if c.registrar_min_expires > c.registrar_max_expires {
            let (key, span) = if min_span.is_some() || max_span.is_none() {
                ("sip.registrar_min_expires", min_span)
            } else {
                ("sip.registrar_max_expires", max_span)
            };
            self.error(
                &span,
                key,
                format!(
                    "expected registrar_min_expires ({}) <= registrar_max_expires ({})",
                    c.registrar_min_expires, c.registrar_max_expires
                ),
            );
        } else if !(c.registrar_min_expires..=c.registrar_max_expires)
            .contains(&c.registrar_default_expires)
        {
            self.error(
                &def_span,
                "sip.registrar_default_expires",
                format!(
                    "expected a value between registrar_min_expires ({}) and registrar_max_expires ({}), found {}",
                    c.registrar_min_expires, c.registrar_max_expires, c.registrar_default_expires
                ),
            );
        }
        c
    }

    fn rtp(&mut self, item: Option<&Item>) -> RtpConfig {
        let mut c = RtpConfig::default();
        let Some(t) = self.section(
            item,
            "rtp",
            &[
                "address",
                "port_min",
                "port_max",
                "inactivity_timeout_s",
                "coach_gain_db",
                "latching",
                "learn_window_ms",
            ],
        ) else {
            return c;
        };
        if let Some((v, _)) = self.get(
            &t,
            "address",
            "an IP address string such as \"127.0.0.1\"",
            parsed,
        ) {
            c.address = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "inactivity_timeout_s",
            "a non-negative number of seconds (0 = off)",
            int,
        ) {
            c.inactivity_timeout_s = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "coach_gain_db",
            "an integer number of dB between -30 and 12",
            |v| int::<i32>(v).filter(|g| (-30..=12).contains(g)),
        ) {
            c.coach_gain_db = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "latching",
            &expected_one_of(&Latching::ALL),
            one_of(&Latching::ALL),
        ) {
            c.latching = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "learn_window_ms",
            "a number of milliseconds between 100 and 60000",
            |v| int::<u64>(v).filter(|w| (100..=60_000).contains(w)),
        ) {
            c.learn_window_ms = v;
        }
        // RTP uses the even port of a pair and RTCP the odd one above it.
        let min = self.get(
            &t,
            "port_min",
            "an even port number between 2 and 65534",
            |v| positive::<u16>(v).filter(|p| p % 2 == 0),
        );
        let max = self.get(
            &t,
            "port_max",
            "a port number between 1 and 65535",
            positive,
        );
        let min_span = set(&mut c.port_min, min);
        let max_span = set(&mut c.port_max, max);
        if c.port_min >= c.port_max {
            if min_span.is_some() || max_span.is_none() {
                self.error(
                    &min_span,
                    "rtp.port_min",
                    format!(
                        "expected a port below rtp.port_max ({}), found {}",
                        c.port_max, c.port_min
                    ),
                );
            } else {
                self.error(
                    &max_span,
                    "rtp.port_max",
                    format!(
                        "expected a port above rtp.port_min ({}), found {}",
                        c.port_min, c.port_max
                    ),
                );
            }
        }
        c
    }

    fn http(&mut self, item: Option<&Item>) -> HttpConfig {
        let mut c = HttpConfig::default();
        if let Some(t) = self.section(
            item,
            "http",
            &[
                "listen",
                "token_ttl_s",
                "metrics_token",
                "header_timeout_s",
                "body_timeout_s",
                "max_connections",
                "max_connections_per_address",
                "max_logins_per_user",
                "max_streams_per_user",
                "auto_answer_headers",
                "answer_timeout_s",
                "legal_notice",
            ],
        ) {
            if let Some((v, _)) = self.get(&t, "listen", EXP_ADDR_OR_FALSE, |v| match v {
                Value::Boolean(b) if !*b.value() => Some(None),
                v => parsed(v).map(Some),
            }) {
                c.listen = v;
            }
            if let Some((v, _)) =
                self.get(&t, "token_ttl_s", "a positive number of seconds", positive)
            {
                c.token_ttl_s = v;
            }
            if let Some((v, _)) = self.get(
                &t,
                "answer_timeout_s",
                "a positive number of seconds",
                positive,
            ) {
                c.answer_timeout_s = v;
            }
            if let Some((v, _)) = self.get(
                &t,
                "metrics_token",
                "a string of at least 16 visible ASCII characters, or false",
                |v| match v {
                    Value::Boolean(b) if !*b.value() => Some(None),
                    v => v
                        .as_str()
                        .filter(|s| s.len() >= 16 && s.bytes().all(|b| b.is_ascii_graphic()))
                        .map(|s| Some(s.to_owned())),
                },
            ) {
                c.metrics_token = v;
            }
            let count = "a positive number";
            let secs = "a positive number of seconds";
            for (key, field) in [
                ("header_timeout_s", &mut c.header_timeout_s),
                ("body_timeout_s", &mut c.body_timeout_s),
            ] {
                if let Some((v, _)) = self.get(&t, key, secs, positive) {
                    *field = v;
                }
            }
            for (key, field) in [
                ("max_connections", &mut c.max_connections),
                (
                    "max_connections_per_address",
                    &mut c.max_connections_per_address,
                ),
                ("max_logins_per_user", &mut c.max_logins_per_user),
                ("max_streams_per_user", &mut c.max_streams_per_user),
            ] {
                if let Some((v, _)) = self.get(&t, key, count, positive) {
                    *field = v;
                }
            }
            if let Some((v, _)) = self.get(&t, "legal_notice", EXP_STRING, non_empty) {
                c.legal_notice = v;
            }
            if let Some(v) = self.get_array(
                &t,
                "auto_answer_headers",
                "\"Name: value\" header strings",
                |v| {
                    let (name, value) = v.as_str()?.split_once(':')?;
                    let name = name.trim();
                    let ok = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !value.contains(['\r', '\n']);
                    ok.then(|| (name.to_owned(), value.trim().to_owned()))
                },
            ) {
                c.auto_answer_headers = v.into_iter().map(|(h, _)| h).collect();
            }
        }
        c
    }

    fn auth(&mut self, item: Option<&Item>) -> AuthConfig {
        let mut c = AuthConfig::default();
        if let Some(t) = self.section(
            item,
            "auth",
            &[
                "realm",
                "nonce_lifetime_s",
                "algorithms",
                "md5_only_user_agents",
            ],
        ) {
            if let Some(v) = self.get_array(&t, "algorithms", "\"SHA-256\" or \"MD5\"", |v| {
                v.as_str()
                    .filter(|s| s.eq_ignore_ascii_case("SHA-256") || s.eq_ignore_ascii_case("MD5"))
                    .map(|s| s.to_ascii_uppercase())
            }) {
                if v.is_empty() {
                    self.error(
                        &None,
                        "auth.algorithms".to_owned(),
                        "expected at least one algorithm".to_owned(),
                    );
                } else {
                    c.algorithms = v.into_iter().map(|(a, _)| a).collect();
                }
            }
            if let Some(v) = self.get_array(&t, "md5_only_user_agents", "strings", |v| {
                v.as_str().map(str::to_owned)
            }) {
                c.md5_only_user_agents = v.into_iter().map(|(a, _)| a).collect();
            }
            if let Some((v, _)) = self.get(&t, "realm", EXP_STRING, non_empty) {
                c.realm = v;
            }
            if let Some((v, _)) = self.get(
                &t,
                "nonce_lifetime_s",
                "a positive number of seconds",
                positive,
            ) {
                c.nonce_lifetime_s = v;
            }
        }
        c
    }

    fn users(&mut self, item: Option<&Item>) -> Vec<User> {
        let mut users = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for t in self.table_list(item, "users") {
            self.check_keys(
                &t,
                &[
                    "extension",
                    "password",
                    "name",
                    "roles",
                    "groups",
                    "builtin_bridge",
                    "privacy",
                    "contact",
                ],
            );
            let extension = self.require(&t, "extension", EXP_DIGITS, |v| {
                non_empty(v).filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            });
            if let Some((ext, span)) = &extension {
                if let Some(first) = seen.get(ext) {
                    let msg = format!(
                        "expected an extension no other user has, found {ext:?} (already used by {first})"
                    );
                    self.error(span, t.key("extension"), msg);
                } else {
                    seen.insert(ext.clone(), t.path.clone());
                }
            }
            let password = self.require(&t, "password", EXP_STRING, non_empty);
            let name = self.get(&t, "name", EXP_STRING, non_empty);
            let roles = self.get_array(
                &t,
                "roles",
                &expected_one_of(&Role::ALL),
                one_of(&Role::ALL),
            );
            let groups = self.get_array(&t, "groups", EXP_STRING, non_empty);
            let builtin_bridge = self.get(&t, "builtin_bridge", EXP_BOOL, Value::as_bool);
            let privacy = self.get(&t, "privacy", EXP_BOOL, Value::as_bool);
            let contact = self.get(
                &t,
                "contact",
                "a SIP URI string such as \"sip:1001@127.0.0.1:5071\"",
                |v| string(v).filter(|s| is_sip_uri(s)),
            );
            let (Some((extension, _)), Some((password, _))) = (extension, password) else {
                continue;
            };
            users.push(User {
                name: name.map_or_else(|| extension.clone(), |(n, _)| n),
                extension,
                password,
                roles: dedup(roles.unwrap_or_default()),
                groups: dedup(groups.unwrap_or_default()),
                builtin_bridge: builtin_bridge.is_some_and(|(b, _)| b),
                privacy: privacy.is_some_and(|(b, _)| b),
                contact: contact.map(|(c, _)| c),
            });
        }
        users
    }

    fn trunks(&mut self, item: Option<&Item>) -> Vec<Trunk> {
        let mut trunks: Vec<Trunk> = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
        for t in self.table_list(item, "trunks") {
            self.check_keys(&t, &["name", "address", "transport"]);
            let name = self.require(
                &t,
                "name",
                "a non-empty name of letters, digits, '-', '_' and '.'",
                |v| {
                    non_empty(v).filter(|s| {
                        s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    })
                },
            );
            if let Some((n, span)) = &name {
                if let Some(first) = names.get(n) {
                    let msg = format!(
                        "expected a name no other trunk has, found {n:?} (already used by {first})"
                    );
                    self.error(span, t.key("name"), msg);
                } else {
                    names.insert(n.clone(), t.path.clone());
                }
            }
            let address = self.require(&t, "address", EXP_ADDR, parsed::<SocketAddr>);
            if let Some((a, span)) = &address {
                // Trust is decided by source address, so two trunks on one address would be ambiguous.
                if let Some(first) = addresses.get(a) {
                    let msg = format!(
                        "expected an address no other trunk has, found \"{a}\" (already used by {first})"
                    );
                    self.error(span, t.key("address"), msg);
                } else {
                    addresses.insert(*a, t.path.clone());
                }
            }
            let transports = [("udp", TrunkTransport::Udp), ("tcp", TrunkTransport::Tcp)];
            let transport = self.get(
                &t,
                "transport",
                &expected_one_of(&transports),
                one_of(&transports),
            );
            if let (Some((name, _)), Some((address, _))) = (name, address) {
                trunks.push(Trunk {
                    name,
                    address,
                    transport: transport.map_or(TrunkTransport::Udp, |(x, _)| x),
                });
            }
        }
        trunks
    }

    fn routes(&mut self, item: Option<&Item>, trunks: &[Trunk]) -> Vec<Route> {
        let mut routes = Vec::new();
        let trunk_names: Vec<&str> = trunks.iter().map(|t| t.name.as_str()).collect();
        let expected_target = if trunk_names.is_empty() {
            "\"users\" (no trunks are defined)".to_owned()
        } else {
            format!(
                "\"users\" or \"trunk:<name>\" with a defined trunk ({})",
                trunk_names.join(", ")
            )
        };
        for t in self.table_list(item, "routes") {
            self.check_keys(&t, &["prefix", "target", "strip"]);
            let prefix = self.get(
                &t,
                "prefix",
                "a string of 0-9, *, # and + (\"\" matches everything)",
                |v| {
                    string(v).filter(|s| s.chars().all(|c| c.is_ascii_digit() || "*#+".contains(c)))
                },
            );
            let target = self.require(&t, "target", &expected_target, |v| {
                let s = v.as_str()?;
                if s == "users" {
                    return Some(RouteTarget::Users);
                }
                let name = s.strip_prefix("trunk:")?;
                trunk_names
                    .contains(&name)
                    .then(|| RouteTarget::Trunk(name.to_owned()))
            });
            let strip = self.get(&t, "strip", EXP_NON_NEG_INT, int::<usize>);
            let prefix = prefix.map(|(p, _)| p).unwrap_or_default();
            let strip_value = strip.as_ref().map_or(0, |(s, _)| *s);
            if let Some((s, span)) = &strip {
                let len = prefix.chars().count();
                if *s > len {
                    self.error(
                        span,
                        t.key("strip"),
                        format!(
                            "expected at most the length of prefix {prefix:?} ({len}), found {s}"
                        ),
                    );
                }
            }
            if let Some((target, _)) = target {
                routes.push(Route {
                    prefix,
                    target,
                    strip: strip_value,
                });
            }
        }
        routes
    }

    fn features(&mut self, item: Option<&Item>) -> FeatureCodes {
        let mut c = FeatureCodes::default();
        let Some(t) = self.section(
            item,
            "features",
            &[
                "monitor",
                "coach",
                "barge",
                "dtmf_monitor",
                "dtmf_coach",
                "dtmf_barge",
            ],
        ) else {
            return c;
        };
        let dialable =
            |v: &Value| non_empty(v).filter(|s| s.chars().all(|c| DTMF_CHARS.contains(c)));
        let dtmf = |v: &Value| {
            let s = v.as_str()?;
            let mut chars = s.chars();
            let c = chars.next()?;
            (chars.next().is_none() && DTMF_CHARS.contains(c)).then_some(c)
        };
        let monitor = self.get(&t, "monitor", EXP_DIALABLE, dialable);
        let coach = self.get(&t, "coach", EXP_DIALABLE, dialable);
        let barge = self.get(&t, "barge", EXP_DIALABLE, dialable);
        let dm = self.get(&t, "dtmf_monitor", EXP_DTMF, dtmf);
        let dc = self.get(&t, "dtmf_coach", EXP_DTMF, dtmf);
        let db = self.get(&t, "dtmf_barge", EXP_DTMF, dtmf);
        let codes = [
            ("monitor", set(&mut c.monitor, monitor)),
            ("coach", set(&mut c.coach, coach)),
            ("barge", set(&mut c.barge, barge)),
        ];
        let digits = [
            ("dtmf_monitor", set(&mut c.dtmf_monitor, dm)),
            ("dtmf_coach", set(&mut c.dtmf_coach, dc)),
            ("dtmf_barge", set(&mut c.dtmf_barge, db)),
        ];
        let code_values = [c.monitor.clone(), c.coach.clone(), c.barge.clone()];
        // `<code><extension>` must split unambiguously: no code may equal or prefix another.
        for i in 0..codes.len() {
            for j in 0..i {
                let (a, b) = (&code_values[j], &code_values[i]);
                if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
                    let ((name, span), (other, other_span)) = (&codes[i], &codes[j]);
                    // Blame the one the file sets (the later one when both are set).
                    let (name, span, other, value) = if span.is_some() || other_span.is_none() {
                        (name, span, other, b)
                    } else {
                        (other, other_span, name, a)
                    };
                    self.error(
                        span,
                        format!("features.{name}"),
                        format!(
                            "expected a code distinct from features.{other} and not a prefix of it (or it of this), found {value:?}"
                        ),
                    );
                }
            }
        }
        let digit_values = [c.dtmf_monitor, c.dtmf_coach, c.dtmf_barge];
        for i in 0..digits.len() {
            for j in 0..i {
                if digit_values[i] == digit_values[j] {
                    let ((name, span), (other, other_span)) = (&digits[i], &digits[j]);
                    let (name, span, other) = if span.is_some() || other_span.is_none() {
                        (name, span, other)
                    } else {
                        (other, other_span, name)
                    };
                    self.error(
                        span,
                        format!("features.{name}"),
                        format!(
                            "expected a digit distinct from features.{other}, found \"{}\"",
                            digit_values[i]
                        ),
                    );
                }
            }
        }
        c
    }

    fn compliance(&mut self, item: Option<&Item>) -> ComplianceConfig {
        let mut c = ComplianceConfig::default();
        let keys = [
            "notify",
            "tone_hz",
            "tone_ms",
            "tone_dbfs",
            "barge_tone_hz",
            "barge_tone_ms",
            "barge_tone_dbfs",
            "barge_tone_beeps",
            "audit_log",
            "unauthenticated_refusals_per_minute",
        ];
        let Some(t) = self.section(item, "compliance", &keys) else {
            return c;
        };
        if let Some((v, _)) = self.get(
            &t,
            "notify",
            &expected_one_of(&Notify::ALL),
            one_of(&Notify::ALL),
        ) {
            c.notify = v;
        }
        let hz = "an integer frequency in Hz between 100 and 3400";
        let ms = "an integer duration in ms between 20 and 2000";
        let db = "an integer level in dBFS between -60 and -3";
        let range = |lo: i64, hi: i64| {
            move |v: &Value| int::<u32>(v).filter(|x| (lo..=hi).contains(&i64::from(*x)))
        };
        for (tone, prefix) in [
            (&mut c.start_tone, "tone"),
            (&mut c.barge_tone, "barge_tone"),
        ] {
            if let Some((v, _)) = self.get(&t, &format!("{prefix}_hz"), hz, range(100, 3400)) {
                tone.freq_hz = v;
            }
            if let Some((v, _)) = self.get(&t, &format!("{prefix}_ms"), ms, range(20, 2000)) {
                tone.duration_ms = v;
            }
            if let Some((v, _)) = self.get(&t, &format!("{prefix}_dbfs"), db, |v| {
                int::<i32>(v).filter(|x| (-60..=-3).contains(x))
            }) {
                tone.level_dbfs = v;
            }
        }
        if let Some((v, _)) = self.get(
            &t,
            "barge_tone_beeps",
            "an integer between 1 and 5",
            range(1, 5),
        ) {
            c.barge_tone.beeps = v;
        }
        if let Some((v, _)) = self.get(&t, "audit_log", "a file path string, or false", |v| match v
        {
            Value::Boolean(b) if !*b.value() => Some(None),
            Value::String(s) if !s.value().is_empty() => {
                Some(Some(std::path::PathBuf::from(s.value())))
            }
            _ => None,
        }) {
            c.audit_log = v;
        }
        if let Some((v, _)) = self.get(
            &t,
            "unauthenticated_refusals_per_minute",
            "an integer between 1 and 10000",
            range(1, 10_000),
        ) {
            c.unauthenticated_refusals_per_minute = v;
        }
        c
    }

    fn state(&mut self, item: Option<&Item>) -> StateConfig {
        let mut c = StateConfig::default();
        let Some(t) = self.section(item, "state", &["dir"]) else {
            return c;
        };
        if let Some((v, _)) = self.get(
            &t,
            "dir",
            "a directory path string, or false",
            |v| match v {
                Value::Boolean(b) if !*b.value() => Some(StateDir::Off),
                Value::String(s) if !s.value().is_empty() => {
                    Some(StateDir::At(std::path::PathBuf::from(s.value())))
                }
                _ => None,
            },
        ) {
            c.dir = v;
        }
        c
    }

    fn policy(&mut self, item: Option<&Item>, users: &[User]) -> Vec<PolicyRule> {
        let mut rules = Vec::new();
        let mut groups: Vec<&str> = users
            .iter()
            .flat_map(|u| u.groups.iter().map(String::as_str))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        groups.sort_unstable();
        let expected_group = if groups.is_empty() {
            "a group that at least one user is in (no user has a group)".to_owned()
        } else {
            format!(
                "a group that at least one user is in ({})",
                groups.join(", ")
            )
        };
        let group = |v: &Value| v.as_str().filter(|s| groups.contains(s)).map(str::to_owned);
        for t in self.table_list(item, "policy") {
            self.check_keys(&t, &["supervisors", "agents", "modes", "notify"]);
            let notify = self
                .get(
                    &t,
                    "notify",
                    &expected_one_of(&Notify::ALL),
                    one_of(&Notify::ALL),
                )
                .map(|(n, _)| n);
            let supervisors = self.require(&t, "supervisors", &expected_group, group);
            let agents = self.require(&t, "agents", &expected_group, group);
            let expected_mode = expected_one_of(&Mode::ALL);
            let modes = if t.table.contains_key("modes") {
                self.get_array(&t, "modes", &expected_mode, one_of(&Mode::ALL))
            } else {
                self.error(
                    &t.span,
                    t.key("modes"),
                    format!("missing; expected an array of {expected_mode}"),
                );
                None
            };
            // An empty list would be a rule that allows nothing: surely a mistake.
            if let Some(Item::Value(Value::Array(a))) = t.table.get("modes") {
                if a.is_empty() {
                    self.error(
                        &a.span(),
                        t.key("modes"),
                        format!(
                            "expected at least one mode ({expected_mode}), found an empty array"
                        ),
                    );
                }
            }
            let modes = modes.map(dedup);
            if let (Some((supervisors, _)), Some((agents, _)), Some(modes)) =
                (supervisors, agents, modes)
            {
                rules.push(PolicyRule {
                    supervisors,
                    agents,
                    modes,
                    notify,
                });
            }
        }
        rules
    }
}
