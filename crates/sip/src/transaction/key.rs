//! Transaction identity: [`TxKey`] and how requests map to it (RFC 3261 §17.1.3, §17.2.3), and the
//! dialog-level key that matches an ACK to a 2xx.

use std::hash::{Hash, Hasher};

use rsip::{Method, Request};

use crate::message;

/// The RFC 3261 branch magic cookie.
pub(super) const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies a transaction (RFC 3261 §17.1.3, §17.2.3).
///
/// Client transactions are keyed by top-Via branch + CSeq method; server transactions by branch +
/// sent-by + method, where an ACK maps to the INVITE it acknowledges and a CANCEL keeps its own
/// method (so it gets its own transaction next to the INVITE's). For requests whose branch lacks
/// the `z9hG4bK` cookie (RFC 2543 peers), the branch is replaced by a synthetic value built from
/// Call-ID, CSeq number, From tag and Via sent-by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxKey {
    pub(super) branch: String,
    pub(super) method: Method,
    pub(super) sent_by: String,
    pub(super) is_server: bool,
}

impl Hash for TxKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // rsip::Method does not implement Hash; its index is equivalent for Eq.
        self.branch.hash(state);
        method_index(self.method).hash(state);
        self.sent_by.hash(state);
        self.is_server.hash(state);
    }
}

fn method_index(m: Method) -> u8 {
    match m {
        Method::Ack => 0,
        Method::Bye => 1,
        Method::Cancel => 2,
        Method::Info => 3,
        Method::Invite => 4,
        Method::Message => 5,
        Method::Notify => 6,
        Method::Options => 7,
        Method::PRack => 8,
        Method::Publish => 9,
        Method::Refer => 10,
        Method::Register => 11,
        Method::Subscribe => 12,
        Method::Update => 13,
    }
}

impl TxKey {
    /// The branch (or the synthetic RFC 2543 key).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The transaction's method (INVITE for the transaction an ACK to a non-2xx belongs to).
    pub fn method(&self) -> Method {
        self.method
    }

    /// Top Via sent-by of the request (server transactions only; empty for client ones).
    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    /// True for server transactions.
    pub fn is_server(&self) -> bool {
        self.is_server
    }

    /// Same transaction identity with another method (used to find the INVITE of a CANCEL).
    pub(super) fn with_method(&self, method: Method) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }
}

/// Dialog-level identity of an ACK for a 2xx: Call-ID, CSeq number, From tag.
pub(super) type AckKey = (String, u32, String);

/// Call-ID + CSeq number + From tag of a request (the From tag may be empty for RFC 2543 peers).
pub(super) fn ack_key_of(headers: &rsip::Headers) -> Option<AckKey> {
    let call_id = message::call_id(headers)?;
    let (num, _) = message::cseq(headers)?;
    Some((call_id, num, message::from_tag(headers).unwrap_or_default()))
}

/// Server transaction key of an incoming request (RFC 3261 §17.2.3). ACK maps to INVITE.
pub(super) fn server_key(request: &Request) -> Option<TxKey> {
    let via = message::top_via(&request.headers)?;
    let parts = message::via_parts(&via)?;
    let sent_by = parts.sent_by.to_ascii_lowercase();
    let (num, _) = message::cseq(&request.headers)?;
    let method = match request.method {
        Method::Ack => Method::Invite,
        m => m,
    };
    let branch = match message::top_via_branch(&request.headers) {
        Some(b) if b.starts_with(MAGIC_COOKIE) => b,
        // RFC 2543 peer: best effort on Call-ID + CSeq number + From tag + Via sent-by.
        _ => format!(
            "rfc2543|{}|{}|{}",
            message::call_id(&request.headers).unwrap_or_default(),
            num,
            message::from_tag(&request.headers).unwrap_or_default()
        ),
    };
    Some(TxKey {
        branch,
        method,
        sent_by,
        is_server: true,
    })
}
