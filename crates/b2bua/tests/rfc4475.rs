//! RFC 4475 (SIP torture test messages), fed byte for byte to the engine built from the embedded
//! lab config. One row per message (a message may have a second row from the trunk where a
//! trusted peer gets a different answer): the RFC section, the source, the answer the RFC names
//! or implies for bibridge (a UAS/registrar/B2BUA, never a proxy) and why.
//!
//! The messages in `tests/rfc4475/` are the RFC's Appendix A archive, decoded as the RFC says
//! (see `tests/rfc4475/README.md`): CRLF line ends and binary bytes exactly as published.
//!
//! Every row is asserted. Every final response is also checked for a To tag (RFC 3261 §8.2.6.2,
//! when the request had a To) and, on a 501, for `Allow` (RFC 3261 §21.5.2, RFC 4475 §3.1.1.2).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::PathBuf;

use bibridge_sip::Transport;

/// An untrusted source (no trunk): requests are challenged before routing.
const PEER: &str = "127.0.0.1:5070";

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// One final response, its code one of these (1xx are ignored).
    Answer(&'static [u16]),
    /// One final response with one of these codes, and it answers the CSeq method given (the
    /// datagram holds a second message that must be ignored).
    AnswerTo(&'static [u16], &'static str),
    /// A well-formed response that matches no transaction: `bibridge_sip::message::parse`
    /// accepts it, and nothing is sent.
    Ignored,
    /// An invalid response (or one nobody can be answered about): nothing is sent.
    Dropped,
}

struct Case {
    /// The RFC's short name = the file `tests/rfc4475/<name>.dat`.
    name: &'static str,
    /// RFC 4475 section.
    section: &'static str,
    /// Source address the datagram comes from ([`PEER`] or the lab trunk [`TRUNK`]).
    from: &'static str,
    expect: Expect,
    /// Why, in one line.
    why: &'static str,
}

use Expect::*;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- §3.1.1 valid messages: parsed and answered by the normal logic, never 400 ----
    Case { name: "wsinv",      section: "3.1.1.1",  from: PEER,  expect: Answer(&[481]),                    why: "well-formed (folding, LWS in Via); its To has a tag and no dialog matches: 481" },
    Case { name: "wsinv",      section: "3.1.1.1",  from: TRUNK, expect: Answer(&[481]),                    why: "the same from the trusted trunk: in-dialog (To tag), no such dialog: 481" },
    Case { name: "intmeth",    section: "3.1.1.2",  from: PEER,  expect: Answer(&[501]),                    why: "unknown method of token chars: an endpoint answers 501 with Allow" },
    Case { name: "esc01",      section: "3.1.1.3",  from: PEER,  expect: Answer(&[401]),                    why: "valid %-escapes; untrusted INVITE is challenged" },
    Case { name: "esc01",      section: "3.1.1.3",  from: TRUNK, expect: Answer(&[404]),                    why: "valid %-escapes; from the trunk: no such user or route" },
    Case { name: "escnull",    section: "3.1.1.4",  from: PEER,  expect: Answer(&[401, 404]),               why: "valid REGISTER with %00 in URIs; unknown AOR (404 now, 401 once finding 4 hides users)" },
    Case { name: "esc02",      section: "3.1.1.5",  from: PEER,  expect: Answer(&[501]),                    why: "RE%47IST%45R is an unknown method, not REGISTER: 501" },
    Case { name: "lwsdisp",    section: "3.1.1.6",  from: PEER,  expect: Answer(&[200]),                    why: "no LWS before < is accepted (spec bug); OPTIONS answered 200" },
    Case { name: "longreq",    section: "3.1.1.7",  from: PEER,  expect: Answer(&[401]),                    why: "long values, 34 Vias without branch; untrusted INVITE is challenged" },
    Case { name: "longreq",    section: "3.1.1.7",  from: TRUNK, expect: Answer(&[404]),                    why: "long values; from the trunk: no such user or route" },
    Case { name: "dblreq",     section: "3.1.1.8",  from: PEER,  expect: AnswerTo(&[401, 404], "REGISTER"), why: "REGISTER answered, trailing INVITE octets in the datagram ignored (§18.3)" },
    Case { name: "semiuri",    section: "3.1.1.9",  from: PEER,  expect: Answer(&[200, 404]),               why: "user part `user;par=u@example.net` is valid; OPTIONS answered (200, or 404 for the URI)" },
    Case { name: "transports", section: "3.1.1.10", from: PEER,  expect: Answer(&[200]),                    why: "SCTP/TLS/UNKNOWN transports in lower Vias are fine; OPTIONS 200" },
    Case { name: "mpart01",    section: "3.1.1.11", from: PEER,  expect: Answer(&[405]),                    why: "binary multipart body framed by Content-Length; MESSAGE known but not served: 405" },
    Case { name: "unreason",   section: "3.1.1.12", from: PEER,  expect: Ignored,                           why: "200 with UTF-8 reason phrase is well-formed; stray response absorbed" },
    Case { name: "noreason",   section: "3.1.1.13", from: PEER,  expect: Ignored,                           why: "100 with empty reason phrase is well-formed; stray response absorbed" },
    // ---- §3.1.2 invalid messages ----
    Case { name: "badinv01",   section: "3.1.2.1",  from: PEER,  expect: Answer(&[400]),                    why: "extraneous ;;,;,, in Via and ;;;; in Contact: 400" },
    Case { name: "clerr",      section: "3.1.2.2",  from: PEER,  expect: Answer(&[400]),                    why: "Content-Length 9999 larger than the UDP datagram: 400" },
    Case { name: "ncl",        section: "3.1.2.3",  from: PEER,  expect: Answer(&[400]),                    why: "negative Content-Length: an error (400)" },
    Case { name: "scalar02",   section: "3.1.2.4",  from: PEER,  expect: Answer(&[400]),                    why: "CSeq > 2**32-1: 400" },
    Case { name: "scalarlg",   section: "3.1.2.5",  from: PEER,  expect: Dropped,                           why: "response with overlarge CSeq/Retry-After/Warning: discarded" },
    Case { name: "quotbal",    section: "3.1.2.6",  from: PEER,  expect: Answer(&[400]),                    why: "unterminated quoted string in To display name: 400" },
    Case { name: "ltgtruri",   section: "3.1.2.7",  from: PEER,  expect: Answer(&[400]),                    why: "Request-URI enclosed in <>: 400" },
    Case { name: "lwsruri",    section: "3.1.2.8",  from: PEER,  expect: Answer(&[400]),                    why: "LWS inside the Request-URI: 400" },
    Case { name: "lwsstart",   section: "3.1.2.9",  from: PEER,  expect: Answer(&[400, 401]),               why: "several SP in the request line: reject (400) or be liberal (challenge)" },
    Case { name: "trws",       section: "3.1.2.10", from: PEER,  expect: Answer(&[400, 200]),               why: "SP after SIP-Version: reject (400) or be liberal (OPTIONS 200)" },
    Case { name: "escruri",    section: "3.1.2.11", from: PEER,  expect: Answer(&[400, 401]),               why: "escaped headers in the SIP Request-URI: 400, or ignore them (challenge)" },
    Case { name: "baddate",    section: "3.1.2.12", from: PEER,  expect: Answer(&[401, 400]),               why: "non-GMT Date; bibridge ignores Date, so no reason to reject (400 tolerated)" },
    Case { name: "regbadct",   section: "3.1.2.13", from: PEER,  expect: Answer(&[400, 401, 404]),          why: "Contact URI with ?header not in <>: 400 reasonable; unknown AOR answered first is fine" },
    Case { name: "badaspec",   section: "3.1.2.14", from: PEER,  expect: Answer(&[400, 200]),               why: "spaces inside <addr-spec>: 400 reasonable, liberal may ignore them (200)" },
    Case { name: "baddn",      section: "3.1.2.15", from: PEER,  expect: Answer(&[400, 200]),               why: "unquoted non-token display names: 400 reasonable, liberal may infer quotes" },
    Case { name: "badvers",    section: "3.1.2.16", from: PEER,  expect: Answer(&[505]),                    why: "SIP/7.0: 505 Version Not Supported" },
    Case { name: "mismatch01", section: "3.1.2.17", from: PEER,  expect: Answer(&[400]),                    why: "OPTIONS with CSeq INVITE: 400" },
    Case { name: "mismatch02", section: "3.1.2.18", from: PEER,  expect: Answer(&[501]),                    why: "unknown method with mismatched CSeq: 501 preferred (400 acceptable)" },
    Case { name: "bigcode",    section: "3.1.2.19", from: PEER,  expect: Dropped,                           why: "status code 4294967301 > 699: dropped" },
    // ---- §3.2 transaction layer ----
    Case { name: "badbranch",  section: "3.2.1",    from: PEER,  expect: Answer(&[400, 200]),               why: "branch is the bare magic cookie: 400, or fall back to RFC 2543 matching (200)" },
    // ---- §3.3 application layer (bibridge as UAS / registrar) ----
    Case { name: "insuf",      section: "3.3.1",    from: PEER,  expect: Answer(&[400]),                    why: "no Call-ID, From, To: 400 (and no crash)" },
    Case { name: "unkscm",     section: "3.3.2",    from: PEER,  expect: Answer(&[416]),                    why: "unknown Request-URI scheme: 416 Unsupported URI Scheme" },
    Case { name: "novelsc",    section: "3.3.3",    from: PEER,  expect: Answer(&[416]),                    why: "soap.beep: never meaningful to bibridge: 416" },
    Case { name: "unksm2",     section: "3.3.4",    from: PEER,  expect: Answer(&[400]),                    why: "registrar: To (AOR) must be a SIP/SIPS URI: 400" },
    Case { name: "bext01",     section: "3.3.5",    from: PEER,  expect: Answer(&[420]),                    why: "Require of unknown extensions: 420 with Unsupported" },
    Case { name: "invut",      section: "3.3.6",    from: PEER,  expect: Answer(&[415]),                    why: "endpoint, unknown body type: 415" },
    Case { name: "regaut01",   section: "3.3.7",    from: PEER,  expect: Answer(&[401, 404]),               why: "unknown auth scheme: challenge (401); unknown AOR 404 until finding 4" },
    Case { name: "multi01",    section: "3.3.8",    from: PEER,  expect: Answer(&[400]),                    why: "two Call-ID, To, From, CSeq, Max-Forwards: 400" },
    Case { name: "mcl01",      section: "3.3.9",    from: PEER,  expect: Answer(&[400]),                    why: "conflicting Content-Length values: an error (400)" },
    Case { name: "bcast",      section: "3.3.10",   from: PEER,  expect: Ignored,                           why: "well-formed 200 with a broadcast second Via: discarded by an endpoint" },
    Case { name: "zeromf",     section: "3.3.11",   from: PEER,  expect: Answer(&[200]),                    why: "Max-Forwards 0 at an endpoint: processed as usual (OPTIONS 200), not 483" },
    Case { name: "cparam01",   section: "3.3.12",   from: PEER,  expect: Answer(&[401, 404]),               why: "valid REGISTER (contact-param); unknown AOR, unauthenticated: not 400" },
    Case { name: "cparam02",   section: "3.3.13",   from: PEER,  expect: Answer(&[401, 404]),               why: "valid REGISTER (url-param); unknown AOR, unauthenticated: not 400" },
    Case { name: "regescrt",   section: "3.3.14",   from: PEER,  expect: Answer(&[401, 404]),               why: "valid REGISTER (escaped header in <> Contact); unknown AOR: not 400" },
    Case { name: "sdp01",      section: "3.3.15",   from: PEER,  expect: Answer(&[401, 406, 400]),          why: "untrusted: challenge first (RFC 3261 §8.2 order), or 406/400 for the Accept" },
    Case { name: "sdp01",      section: "3.3.15",   from: TRUNK, expect: Answer(&[406, 400]),               why: "Accept without application/sdp: 406 (Warning 399) or 400" },
    // ---- §3.4 backward compatibility ----
    Case { name: "inv2543",    section: "3.4.1",    from: PEER,  expect: Answer(&[401]),                    why: "RFC 2543 INVITE (no branch, From tag, Content-Length, Max-Forwards) accepted; challenged" },
    Case { name: "inv2543",    section: "3.4.1",    from: TRUNK, expect: Answer(&[404]),                    why: "RFC 2543 INVITE from the trunk: routed, no such user or route" },
    // ---- Appendix A only (in the archive, not described in §3) ----
    Case { name: "test",       section: "A (archive)", from: PEER, expect: Dropped,                         why: "no SIP-Version, a header without colon, and no Via: no response can be formed" },
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475")
}

fn load(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the engine did with one datagram.
#[derive(Debug)]
struct Outcome {
    /// First line of every final response sent, with its CSeq value.
    finals: Vec<(u16, String, String)>,
    /// Header problems of the final responses (RFC 3261 §8.2.6.2 To tag, §21.5.2 Allow on 501).
    header_faults: Vec<String>,
    /// Everything sent (first lines), 1xx and requests included.
    sent: Vec<String>,
    /// Whether `bibridge_sip::message::parse` accepts the message.
    parses: bool,
}

fn feed(data: &[u8], from: &str) -> Outcome {
    let mut h = H::new();
    h.e.handle_datagram(h.now, data, from.parse().unwrap(), Transport::Udp);
    let mut finals = Vec::new();
    let mut header_faults = Vec::new();
    let mut sent = Vec::new();
    while let Some(t) = h.e.poll_transmit() {
        let text = String::from_utf8_lossy(&t.data).into_owned();
        let first = text.lines().next().unwrap_or_default().to_string();
        if let Some(code) = first
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
        {
            if code >= 200 {
                let cseq = text
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .unwrap_or_default()
                    .to_string();
                // A request without To (insuf) has nothing to tag; a malformed To (quotbal) gets
                // the tag appended as is.
                let to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("To:").or_else(|| l.strip_prefix("t:")));
                let tagged = |to: &str| {
                    bibridge_sip::message::tag_of(to).is_some()
                        || to.to_ascii_lowercase().contains(";tag=")
                };
                if let Some(to) = to.filter(|to| !tagged(to)) {
                    header_faults.push(format!("{code} without a To tag: To:{to}"));
                }
                if code == 501 && !text.lines().any(|l| l.starts_with("Allow: ")) {
                    header_faults.push("501 without Allow".into());
                }
                finals.push((code, first.clone(), cseq));
            }
        }
        sent.push(first);
    }
    Outcome {
        finals,
        header_faults,
        sent,
        parses: bibridge_sip::message::parse(data).is_ok(),
    }
}

fn verdict(expect: Expect, o: &Outcome) -> bool {
    match expect {
        Answer(codes) => {
            o.finals.len() == 1 && codes.contains(&o.finals[0].0) && o.header_faults.is_empty()
        }
        AnswerTo(codes, method) => {
            o.finals.len() == 1
                && o.header_faults.is_empty()
                && codes.contains(&o.finals[0].0)
                && o.finals[0].2.split_whitespace().nth(1) == Some(method)
        }
        Ignored => o.parses && o.sent.is_empty(),
        Dropped => o.sent.is_empty(),
    }
}

fn describe(o: &Outcome) -> String {
    if o.sent.is_empty() {
        return format!(
            "nothing sent (parser {})",
            if o.parses { "accepts" } else { "rejects" }
        );
    }
    if !o.header_faults.is_empty() {
        return format!("{:?}: {:?}", o.sent, o.header_faults);
    }
    match o.finals.as_slice() {
        [] => format!("no final response; sent {:?}", o.sent),
        [(_, line, _)] => line.clone(),
        many => format!(
            "{} final responses: {:?}",
            many.len(),
            many.iter().map(|f| &f.1).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn rfc4475_torture_messages() {
    let mut failed = Vec::new();
    for c in CASES {
        let o = feed(&load(c.name), c.from);
        let ok = verdict(c.expect, &o);
        let src = if c.from == TRUNK { "trunk" } else { "peer" };
        if !ok {
            failed.push(format!(
                "{} ({src}, §{}): expected {:?} ({}), got {}",
                c.name,
                c.section,
                c.expect,
                c.why,
                describe(&o)
            ));
        }
        println!(
            "{:<10} §{:<11} {:<5} expect {:<28} got {:<60} {}",
            c.name,
            c.section,
            src,
            format!("{:?}", c.expect),
            describe(&o),
            if ok { "ok" } else { "FAIL" }
        );
    }
    println!("{} rows, {} answered wrongly", CASES.len(), failed.len());
    assert!(
        failed.is_empty(),
        "RFC 4475 messages answered wrongly:\n{}",
        failed.join("\n")
    );
}

/// Every file of the corpus has a row, every row a file, and the files are the archive's bytes
/// (CRLF line ends survived checkout).
#[test]
fn rfc4475_corpus_is_complete_and_intact() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".dat").map(str::to_string)
        })
        .collect();
    files.sort();
    let mut rows: Vec<String> = CASES.iter().map(|c| c.name.to_string()).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(files, rows, "corpus files vs table rows");
    assert_eq!(
        files.len(),
        50,
        "49 messages of §3 and test.dat of the archive"
    );
    for name in &files {
        let data = load(name);
        let bare_lf = data
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
            .count();
        // mpart01's binary body holds three 0x0A octets that are not line ends.
        let allowed = if name == "mpart01" { 3 } else { 0 };
        assert_eq!(
            bare_lf, allowed,
            "{name}.dat: bare LF (line ends converted?)"
        );
    }
    // Sizes of a few messages as published (catches any rewrite of the bytes).
    for (name, len) in [
        ("wsinv", 1001),
        ("intmeth", 641),
        ("mpart01", 1290),
        ("longreq", 3515),
        ("dblreq", 750),
    ] {
        assert_eq!(load(name).len(), len, "{name}.dat size");
    }
}

/// sdp01's 406 is for an Accept that rules SDP out: one that admits it (by a wildcard, with
/// parameters, in any case) is routed as usual (404 from the trunk: no such user).
#[test]
fn accept_admitting_sdp_is_not_refused() {
    let sdp01 = String::from_utf8(load("sdp01")).unwrap();
    for accept in [
        "Accept: text/x, Application/*;q=0.5",
        "Accept: */*",
        "Accept: application/SDP",
        "Accept: ",
    ] {
        let msg = sdp01.replace("Accept: text/nobodyKnowsThis", accept);
        let o = feed(msg.as_bytes(), TRUNK);
        assert_eq!(
            o.finals.iter().map(|f| f.0).collect::<Vec<_>>(),
            [404],
            "{accept}: {o:?}"
        );
    }
}
