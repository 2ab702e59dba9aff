//! Configuration model: the lab config (docs/design.md §2), error reporting and the lookup
//! helpers.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bibridge_b2bua::config::{
    Config, ConfigErrors, FeatureCodes, Mode, Role, RouteTarget, TrunkTransport, LAB_CONFIG,
};

fn lab_file() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/bibridge.toml");
    std::fs::read_to_string(path).unwrap()
}

fn errors(text: &str) -> ConfigErrors {
    match Config::from_toml(text, "x.toml") {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A minimal valid base that error tests extend.
const BASE: &str = r#"
[[users]]
extension = "1001"
password = "secret"
groups = ["agents"]
roles = ["agent"]

[[users]]
extension = "2001"
password = "secret"
groups = ["sups"]
roles = ["supervisor"]
"#;

#[test]
fn embedded_lab_equals_config_file() {
    let text = lab_file();
    assert_eq!(LAB_CONFIG, text);
    let from_file = Config::from_toml(&text, "config/bibridge.toml").unwrap();
    assert_eq!(Config::lab(), from_file);
}

#[test]
fn lab_matches_design_section_2() {
    let c = Config::lab();
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert_eq!(c.sip.udp, Some(addr("127.0.0.1:5060")));
    assert_eq!(c.sip.tcp, Some(addr("127.0.0.1:5060")));
    assert_eq!(c.rtp.address, local);
    assert_eq!((c.rtp.port_min, c.rtp.port_max), (20000, 29999));
    assert_eq!(c.http.listen, Some(addr("127.0.0.1:8080")));

    let exts: Vec<&str> = c.users.iter().map(|u| u.extension.as_str()).collect();
    assert_eq!(exts, ["1001", "1002", "1003", "1004", "2001", "2002"]);
    for ext in ["1001", "1002", "1003", "1004"] {
        let u = c.user(ext).unwrap();
        assert_eq!(u.password, format!("lab{ext}"));
        assert_eq!(u.name, format!("Agent {ext}"));
        assert_eq!(u.groups, ["agents"]);
        assert_eq!(u.roles, [Role::Agent]);
        assert!(u.builtin_bridge, "{ext} must have Built-In-Bridge on");
        assert_eq!(u.contact, None);
    }
    for ext in ["2001", "2002"] {
        let u = c.user(ext).unwrap();
        assert_eq!(u.password, format!("lab{ext}"));
        assert_eq!(u.groups, ["supervisors"]);
        assert_eq!(u.roles, [Role::Supervisor]);
    }
    assert!(c.user("1005").is_none());
    assert!(c.uses_lab_passwords());

    assert_eq!(c.trunks.len(), 1);
    let pstn = c.trunk("pstn").unwrap();
    assert_eq!(pstn.address, addr("127.0.0.1:5080"));
    assert_eq!(pstn.transport, TrunkTransport::Udp);

    assert_eq!(
        c.features,
        FeatureCodes {
            monitor: "*81".into(),
            coach: "*82".into(),
            barge: "*83".into(),
            dtmf_monitor: '1',
            dtmf_coach: '2',
            dtmf_barge: '3',
        }
    );

    let sup = c.user("2001").unwrap();
    let agent = c.user("1003").unwrap();
    for mode in [Mode::Monitor, Mode::Coach, Mode::Barge] {
        assert!(c.may(sup, agent, mode), "2001 may {mode} 1003");
        assert!(
            !c.may(agent, sup, mode),
            "an agent may not {mode} a supervisor"
        );
        assert!(
            !c.may(sup, c.user("2002").unwrap(), mode),
            "supervisors are not agents"
        );
        assert!(!c.may(sup, sup, mode), "nobody monitors themself");
    }
}

#[test]
fn empty_config_is_defaults_and_passwords_are_not_lab() {
    let c = Config::from_toml("", "empty.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.sip.t1_ms, 500);
    assert_eq!(c.sip.t2_ms, 4000);
    assert_eq!(c.sip.user_agent, "bibridge/0.1");
    assert_eq!(c.auth.realm, "bibridge");
    assert_eq!(c.rtp.inactivity_timeout_s, 60);
    assert!(!c.uses_lab_passwords());

    let c = Config::from_toml(BASE, "base.toml").unwrap();
    assert!(!c.uses_lab_passwords());
    let u = c.user("1001").unwrap();
    assert_eq!(u.name, "1001", "name defaults to the extension");
    assert!(!u.builtin_bridge, "Built-In-Bridge is off unless enabled");
}

#[test]
fn wrong_type_names_file_line_key_and_expectation() {
    let text = "[[users]]\npassword = \"x\"\nextension = 1001\n";
    let e = errors(text);
    assert_eq!(
        e.to_string(),
        "x.toml:3:13: users[0].extension: expected a string of digits, found integer 1001"
    );
    assert_eq!(e.errors.len(), 1);
    let loc = e.errors[0].location.unwrap();
    assert_eq!((loc.line, loc.column), (3, 13));

    let e = errors("[rtp]\nport_min = \"20000\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:12: rtp.port_min: expected an even port number between 2 and 65534, found string \"20000\""
    );
    let e = errors("sip = 5\n");
    assert_eq!(
        e.to_string(),
        "x.toml:1:7: sip: expected a table, found integer 5"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let e = errors("[sip]\nudpp = \"127.0.0.1:5060\"\n");
    let s = e.to_string();
    assert!(
        s.starts_with(
            "x.toml:2:1: sip.udpp: unknown key \"udpp\"; expected one of: udp, tcp, domain"
        ),
        "{s}"
    );
    let e = errors(&format!("{BASE}builtin_brigde = true\n"));
    let s = e.to_string();
    assert!(
        s.starts_with("x.toml:13:1: users[1].builtin_brigde: unknown key"),
        "{s}"
    );
    assert!(s.contains("builtin_bridge"), "lists the valid keys: {s}");
    let e = errors("[monitoring]\n");
    assert!(
        e.to_string()
            .starts_with("x.toml:1:2: monitoring: unknown key"),
        "{e}"
    );
}

#[test]
fn duplicate_extension() {
    let text = format!("{BASE}\n[[users]]\nextension = \"1001\"\npassword = \"y\"\n");
    let e = errors(&text);
    assert_eq!(
        e.to_string(),
        "x.toml:15:13: users[2].extension: expected an extension no other user has, \
         found \"1001\" (already used by users[0])"
    );
}

#[test]
fn route_to_unknown_trunk() {
    let text = "[[trunks]]\nname = \"pstn\"\naddress = \"127.0.0.1:5080\"\n\
                [[routes]]\ntarget = \"trunk:pstm\"\n";
    let e = errors(text);
    assert_eq!(
        e.to_string(),
        "x.toml:5:10: routes[0].target: expected \"users\" or \"trunk:<name>\" with a defined \
         trunk (pstn), found string \"trunk:pstm\""
    );
}

#[test]
fn bad_port_range() {
    let e = errors("[rtp]\nport_min = 30000\nport_max = 20001\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:12: rtp.port_min: expected a port below rtp.port_max (20001), found 30000"
    );
    // Only port_max set, below the default port_min: port_max is blamed.
    let e = errors("[rtp]\nport_max = 10000\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:12: rtp.port_max: expected a port above rtp.port_min (20000), found 10000"
    );
    let e = errors("[rtp]\nport_min = 20001\n");
    assert!(
        e.to_string()
            .contains("rtp.port_min: expected an even port number"),
        "{e}"
    );
}

#[test]
fn several_errors_are_reported_at_once_in_file_order() {
    let text = r#"[sip]
t1_ms = 0
udp = "localhost"

[rtp]
port_min = 30000
port_max = 20000

[[users]]
extension = "10a1"
password = ""
roles = ["agent", "admin"]

[[routes]]
target = "trunk:nowhere"
"#;
    let e = errors(text);
    let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "sip.t1_ms",
            "sip.udp",
            "rtp.port_min",
            "users[0].extension",
            "users[0].password",
            "users[0].roles[1]",
            "routes[0].target",
        ],
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 7);
    assert!(lines.iter().all(|l| l.starts_with("x.toml:")), "{lines:#?}");
    assert_eq!(
        lines[1],
        "x.toml:3:7: sip.udp: expected an \"IP:port\" string such as \"127.0.0.1:5060\", or false, found string \"localhost\""
    );
    assert_eq!(
        lines[5],
        "x.toml:12:19: users[0].roles[1]: expected one of \"agent\", \"supervisor\", found string \"admin\""
    );
    assert_eq!(
        lines[6],
        "x.toml:15:10: routes[0].target: expected \"users\" (no trunks are defined), found string \"trunk:nowhere\""
    );
}

#[test]
fn missing_required_keys_point_at_the_table() {
    let e = errors("[[users]]\nname = \"x\"\n\n[[trunks]]\nname = \"t\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:1:1: users[0].extension: missing; expected a string of digits\n\
         x.toml:1:1: users[0].password: missing; expected a non-empty string\n\
         x.toml:4:1: trunks[0].address: missing; expected an \"IP:port\" string such as \"127.0.0.1:5060\""
    );
}

#[test]
fn syntax_error_has_a_location() {
    let e = errors("[sip]\nudp = \"127.0.0.1:5060\n");
    assert_eq!(e.errors.len(), 1);
    let err = &e.errors[0];
    assert_eq!(err.location.unwrap().line, 2);
    assert!(err.message.starts_with("invalid TOML: "), "{err}");
    assert!(e.to_string().starts_with("x.toml:2:"), "{e}");
    assert_eq!(e.to_string().lines().count(), 1);
}

#[test]
fn transports_can_be_disabled_but_not_both() {
    let c = Config::from_toml("[sip]\nudp = false\n", "x.toml").unwrap();
    assert_eq!(c.sip.udp, None);
    assert_eq!(c.sip.tcp, Some(addr("127.0.0.1:5060")));
    let e = errors("[sip]\nudp = false\ntcp = false\n");
    assert_eq!(
        e.to_string(),
        "x.toml:1:1: sip: expected at least one of sip.udp and sip.tcp to be an address, found both false"
    );
    // `true` is not an address.
    let e = errors("[sip]\nudp = true\n");
    assert!(e.to_string().contains("found boolean true"), "{e}");
}

#[test]
fn timer_and_registrar_consistency() {
    let e = errors("[sip]\nt1_ms = 5000\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:9: sip.t1_ms: expected at most sip.t2_ms (4000), found 5000"
    );
    let e = errors("[sip]\nregistrar_default_expires = 30\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:29: sip.registrar_default_expires: expected a value between \
         registrar_min_expires (60) and registrar_max_expires (3600), found 30"
    );
    let e = errors("[sip]\nt4_ms = -1\n");
    assert!(
        e.to_string()
            .contains("sip.t4_ms: expected a positive number of milliseconds, found integer -1"),
        "{e}"
    );
}

#[test]
fn feature_codes_must_be_distinct_and_unambiguous() {
    let e = errors("[features]\ncoach = \"*81\"\n");
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].key, "features.coach");
    assert!(
        e.errors[0]
            .message
            .contains("distinct from features.monitor"),
        "{e}"
    );

    // *8 is a prefix of *81: "*81001" could be *8 + 1001 or *81 + 001.
    let e = errors("[features]\nbarge = \"*8\"\n");
    assert_eq!(e.errors.len(), 2, "prefix of monitor and of coach: {e}");
    assert!(e.errors.iter().all(|x| x.key == "features.barge"), "{e}");

    let e = errors("[features]\nmonitor = \"\"\ndtmf_coach = \"1\"\ndtmf_barge = \"ab\"\n");
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "features.monitor",
            "features.dtmf_coach",
            "features.dtmf_barge"
        ],
        "{e}"
    );
    assert!(
        e.to_string().contains(
            "features.dtmf_barge: expected a one-character string among 0-9, * and #, found string \"ab\""
        ),
        "{e}"
    );
}

#[test]
fn policy_groups_and_modes_are_checked() {
    let text = format!(
        "{BASE}\n[[policy]]\nsupervisors = \"sups\"\nagents = \"agentz\"\nmodes = [\"monitor\", \"listen\"]\n\
         \n[[policy]]\nsupervisors = \"sups\"\nagents = \"agents\"\nmodes = []\n"
    );
    let e = errors(&text);
    assert_eq!(
        e.to_string(),
        "x.toml:16:10: policy[0].agents: expected a group that at least one user is in (agents, sups), \
         found string \"agentz\"\n\
         x.toml:17:21: policy[0].modes[1]: expected one of \"monitor\", \"coach\", \"barge\", found string \"listen\"\n\
         x.toml:22:9: policy[1].modes: expected at least one mode (one of \"monitor\", \"coach\", \"barge\"), found an empty array"
    );
}

#[test]
fn policy_is_by_group_role_and_mode() {
    let text = format!(
        "{BASE}\n[[users]]\nextension = \"2002\"\npassword = \"p\"\ngroups = [\"sups\"]\n\
         \n[[policy]]\nsupervisors = \"sups\"\nagents = \"agents\"\nmodes = [\"monitor\", \"coach\"]\n"
    );
    let c = Config::from_toml(&text, "x.toml").unwrap();
    let (agent, sup, no_role) = (
        c.user("1001").unwrap(),
        c.user("2001").unwrap(),
        c.user("2002").unwrap(),
    );
    assert!(c.may(sup, agent, Mode::Monitor));
    assert!(c.may(sup, agent, Mode::Coach));
    assert!(!c.may(sup, agent, Mode::Barge), "barge is not in the rule");
    assert!(
        !c.may(no_role, agent, Mode::Monitor),
        "group membership without the supervisor role is not enough"
    );
}

#[test]
fn trunk_trust_needs_exact_address_and_port() {
    let c = Config::lab();
    assert_eq!(
        c.trunk_for_source(addr("127.0.0.1:5080"))
            .map(|t| t.name.as_str()),
        Some("pstn")
    );
    assert!(c.trunk_for_source(addr("127.0.0.1:5081")).is_none());
    assert!(c.trunk_for_source(addr("127.0.0.1:5060")).is_none());
    assert!(c.trunk_for_source(addr("127.0.0.2:5080")).is_none());
    // The same peer as seen on a dual-stack socket.
    assert!(c
        .trunk_for_source(addr("[::ffff:127.0.0.1]:5080"))
        .is_some());
    assert!(c.trunk("nope").is_none());
}

#[test]
fn duplicate_trunks_are_rejected() {
    let text = "[[trunks]]\nname = \"a\"\naddress = \"127.0.0.1:5080\"\n\
                [[trunks]]\nname = \"a\"\naddress = \"127.0.0.1:5080\"\ntransport = \"sctp\"\n";
    let e = errors(text);
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["trunks[1].name", "trunks[1].address", "trunks[1].transport"],
        "{e}"
    );
    assert!(e.to_string().contains("(already used by trunks[0])"), "{e}");
    assert!(
        e.to_string()
            .contains("expected one of \"udp\", \"tcp\", found string \"sctp\""),
        "{e}"
    );
}

#[test]
fn routes_fall_through_from_users_to_the_trunk() {
    let c = Config::lab();
    let route = |n: &str| c.route(n).map(|(r, num)| (r.target.clone(), num));
    assert_eq!(route("1001"), Some((RouteTarget::Users, "1001".into())));
    assert_eq!(route("2002"), Some((RouteTarget::Users, "2002".into())));
    let pstn = RouteTarget::Trunk("pstn".into());
    // Prefix "1" matches, but 1999 is no user: fall through to the catch-all.
    assert_eq!(route("1999"), Some((pstn.clone(), "1999".into())));
    assert_eq!(route("5551234"), Some((pstn.clone(), "5551234".into())));
    assert_eq!(route(""), Some((pstn, String::new())));
}

#[test]
fn routes_strip_and_can_leave_numbers_unrouted() {
    let text = format!(
        "{BASE}\n[[trunks]]\nname = \"out\"\naddress = \"10.0.0.1:5060\"\ntransport = \"tcp\"\n\
         \n[[routes]]\nprefix = \"9\"\nstrip = 1\ntarget = \"users\"\n\
         \n[[routes]]\nprefix = \"0\"\nstrip = 1\ntarget = \"trunk:out\"\n"
    );
    let c = Config::from_toml(&text, "x.toml").unwrap();
    assert_eq!(c.trunk("out").unwrap().transport, TrunkTransport::Tcp);
    let (r, n) = c.route("91001").unwrap();
    assert_eq!((&r.target, n.as_str()), (&RouteTarget::Users, "1001"));
    let (r, n) = c.route("0441234").unwrap();
    assert_eq!(
        (&r.target, n.as_str()),
        (&RouteTarget::Trunk("out".into()), "441234")
    );
    assert!(c.route("1001").is_none(), "no route has prefix 1");
    assert!(
        c.route("95").is_none(),
        "95 → 5 is no user and nothing follows"
    );

    let e = errors("[[routes]]\nprefix = \"9\"\nstrip = 2\ntarget = \"users\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:3:9: routes[0].strip: expected at most the length of prefix \"9\" (1), found 2"
    );
}

#[test]
fn inline_arrays_and_static_contacts() {
    let text = r#"users = [
  { extension = "1001", password = "p", contact = "sip:1001@127.0.0.1:5071", privacy = true },
  { extension = "1002", password = "p", contact = "1002@host" },
]
"#;
    let e = errors(text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(
        e.to_string().starts_with(
            "x.toml:3:51: users[1].contact: expected a SIP URI string such as \"sip:1001@127.0.0.1:5071\""
        ),
        "{e}"
    );
    let c = Config::from_toml(&text.replace("\"1002@host\"", "\"sips:h\""), "x.toml").unwrap();
    let u = c.user("1001").unwrap();
    assert_eq!(u.contact.as_deref(), Some("sip:1001@127.0.0.1:5071"));
    assert!(u.privacy);
    assert_eq!(c.user("1002").unwrap().contact.as_deref(), Some("sips:h"));
}

#[test]
fn feature_code_and_dtmf_helpers() {
    let f = Config::lab().features;
    assert_eq!(f.parse_dialled("*811001"), Some((Mode::Monitor, "1001")));
    assert_eq!(f.parse_dialled("*822001"), Some((Mode::Coach, "2001")));
    assert_eq!(f.parse_dialled("*83"), Some((Mode::Barge, "")));
    assert_eq!(f.parse_dialled("*84"), None);
    assert_eq!(f.parse_dialled("1001"), None);
    assert_eq!(f.dtmf_mode('1'), Some(Mode::Monitor));
    assert_eq!(f.dtmf_mode('2'), Some(Mode::Coach));
    assert_eq!(f.dtmf_mode('3'), Some(Mode::Barge));
    assert_eq!(f.dtmf_mode('#'), None);
    assert_eq!("coach".parse::<Mode>(), Ok(Mode::Coach));
    assert!("whisper".parse::<Mode>().is_err());
    assert_eq!(Mode::Barge.to_string(), "barge");
}

#[test]
fn compliance_defaults_and_every_bad_key_is_named() {
    let lab = Config::lab();
    assert_eq!(lab.compliance.notify, bibridge_b2bua::config::Notify::None);
    assert_eq!(lab.compliance.start_tone.freq_hz, 1400);
    assert_eq!(lab.compliance.start_tone.duration_ms, 200);
    assert_eq!(lab.compliance.start_tone.level_dbfs, -20);
    assert_eq!(lab.compliance.barge_tone.beeps, 2);
    assert_eq!(
        lab.compliance.audit_log.as_deref(),
        Some(std::path::Path::new("bibridge-audit.jsonl"))
    );
    let e = errors(
        "[compliance]\nnotify = \"everyone\"\ntone_hz = 50\nbarge_tone_beeps = 9\ntone_dbfs = 0\naudit_log = 3\n",
    );
    let text = e.to_string();
    for needle in [
        "x.toml:2:10: compliance.notify: expected one of \"none\", \"agent\", \"all\", found string \"everyone\"",
        "compliance.tone_hz: expected an integer frequency in Hz between 100 and 3400, found integer 50",
        "compliance.barge_tone_beeps: expected an integer between 1 and 5",
        "compliance.tone_dbfs: expected an integer level in dBFS between -60 and -3",
        "compliance.audit_log: expected a file path string, or false",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let c = Config::from_toml(
        "[compliance]\naudit_log = false\nnotify = \"all\"\n",
        "x.toml",
    )
    .unwrap();
    assert_eq!(c.compliance.audit_log, None);
    assert_eq!(c.compliance.notify, bibridge_b2bua::config::Notify::All);
}

#[test]
fn a_policy_rule_may_set_its_own_notification() {
    let text = format!(
        "{}\n[[policy]]\nsupervisors = \"sups\"\nagents = \"agents\"\nmodes = [\"monitor\"]\nnotify = \"sometimes\"\n",
        BASE
    );
    let e = errors(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(
        e.to_string()
            .contains("policy[0].notify: expected one of \"none\", \"agent\", \"all\""),
        "{e}"
    );
}

#[test]
fn state_dir_defaults_next_to_the_audit_log_and_bad_values_are_named() {
    use std::path::PathBuf;
    let lab = Config::lab();
    assert_eq!(lab.state_dir(), Some(PathBuf::from("bibridge-audit.state")));
    let c = Config::from_toml("[state]\ndir = \"/var/lib/bibridge\"\n", "x.toml").unwrap();
    assert_eq!(c.state_dir(), Some(PathBuf::from("/var/lib/bibridge")));
    let c = Config::from_toml("[state]\ndir = false\n", "x.toml").unwrap();
    assert_eq!(c.state_dir(), None);
    let c = Config::from_toml("[compliance]\naudit_log = false\n", "x.toml").unwrap();
    assert_eq!(c.state_dir(), None, "no audit log, no default state dir");
    assert_eq!(lab.compliance.unauthenticated_refusals_per_minute, 10);
    let e = errors("[compliance]\nunauthenticated_refusals_per_minute = 0\n").to_string();
    assert!(
        e.contains("compliance.unauthenticated_refusals_per_minute: expected an integer between 1 and 10000"),
        "{e}"
    );
    let e = errors("[state]\ndir = 3\nfile = \"x\"\n").to_string();
    assert!(
        e.contains("x.toml:2:7: state.dir: expected a directory path string, or false"),
        "{e}"
    );
    assert!(e.contains("unknown key \"file\""), "{e}");
}

/// The transport and HTTP bounds (docs/reliability/transport-http.md): defaults, the lab's
/// metrics token, and bad values named by key.
#[test]
fn connection_limits_have_defaults_and_bad_values_are_named() {
    let c = Config::from_toml("", "empty.toml").unwrap();
    assert_eq!(
        (
            c.sip.tcp_max_connections,
            c.sip.tcp_max_per_address,
            c.sip.tcp_idle_timeout_s,
            c.sip.tcp_message_timeout_s
        ),
        (4096, 32, 300, 10)
    );
    assert_eq!((c.http.header_timeout_s, c.http.body_timeout_s), (10, 10));
    assert_eq!(
        (
            c.http.max_connections,
            c.http.max_connections_per_address,
            c.http.max_logins_per_user,
            c.http.max_streams_per_user
        ),
        (256, 32, 8, 8)
    );
    assert_eq!(c.http.metrics_token, None);
    assert_eq!(
        Config::lab().http.metrics_token.as_deref(),
        Some("lab-metrics-token")
    );
    let c = Config::from_toml("[http]\nmetrics_token = false\n", "x.toml").unwrap();
    assert_eq!(c.http.metrics_token, None);
    let e = errors(
        "[sip]\ntcp_max_connections = 0\ntcp_idle_timeout_s = -1\n\n[http]\nmetrics_token = \"short\"\nmax_streams_per_user = 0\nbody_timeout_s = \"10\"\nmetrics_auth = false\n",
    );
    let mut keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "http.body_timeout_s",
            "http.max_streams_per_user",
            // Gone: /metrics is never anonymous now.
            "http.metrics_auth",
            "http.metrics_token",
            "sip.tcp_idle_timeout_s",
            "sip.tcp_max_connections",
        ],
        "{e}"
    );
}

#[test]
fn latching_keys() {
    use bibridge_b2bua::config::Latching;
    let lab = Config::lab();
    assert_eq!(
        (lab.rtp.latching, lab.rtp.learn_window_ms),
        (Latching::Strict, 2000)
    );
    let c = Config::from_toml(
        "[rtp]\nlatching = \"learn\"\nlearn_window_ms = 500\n",
        "x.toml",
    )
    .unwrap();
    assert_eq!(
        (c.rtp.latching, c.rtp.learn_window_ms),
        (Latching::Learn, 500)
    );
    let e = errors("[rtp]\nlatching = \"loose\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:12: rtp.latching: expected one of \"strict\", \"learn\", found string \"loose\""
    );
    let e = errors("[rtp]\nlearn_window_ms = 0\n");
    assert!(
        e.to_string().contains(
            "rtp.learn_window_ms: expected a number of milliseconds between 100 and 60000"
        ),
        "{e}"
    );
}
