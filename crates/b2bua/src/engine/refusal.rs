//! Why a session request is refused (docs/design.md §4): the SIP code and reason phrase the
//! phone gets, and the stable key the API, metrics and audit log use.

/// Why a session request is refused (docs/design.md §4): a SIP code and reason phrase each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The caller is a trunk, not a supervisor's phone.
    Trunk,
    /// No user has the requested extension.
    NoSuchExtension,
    /// The supervisor asked for their own calls.
    SelfMonitoring,
    /// Built-In-Bridge is off on the agent's device.
    BuiltInBridgeOff,
    /// Policy does not allow this supervisor this mode on this agent.
    NotAllowed,
    /// The agent has no connected call.
    AgentNotInCall,
    /// The supervisor's INVITE carried no SDP offer.
    NoOffer,
    /// The agent's calls are private (CUCM Privacy): no barge.
    Privacy,
    /// Digest credentials were given but wrong.
    Unauthenticated,
}

impl Refusal {
    /// SIP status code of the refusal.
    pub fn code(self) -> u16 {
        match self {
            Refusal::NoSuchExtension => 404,
            Refusal::AgentNotInCall => 480,
            Refusal::Unauthenticated => 401,
            Refusal::NoOffer => 488,
            _ => 403,
        }
    }

    /// SIP reason phrase of the refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Trunk => "Forbidden (trunks cannot start sessions)",
            Refusal::NoSuchExtension => "Not Found (no such extension)",
            Refusal::SelfMonitoring => "Forbidden (cannot monitor yourself)",
            Refusal::BuiltInBridgeOff => "Built-In-Bridge off",
            Refusal::NotAllowed => "Forbidden (not allowed for this agent or mode)",
            Refusal::AgentNotInCall => "Temporarily Unavailable (agent not in a call)",
            Refusal::NoOffer => "Not Acceptable Here (SDP offer required)",
            Refusal::Privacy => "Forbidden (agent privacy: barge not allowed)",
            Refusal::Unauthenticated => "Unauthorized",
        }
    }

    /// Stable machine-readable key (API problem documents, metrics labels, audit).
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Trunk => "trunk",
            Refusal::NoSuchExtension => "no_such_extension",
            Refusal::SelfMonitoring => "self",
            Refusal::BuiltInBridgeOff => "builtin_bridge_off",
            Refusal::NotAllowed => "not_allowed",
            Refusal::AgentNotInCall => "agent_not_in_call",
            Refusal::NoOffer => "no_offer",
            Refusal::Privacy => "privacy",
            Refusal::Unauthenticated => "unauthenticated",
        }
    }

    /// Short human-readable title.
    pub fn title(self) -> &'static str {
        match self {
            Refusal::Trunk => "Trunks cannot start sessions",
            Refusal::NoSuchExtension => "No such extension",
            Refusal::SelfMonitoring => "You cannot monitor yourself",
            Refusal::BuiltInBridgeOff => "Built-In-Bridge off on this device",
            Refusal::NotAllowed => "Not allowed by policy",
            Refusal::AgentNotInCall => "Agent not in a call",
            Refusal::NoOffer => "SDP offer required",
            Refusal::Privacy => "Agent privacy: barge not allowed",
            Refusal::Unauthenticated => "Not authenticated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn refusals_have_design_codes() {
        assert_eq!(Refusal::NoSuchExtension.code(), 404);
        assert_eq!(Refusal::AgentNotInCall.code(), 480);
        for r in [
            Refusal::BuiltInBridgeOff,
            Refusal::NotAllowed,
            Refusal::SelfMonitoring,
            Refusal::Trunk,
        ] {
            assert_eq!(r.code(), 403);
        }
        assert_eq!(Refusal::BuiltInBridgeOff.reason(), "Built-In-Bridge off");
    }
}
