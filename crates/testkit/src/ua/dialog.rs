//! Call and dialog state: the test's [`CallHandle`] and [`IncomingCall`], what the UA itself
//! remembers per dialog, and in-dialog request targeting (RFC 3261 §12.2.1.1).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::absorb::TxKey;
use super::{uri_has_lr, uri_of, OutRequest, TestUa, UaError};

/// The client INVITE transaction in progress on a call.
#[derive(Debug, Clone)]
pub(super) struct InviteTx {
    pub(super) req: OutRequest,
    pub(super) bytes: Vec<u8>,
    pub(super) dest: SocketAddr,
    /// Initial INVITE (route set is learnt from its 2xx) versus re-INVITE.
    pub(super) initial: bool,
    /// Sent without SDP: the 2xx carries the offer and our ACK the answer.
    pub(super) offerless: bool,
    pub(super) got_response: bool,
    pub(super) interval: Duration,
    pub(super) next_retx: Instant,
    pub(super) auth_tried: bool,
}

/// A call (dialog, or a dialog being set up) as seen by the test.
#[derive(Debug, Clone)]
pub struct CallHandle {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (From tag as caller, To tag as callee).
    pub local_tag: String,
    /// The peer's tag, once a response (or the INVITE, as callee) carried one.
    pub remote_tag: Option<String>,
    /// Our party (name-addr without tag) as used in From of our in-dialog requests.
    pub local_uri: String,
    /// The peer's party (name-addr without tag) as used in To of our in-dialog requests.
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route set (Record-Route entries in the order used for Route headers).
    pub route_set: Vec<String>,
    /// CSeq of our last request in this dialog.
    pub local_cseq: u32,
    /// CSeq of the peer's INVITE (callee side).
    pub remote_cseq: Option<u32>,
    /// Our current SDP.
    pub local_sdp: Option<String>,
    /// The peer's last SDP (from a 1xx/2xx, or the INVITE as callee).
    pub remote_sdp: Option<String>,
    /// Status codes of the provisional responses received for the last INVITE, 100 included.
    pub provisionals: Vec<u16>,
    /// Status of the last INVITE's final response.
    pub final_status: Option<u16>,
    /// True when we answered this call.
    pub is_uas: bool,
    pub(super) invite: Option<InviteTx>,
    pub(super) auth: bool,
}

impl CallHandle {
    pub(super) fn dialog_key(&self) -> DialogKey {
        DialogKey {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
        }
    }

    pub(super) fn our_from(&self) -> String {
        format!("{};tag={}", self.local_uri, self.local_tag)
    }

    pub(super) fn our_to(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("{};tag={t}", self.remote_uri),
            None => self.remote_uri.clone(),
        }
    }
}

/// An INVITE received by [`TestUa::wait_invite`].
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// The INVITE as received.
    pub request: rsip::Request,
    /// Where it came from (responses go there).
    pub source: SocketAddr,
    /// Its SDP body, if any.
    pub sdp: Option<String>,
    /// Its Call-ID.
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: Option<String>,
    /// The To tag we put on every response to this INVITE (stable, so all responses agree).
    pub to_tag: String,
    pub(super) key: TxKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DialogKey {
    pub(super) call_id: String,
    pub(super) local_tag: String,
}

/// What the UA itself remembers about a dialog (the test holds the [`CallHandle`]).
#[derive(Debug, Clone, Default)]
pub(super) struct DialogState {
    pub(super) local_cseq: u32,
    pub(super) local_sdp: Option<String>,
    pub(super) established: bool,
    pub(super) terminated: bool,
}

/// An INVITE we received, kept for CANCEL handling.
#[derive(Debug, Clone)]
pub(super) struct UasInvite {
    pub(super) request: rsip::Request,
    pub(super) source: SocketAddr,
    pub(super) to_tag: String,
    pub(super) final_sent: bool,
}

impl TestUa {
    /// Request-URI, Route headers and next hop for an in-dialog request (RFC 3261 §12.2.1.1).
    pub(super) async fn dialog_target(
        &self,
        call: &CallHandle,
    ) -> Result<(String, Vec<String>, SocketAddr), UaError> {
        let Some(first) = call.route_set.first() else {
            let dest = self.resolve(&call.remote_target).await?;
            return Ok((call.remote_target.clone(), Vec::new(), dest));
        };
        let first_uri = uri_of(first);
        if uri_has_lr(&first_uri) {
            let dest = self.resolve(&first_uri).await?;
            Ok((call.remote_target.clone(), call.route_set.clone(), dest))
        } else {
            // Strict router: it becomes the Request-URI, the remote target goes last in Route.
            let mut routes: Vec<String> = call.route_set.iter().skip(1).cloned().collect();
            routes.push(format!("<{}>", call.remote_target));
            let dest = self.resolve(&first_uri).await?;
            Ok((first_uri, routes, dest))
        }
    }

    pub(super) fn next_cseq(&mut self, call: &CallHandle) -> u32 {
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(call.local_cseq) + 1;
        st.local_cseq
    }
}
