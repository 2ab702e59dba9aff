//! HTTP statuses of refused session requests (docs/api.md): the engine says why a request is
//! refused, the API says which status that is.

use axum::http::StatusCode;
use bibridge_b2bua::engine::{ApiRefusal, Refusal};

/// The HTTP status of a refused session request.
pub(super) fn refusal_status(r: ApiRefusal) -> StatusCode {
    match r {
        ApiRefusal::Policy(Refusal::NoSuchExtension)
        | ApiRefusal::NoSuchCall
        | ApiRefusal::NoSuchSession => StatusCode::NOT_FOUND,
        ApiRefusal::Policy(Refusal::AgentNotInCall)
        | ApiRefusal::SessionExists
        | ApiRefusal::PhoneUnreachable => StatusCode::CONFLICT,
        ApiRefusal::NoMediaPorts => StatusCode::SERVICE_UNAVAILABLE,
        ApiRefusal::Policy(_) | ApiRefusal::NotYours => StatusCode::FORBIDDEN,
        // AuditUnavailable, and whatever a newer engine adds.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_statuses_follow_the_api_contract() {
        let status = |r| refusal_status(r).as_u16();
        assert_eq!(status(ApiRefusal::Policy(Refusal::NoSuchExtension)), 404);
        assert_eq!(status(ApiRefusal::Policy(Refusal::AgentNotInCall)), 409);
        assert_eq!(status(ApiRefusal::Policy(Refusal::BuiltInBridgeOff)), 403);
        assert_eq!(ApiRefusal::Policy(Refusal::SelfMonitoring).key(), "self");
        assert_eq!(status(ApiRefusal::SessionExists), 409);
        assert_eq!(status(ApiRefusal::NoSuchCall), 404);
        assert_eq!(status(ApiRefusal::NoMediaPorts), 503);
        assert_eq!(status(ApiRefusal::AuditUnavailable), 500);
        assert_eq!(status(ApiRefusal::NotYours), 403);
    }
}
