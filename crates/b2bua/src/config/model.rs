//! The configuration model: the types a parsed configuration is made of.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
    /// What survives a restart besides the audit log (`[state]`).
    pub state: StateConfig,
}

/// `[state]`: where bibridge keeps what must survive a restart (the registrar's bindings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateConfig {
    /// The state directory.
    pub dir: StateDir,
}

/// `[state] dir`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StateDir {
    /// Key absent: `<audit log>.state` next to the audit log (`bibridge-audit.state` in the lab),
    /// none when the audit log is disabled.
    #[default]
    NextToAuditLog,
    /// This directory.
    At(std::path::PathBuf),
    /// `dir = false`: nothing kept; phones re-register after a restart.
    Off,
}

impl Config {
    /// The state directory in effect, if any (see [`StateDir`]).
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        match &self.state.dir {
            StateDir::At(p) => Some(p.clone()),
            StateDir::Off => None,
            StateDir::NextToAuditLog => self
                .compliance
                .audit_log
                .as_ref()
                .map(|p| p.with_extension("state")),
        }
    }
}

/// Who hears a notification tone when a supervisor attaches (docs/design.md §5).
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
    /// Config names of the choices, for parsing and messages.
    pub const ALL: [(&'static str, Notify); 3] = [
        ("none", Notify::None),
        ("agent", Notify::Agent),
        ("all", Notify::All),
    ];
}

/// A notification tone: `beeps` bursts of `duration_ms` at `freq_hz`, `gap_ms` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneSpec {
    /// Tone frequency.
    pub freq_hz: u32,
    /// Length of one beep.
    pub duration_ms: u32,
    /// Level relative to full scale (negative).
    pub level_dbfs: i32,
    /// Number of beeps.
    pub beeps: u32,
    /// Silence between beeps.
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
    /// Refusal records for wrong digest credentials on a feature code, per source address and
    /// minute; more are summed up in one record (anybody can cause these).
    pub unauthenticated_refusals_per_minute: u32,
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
            unauthenticated_refusals_per_minute: 10,
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
    /// Most SIP/TCP connections open at once (accepted and opened); further ones are accepted
    /// and closed at once. Capped at start-up at half the process's descriptor limit.
    pub tcp_max_connections: usize,
    /// Most SIP/TCP connections accepted from one IP address.
    pub tcp_max_per_address: usize,
    /// A SIP/TCP connection on which nothing arrives for this long is closed (RFC 5626
    /// keep-alives count).
    pub tcp_idle_timeout_s: u64,
    /// A SIP message begun on a TCP connection must be complete within this long (slowloris).
    pub tcp_message_timeout_s: u64,
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
            tcp_max_connections: 4096,
            tcp_max_per_address: 32,
            tcp_idle_timeout_s: 300,
            tcp_message_timeout_s: 10,
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
    /// Which sources a leg accepts media from (docs/reliability/latching.md).
    pub latching: Latching,
    /// With [`Latching::Learn`]: how long after the offer/answer that set a leg's SDP the first
    /// source with a negotiated payload type may be latched, in milliseconds.
    pub learn_window_ms: u64,
}

/// `[rtp] latching`: where a leg's RTP and RTCP may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latching {
    /// Only from the address and port the leg's SDP names (RTCP: that host, port + 1 or the
    /// RTP port). Nothing is learned.
    #[default]
    Strict,
    /// As strict, and also the first source (any address) seen within `learn_window_ms` after
    /// the leg's offer/answer whose payload type was negotiated: phones behind NAT. Once
    /// latched, never moved by packets, only by a new SDP address.
    Learn,
}

impl Latching {
    /// Every mode with its config spelling.
    pub const ALL: [(&'static str, Latching); 2] =
        [("strict", Latching::Strict), ("learn", Latching::Learn)];
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 20000,
            port_max: 29999,
            inactivity_timeout_s: 60,
            coach_gain_db: 0,
            latching: Latching::Strict,
            learn_window_ms: 2000,
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
    /// A bearer token that may read `/metrics` (besides a supervisor's login); `None`: only
    /// supervisors' logins.
    pub metrics_token: Option<String>,
    /// A request's header must arrive within this long (slowloris); also closes idle
    /// keep-alive connections.
    pub header_timeout_s: u64,
    /// A request's body must arrive within this long once its header has.
    pub body_timeout_s: u64,
    /// Most HTTP connections open at once; capped at start-up at an eighth of the process's
    /// descriptor limit.
    pub max_connections: usize,
    /// Most HTTP connections open from one IP address.
    pub max_connections_per_address: usize,
    /// Live login tokens per supervisor; a further login evicts the oldest.
    pub max_logins_per_user: usize,
    /// Open event streams per supervisor (all their logins together).
    pub max_streams_per_user: usize,
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
            metrics_token: None,
            header_timeout_s: 10,
            body_timeout_s: 10,
            max_connections: 256,
            max_connections_per_address: 32,
            max_logins_per_user: 8,
            max_streams_per_user: 8,
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

/// Session mode, named by who hears the supervisor (docs/design.md §3).
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
