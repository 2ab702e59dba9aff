//! The small ids and tags shared by the engine and the audit log (so that neither imports
//! the other for them): calls, sessions, legs and who started a session.

/// Identifies a call inside the engine and towards the media plane.
pub type CallId = u64;

/// Identifies a supervisor session.
pub type SessionId = u64;

/// Identifies a leg within a call's media plane: 0 is leg A, 1 is leg B, supervisors from 2 up.
pub type LegId = u32;

/// A call's two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Towards the caller: we answered its INVITE.
    A,
    /// Towards the callee: we sent the INVITE.
    B,
}

impl Side {
    /// The media plane's id of this leg.
    pub fn leg_id(self) -> LegId {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// The other leg.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Who started a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrigin {
    /// The supervisor's phone dialled a feature code or sent a Join.
    Phone,
    /// The HTTP API (operator console).
    Api,
}

impl SessionOrigin {
    /// Stable name (API, audit log).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionOrigin::Phone => "phone",
            SessionOrigin::Api => "api",
        }
    }
}
