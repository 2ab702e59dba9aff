//! The configuration model, parsed from TOML text.
//!
//! This module does no file IO: the server reads the file and hands the text and the file name to
//! [`Config::from_toml`]. Parsing walks the span-preserving `toml_edit` document by hand instead of
//! going through `serde`, because serde stops at the first problem while an operator fixing a
//! config wants to see *every* problem at once, each with file, line, column, the dotted key
//! (`users[2].extension`), what was found and what was expected.
//!
//! The embedded lab configuration ([`LAB_CONFIG`], [`Config::lab`]) is the file
//! `config/bibridge.toml`, which also serves as the commented configuration reference.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml_edit::{ImDocument, Item, TableLike, Value};

/// The lab configuration of DESIGN §2, embedded at build time; identical to `config/bibridge.toml`.
pub const LAB_CONFIG: &str = include_str!("../../../config/bibridge.toml");

/// File name reported in errors about [`LAB_CONFIG`].
const LAB_FILE: &str = "<embedded lab config>";

/// The whole bibridge configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// SIP listeners, timers and registrar limits (`[sip]`).
    pub sip: SipConfig,
    /// Media anchoring ports (`[rtp]`).
    pub rtp: RtpConfig,
    /// Control API listener (`[http]`).
    pub http: HttpConfig,
    /// Digest authentication (`[auth]`).
    pub auth: AuthConfig,
    /// Local users (`[[users]]`), in file order.
    pub users: Vec<User>,
    /// Trusted SIP peers (`[[trunks]]`), in file order.
    pub trunks: Vec<Trunk>,
    /// Routing table (`[[routes]]`), evaluated in file order.
    pub routes: Vec<Route>,
    /// Supervisor feature codes and in-session DTMF digits (`[features]`).
    pub features: FeatureCodes,
    /// Which supervisor groups may use which modes on which agent groups (`[[policy]]`).
    pub policy: Vec<PolicyRule>,
    /// Notification tones and the audit log (`[compliance]`).
    pub compliance: ComplianceConfig,
}

/// Who hears a notification tone when a supervisor attaches (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notify {
    /// Nobody.
    #[default]
    None,
    /// The agent only.
    Agent,
    /// Agent and customer.
    All,
}

impl Notify {
    pub const ALL: [(&'static str, Notify); 3] = [
        ("none", Notify::None),
        ("agent", Notify::Agent),
        ("all", Notify::All),
    ];
}

/// A notification tone: `beeps` bursts of `duration_ms` at `freq_hz`, `gap_ms` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneSpec {
    pub freq_hz: u32,
    pub duration_ms: u32,
    pub level_dbfs: i32,
    pub beeps: u32,
    pub gap_ms: u32,
}

/// `[compliance]`: notification tones and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceConfig {
    /// Default for `[[policy]] notify`: who hears the tones.
    pub notify: Notify,
    /// Played when a monitor or coach session starts.
    pub start_tone: ToneSpec,
    /// Played when a supervisor barges in (start in barge, or a switch to barge): distinct from
    /// the start tone by default (two beeps).
    pub barge_tone: ToneSpec,
    /// The append-only audit log (JSON lines, fsync'd); `None` (`audit_log = false`) disables it.
    pub audit_log: Option<std::path::PathBuf>,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        let tone = ToneSpec {
            freq_hz: 1400,
            duration_ms: 200,
            level_dbfs: -20,
            beeps: 1,
            gap_ms: 150,
        };
        ComplianceConfig {
            notify: Notify::None,
            start_tone: tone,
            barge_tone: ToneSpec { beeps: 2, ..tone },
            audit_log: Some("bibridge-audit.jsonl".into()),
        }
    }
}

/// `[sip]`: SIP transport, transaction timers and registrar limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// UDP listen address; `None` disables UDP (`udp = false`).
    pub udp: Option<SocketAddr>,
    /// TCP listen address; `None` disables TCP (`tcp = false`).
    pub tcp: Option<SocketAddr>,
    /// Host name used in the URIs bibridge generates (Contact, Via sent-by fallback, From of
    /// calls it originates).
    pub domain: String,
    /// RFC 3261 T1 (RTT estimate) in milliseconds.
    pub t1_ms: u64,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE requests and INVITE responses).
    pub t2_ms: u64,
    /// RFC 3261 T4 (maximum duration a message remains in the network).
    pub t4_ms: u64,
    /// Shortest registration accepted; shorter requests get `423 Interval Too Brief`.
    pub registrar_min_expires: u32,
    /// Longest registration granted; longer requests are shortened to this.
    pub registrar_max_expires: u32,
    /// Expiry granted when a REGISTER asks for none.
    pub registrar_default_expires: u32,
    /// Value of the `User-Agent`/`Server` headers.
    pub user_agent: String,
    /// A call that is not answered within this many seconds is given up (480 to the caller,
    /// CANCEL to the callee). Also bounds a callee that rang and then vanished.
    pub no_answer_timeout_s: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        let localhost = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
        SipConfig {
            udp: Some(localhost),
            tcp: Some(localhost),
            domain: "127.0.0.1".to_owned(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            registrar_min_expires: 60,
            registrar_max_expires: 3600,
            registrar_default_expires: 3600,
            user_agent: "bibridge/0.1".to_owned(),
            no_answer_timeout_s: 180,
        }
    }
}

/// `[rtp]`: where anchored media is received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpConfig {
    /// Local address of all RTP sockets (also advertised in SDP).
    pub address: IpAddr,
    /// First port of the range; even, because RTP takes even ports and RTCP the next odd one.
    pub port_min: u16,
    /// Last port of the range (inclusive).
    pub port_max: u16,
    /// A leg without any received RTP for this long is torn down; `0` disables the check.
    pub inactivity_timeout_s: u64,
    /// Gain applied to coaching/barging supervisors' voices in the agent's mix, in dB
    /// (−30…+12). Relayed voices are never attenuated.
    pub coach_gain_db: i32,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 20000,
            port_max: 29999,
            inactivity_timeout_s: 60,
            coach_gain_db: 0,
        }
    }
}

/// `[http]`: control API, operator console and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Listen address of the HTTP server; `None` (`listen = false`) disables it.
    pub listen: Option<SocketAddr>,
    /// How long a console login token lives.
    pub token_ttl_s: u64,
    /// Whether `/metrics` needs a login token too.
    pub metrics_auth: bool,
    /// Headers added to the INVITE that calls a supervisor's phone for a console session, so
    /// that it answers by itself (RFC 5373 and the widespread Call-Info variant).
    pub auto_answer_headers: Vec<(String, String)>,
    /// How long a supervisor's phone may ring for a console session before it is given up.
    pub answer_timeout_s: u64,
    /// The legal notice the console shows and asks to acknowledge.
    pub legal_notice: String,
}

/// The default notice shown by the console (`http.legal_notice`).
pub const DEFAULT_LEGAL_NOTICE: &str = "Monitoring or recording calls is subject to legal \
restrictions in most countries. Listen only where the law and your organisation's policy allow it, \
and only for the purpose they allow.";

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)),
            token_ttl_s: 8 * 3600,
            metrics_auth: false,
            auto_answer_headers: vec![
                ("Answer-Mode".to_owned(), "Auto".to_owned()),
                (
                    "Call-Info".to_owned(),
                    "<sip:bibridge>;answer-after=0".to_owned(),
                ),
            ],
            answer_timeout_s: 30,
            legal_notice: DEFAULT_LEGAL_NOTICE.to_owned(),
        }
    }
}

/// `[auth]`: digest authentication (RFC 3261 §22, RFC 8760).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Digest realm offered in challenges.
    pub realm: String,
    /// How long a nonce stays valid, in seconds.
    pub nonce_lifetime_s: u64,
    /// Digest algorithms challenged, in order (RFC 8760: strongest first), `"SHA-256"`/`"MD5"`.
    pub algorithms: Vec<String>,
    /// User-Agent substrings (case-insensitive) of clients that fail on a SHA-256 challenge even
    /// when an MD5 one is offered too (seen: baresip/libre, SIPp 3.6); they are challenged with
    /// MD5 only.
    pub md5_only_user_agents: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm: "bibridge".to_owned(),
            nonce_lifetime_s: 300,
            algorithms: vec!["SHA-256".to_owned(), "MD5".to_owned()],
            md5_only_user_agents: vec!["baresip".to_owned(), "sipp".to_owned()],
        }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes customer calls; may be monitored (subject to policy and Built-In-Bridge).
    Agent,
    /// May start monitor/coach/barge sessions (subject to policy).
    Supervisor,
}

impl Role {
    /// Every role with its configuration spelling.
    pub const ALL: [(&'static str, Role); 2] =
        [("agent", Role::Agent), ("supervisor", Role::Supervisor)];
}

/// A local user (an extension with a phone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The extension, digits only (`"1001"`); also the digest user name.
    pub extension: String,
    /// Digest password.
    pub password: String,
    /// Display name; defaults to the extension.
    pub name: String,
    /// Roles held by the user.
    pub roles: Vec<Role>,
    /// Groups the user belongs to; [`PolicyRule`]s refer to these.
    pub groups: Vec<String>,
    /// CUCM's per-device Built-In-Bridge: when false, monitoring this user's calls is refused (403).
    pub builtin_bridge: bool,
    /// CUCM's Privacy: when true the user's calls are private and must not be joined.
    pub privacy: bool,
    /// Static contact URI for a device that does not REGISTER, e.g. `sip:1001@127.0.0.1:5071`.
    pub contact: Option<String>,
}

impl User {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the user is a member of `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Transport used to reach a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// A trusted SIP peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Name used by routes (`target = "trunk:<name>"`).
    pub name: String,
    /// Source address AND port must match for a request to be trusted (no digest auth); also
    /// where calls routed to the trunk are sent.
    pub address: SocketAddr,
    /// Transport for calls to the trunk.
    pub transport: TrunkTransport,
}

/// Where a route sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// The local user whose extension is the (stripped) number; falls through to the next route
    /// when there is no such user.
    Users,
    /// The named trunk.
    Trunk(String),
}

/// One routing table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Dialled-number prefix; `""` matches everything.
    pub prefix: String,
    /// Destination.
    pub target: RouteTarget,
    /// Number of leading characters removed from the dialled number before sending.
    pub strip: usize,
}

/// Supervisor feature codes (`*81<ext>`) and the in-session DTMF digits that switch mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    /// Dial `<monitor><ext>` to silently monitor an agent.
    pub monitor: String,
    /// Dial `<coach><ext>` to coach (whisper to) an agent.
    pub coach: String,
    /// Dial `<barge><ext>` to barge into an agent's call.
    pub barge: String,
    /// In-session digit switching to monitor.
    pub dtmf_monitor: char,
    /// In-session digit switching to coach.
    pub dtmf_coach: char,
    /// In-session digit switching to barge.
    pub dtmf_barge: char,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            monitor: "*81".to_owned(),
            coach: "*82".to_owned(),
            barge: "*83".to_owned(),
            dtmf_monitor: '1',
            dtmf_coach: '2',
            dtmf_barge: '3',
        }
    }
}

impl FeatureCodes {
    /// Splits a dialled number into a session mode and the target extension, e.g. `"*821001"` →
    /// `(Coach, "1001")`. Validation guarantees no code is a prefix of another, so at most one
    /// code matches. An empty remainder is returned as is (the caller answers 404/484).
    pub fn parse_dialled<'a>(&self, dialled: &'a str) -> Option<(Mode, &'a str)> {
        [
            (self.monitor.as_str(), Mode::Monitor),
            (self.coach.as_str(), Mode::Coach),
            (self.barge.as_str(), Mode::Barge),
        ]
        .into_iter()
        .find_map(|(code, mode)| dialled.strip_prefix(code).map(|rest| (mode, rest)))
    }

    /// The mode an in-session DTMF digit switches to, if any.
    pub fn dtmf_mode(&self, digit: char) -> Option<Mode> {
        if digit == self.dtmf_monitor {
            Some(Mode::Monitor)
        } else if digit == self.dtmf_coach {
            Some(Mode::Coach)
        } else if digit == self.dtmf_barge {
            Some(Mode::Barge)
        } else {
            None
        }
    }
}

/// Session mode, named by who hears the supervisor (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Silent monitoring: nobody hears the supervisor.
    Monitor,
    /// Whisper: only the agent hears the supervisor.
    Coach,
    /// Three-way: agent and customer hear the supervisor.
    Barge,
}

impl Mode {
    /// Every mode with its configuration spelling.
    pub const ALL: [(&'static str, Mode); 3] = [
        ("monitor", Mode::Monitor),
        ("coach", Mode::Coach),
        ("barge", Mode::Barge),
    ];

    /// The lowercase name used in configuration, the API and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Coach => "coach",
            Mode::Barge => "barge",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Mode::from_str`]: the text is not a mode name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}, expected monitor, coach or barge")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, m)| *m)
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// One policy rule: members of group `supervisors` may use `modes` on members of group `agents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// Supervisor group.
    pub supervisors: String,
    /// Agent group.
    pub agents: String,
    /// Allowed modes.
    pub modes: Vec<Mode>,
    /// Who hears notification tones for sessions under this rule (`None`: `[compliance]`'s).
    pub notify: Option<Notify>,
}

/// Line and column (both 1-based, column counted in characters) of a problem in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// Dotted key such as `users[2].extension`; empty for TOML syntax errors.
    pub key: String,
    /// What was found and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = self.location {
            write!(f, "{}:{}: ", loc.line, loc.column)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// All problems found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file name given to [`Config::from_toml`].
    pub file: String,
    /// The problems, in file order (problems without a location last).
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    /// One line per error: `file:line:col: key: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            // With a location the error text starts with `line:col:`, which joins the file name
            // with a colon like compilers do; without one, separate with ": ".
            let sep = if e.location.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{e}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// The embedded lab configuration ([`LAB_CONFIG`]).
    ///
    /// # Panics
    /// Never in a released build: a test parses [`LAB_CONFIG`] and fails if it is invalid.
    pub fn lab() -> Config {
        match Config::from_toml(LAB_CONFIG, LAB_FILE) {
            Ok(c) => c,
            Err(e) => panic!("the embedded lab configuration is invalid:\n{e}"),
        }
    }

    /// Parses and validates configuration text; `file` is only used in error messages.
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
        })
    }

    /// The user with extension `ext`.
    pub fn user(&self, ext: &str) -> Option<&User> {
        self.users.iter().find(|u| u.extension == ext)
    }

    /// The trunk whose address is exactly `src` (IP and port); traffic from any other port of
    /// the same host is not trusted.
    pub fn trunk_for_source(&self, src: SocketAddr) -> Option<&Trunk> {
        // An IPv4 peer seen on a dual-stack socket shows up as ::ffff:a.b.c.d; compare canonical forms.
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let src = canon(src);
        self.trunks.iter().find(|t| canon(t.address) == src)
    }

    /// The trunk called `name`.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Routes a dialled number: the first route whose prefix matches, skipping a
    /// [`RouteTarget::Users`] route when the stripped number is not a local user. Returns the
    /// route and the number after stripping.
    pub fn route(&self, dialled: &str) -> Option<(&Route, String)> {
        self.routes.iter().find_map(|r| {
            if !dialled.starts_with(r.prefix.as_str()) {
                return None;
            }
            // `strip` counts characters; validation keeps it within the (ASCII) prefix, so this
            // never cuts into a multi-byte character, but stay safe for any input.
            let cut = dialled
                .char_indices()
                .nth(r.strip)
                .map_or(dialled.len(), |(i, _)| i);
            let number = dialled.get(cut..).unwrap_or_default().to_owned();
            match &r.target {
                RouteTarget::Users if self.user(&number).is_none() => None,
                _ => Some((r, number)),
            }
        })
    }

    /// Whether any user's password is the lab default `"lab" + extension` (the server warns).
    pub fn uses_lab_passwords(&self) -> bool {
        self.users
            .iter()
            .any(|u| u.password == format!("lab{}", u.extension))
    }

    /// Who hears notification tones when `supervisor` attaches to `agent` in `mode`: the first
    /// matching rule's `notify`, else `[compliance] notify`.
    pub fn notify_for(&self, supervisor: &User, agent: &User, mode: Mode) -> Notify {
        self.policy
            .iter()
            .find(|rule| {
                rule.modes.contains(&mode)
                    && supervisor.in_group(&rule.supervisors)
                    && agent.in_group(&rule.agents)
            })
            .and_then(|r| r.notify)
            .unwrap_or(self.compliance.notify)
    }

    /// Whether `supervisor` may use `mode` on `agent` by policy: the supervisor must hold the
    /// supervisor role, must not be the agent, and some rule must name a group of each with
    /// `mode`. Built-In-Bridge and privacy are separate refusals and are not checked here.
    pub fn may(&self, supervisor: &User, agent: &User, mode: Mode) -> bool {
        supervisor.has_role(Role::Supervisor)
            && supervisor.extension != agent.extension
            && self.policy.iter().any(|rule| {
                rule.modes.contains(&mode)
                    && supervisor.in_group(&rule.supervisors)
                    && agent.in_group(&rule.agents)
            })
    }
}

/// Byte range of an item in the source text.
type Span = Option<Range<usize>>;

/// A table (standard `[x]`/`[[x]]` or inline `{ .. }`) with its dotted path.
struct Tbl<'d> {
    path: String,
    table: &'d dyn TableLike,
    span: Span,
}

impl Tbl<'_> {
    fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How a value is described after "found".
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {:?}", s.value()),
        Value::Integer(i) => format!("integer {}", i.value()),
        Value::Float(x) => format!("float {}", x.value()),
        Value::Boolean(b) => format!("boolean {}", b.value()),
        Value::Datetime(d) => format!("datetime {}", d.value()),
        Value::Array(_) => "an array".to_owned(),
        Value::InlineTable(_) => "an inline table".to_owned(),
    }
}

fn describe_item(item: &Item) -> String {
    match item {
        Item::Value(v) => describe(v),
        Item::Table(_) => "a table".to_owned(),
        Item::ArrayOfTables(_) => "an array of tables".to_owned(),
        Item::None => "nothing".to_owned(),
    }
}

// Expectation texts, shared so that messages are consistent.
const EXP_NON_NEG_INT: &str = "a non-negative integer";
const EXP_ADDR: &str = "an \"IP:port\" string such as \"127.0.0.1:5060\"";
const EXP_ADDR_OR_FALSE: &str = "an \"IP:port\" string such as \"127.0.0.1:5060\", or false";
const EXP_STRING: &str = "a non-empty string";
const EXP_BOOL: &str = "true or false";
const EXP_DIGITS: &str = "a string of digits";
const EXP_DIALABLE: &str = "a non-empty string of 0-9, * and #";
const EXP_DTMF: &str = "a one-character string among 0-9, * and #";
const DTMF_CHARS: &str = "0123456789*#";

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_integer().and_then(|i| T::try_from(i).ok())
}

fn positive<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_integer()
        .filter(|i| *i > 0)
        .and_then(|i| T::try_from(i).ok())
}

fn parsed<T: FromStr>(v: &Value) -> Option<T> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn one_of<'a, T: Copy>(names: &'a [(&'a str, T)]) -> impl Fn(&Value) -> Option<T> + 'a {
    move |v| {
        let s = v.as_str()?;
        names.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }
}

fn expected_one_of<T>(names: &[(&str, T)]) -> String {
    let quoted: Vec<String> = names.iter().map(|(n, _)| format!("{n:?}")).collect();
    format!("one of {}", quoted.join(", "))
}

/// Accumulates errors while walking the document.
struct Parser<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl Parser<'_> {
    fn location(&self, span: &Span) -> Option<Location> {
        let start = span.as_ref()?.start;
        let before = self.text.get(..start)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..)?.chars().count() + 1;
        Some(Location { line, column })
    }

    fn error(&mut self, span: &Span, key: impl Into<String>, message: impl Into<String>) {
        let location = self.location(span);
        self.errors.push(ConfigError {
            location,
            key: key.into(),
            message: message.into(),
        });
    }

    fn into_errors(mut self, file: &str) -> ConfigErrors {
        // File order reads best; errors without a location (defaults involved) go last.
        self.errors
            .sort_by_key(|e| (e.location.is_none(), e.location));
        ConfigErrors {
            file: file.to_owned(),
            errors: self.errors,
        }
    }

    /// `item` as a table, or an error naming `path`.
    fn table<'d>(&mut self, item: &'d Item, path: &str) -> Option<Tbl<'d>> {
        let (table, span): (&dyn TableLike, Span) = match item {
            Item::Table(t) => (t, t.span()),
            Item::Value(Value::InlineTable(t)) => (t, t.span()),
            other => {
                self.error(
                    &other.span(),
                    path,
                    format!("expected a table, found {}", describe_item(other)),
                );
                return None;
            }
        };
        Some(Tbl {
            path: path.to_owned(),
            table,
            span,
        })
    }

    /// A section that is optional: absent → `None` without error.
    fn section<'d>(
        &mut self,
        item: Option<&'d Item>,
        path: &str,
        keys: &[&str],
    ) -> Option<Tbl<'d>> {
        let t = self.table(item?, path)?;
        self.check_keys(&t, keys);
        Some(t)
    }

    /// An array of tables (`[[path]]` or `path = [{..}, ..]`); absent → empty.
    fn table_list<'d>(&mut self, item: Option<&'d Item>, path: &str) -> Vec<Tbl<'d>> {
        let mut out = Vec::new();
        match item {
            None => {}
            Some(Item::ArrayOfTables(a)) => {
                for (i, t) in a.iter().enumerate() {
                    out.push(Tbl {
                        path: format!("{path}[{i}]"),
                        table: t,
                        span: t.span(),
                    });
                }
            }
            Some(Item::Value(Value::Array(a))) => {
                for (i, v) in a.iter().enumerate() {
                    let key = format!("{path}[{i}]");
                    match v {
                        Value::InlineTable(t) => out.push(Tbl {
                            path: key,
                            table: t,
                            span: t.span(),
                        }),
                        other => self.error(
                            &other.span(),
                            key,
                            format!("expected a table, found {}", describe(other)),
                        ),
                    }
                }
            }
            Some(other) => self.error(
                &other.span(),
                path,
                format!(
                    "expected an array of tables ([[{path}]] sections), found {}",
                    describe_item(other)
                ),
            ),
        }
        out
    }

    /// Rejects keys not in `known`, so that typos do not silently fall back to defaults.
    fn check_keys(&mut self, t: &Tbl<'_>, known: &[&str]) {
        for (key, _) in t.table.iter() {
            if !known.contains(&key) {
                let span = t.table.key(key).and_then(|k| k.span());
                self.error(
                    &span,
                    t.key(key),
                    format!("unknown key {key:?}; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    /// An optional value: absent → `None`; present but not convertible → error and `None`.
    fn get<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<(T, Span)> {
        let item = t.table.get(key)?;
        match item {
            Item::Value(v) => match conv(v) {
                Some(x) => Some((x, v.span())),
                None => {
                    self.error(
                        &v.span(),
                        t.key(key),
                        format!("expected {expected}, found {}", describe(v)),
                    );
                    None
                }
            },
            other => {
                self.error(
                    &other.span(),
                    t.key(key),
                    format!("expected {expected}, found {}", describe_item(other)),
                );
                None
            }
        }
    }

    /// A required value: absent → error.
    fn require<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<(T, Span)> {
        if !t.table.contains_key(key) {
            self.error(&t.span, t.key(key), format!("missing; expected {expected}"));
            return None;
        }
        self.get(t, key, expected, conv)
    }

    /// An optional array whose elements each go through `conv`; errors name `key[i]`.
    fn get_array<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Option<Vec<(T, Span)>> {
        let item = t.table.get(key)?;
        let Some(arr) = item.as_array() else {
            self.error(
                &item.span(),
                t.key(key),
                format!(
                    "expected an array of {expected}, found {}",
                    describe_item(item)
                ),
            );
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, v) in arr.iter().enumerate() {
            match conv(v) {
                Some(x) => out.push((x, v.span())),
                None => self.error(
                    &v.span(),
                    format!("{}[{i}]", t.key(key)),
                    format!("expected {expected}, found {}", describe(v)),
                ),
            }
        }
        Some(out)
    }

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
                "metrics_auth",
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
            if let Some((v, _)) = self.get(&t, "metrics_auth", EXP_BOOL, Value::as_bool) {
                c.metrics_auth = v;
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

/// Stores a parsed value into `slot` and returns its span (`None` when the default stays).
fn set<T>(slot: &mut T, got: Option<(T, Span)>) -> Span {
    let (v, span) = got?;
    *slot = v;
    span
}

/// Values without their spans, first occurrence kept (repeating a role or group is harmless).
fn dedup<T: PartialEq>(items: Vec<(T, Span)>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for (x, _) in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// A light check that a static contact is a SIP URI with a host; the SIP stack parses it fully.
fn is_sip_uri(s: &str) -> bool {
    let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:"));
    let Some(rest) = rest else { return false };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    !host.is_empty() && !s.chars().any(char::is_whitespace)
}
