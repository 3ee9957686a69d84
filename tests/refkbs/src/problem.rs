// SPDX-License-Identifier: Apache-2.0
//! KBS error documents (kbs-protocol.md §6).
//!
//! Trustee answers every failure with a kbs-types `ErrorInformation` body
//! `{"type":"https://github.com/confidential-containers/kbs/errors/<Variant>","detail":..}`,
//! **without** a `Content-Type` header, status 404 for `InvalidRequestPath` and
//! `PluginNotFound` and 401 for everything else (`kbs/src/error.rs`).

use bytes::Bytes;
use kbs_types::ErrorInformation;

use crate::reply::Reply;

const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// The subset of Trustee's `kbs::Error` variants the reference KBS emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `AttestationError`; the payload is the full detail text.
    Attestation(String),
    TokenNotFound,
    TokenVerifier,
    PolicyDeny,
    PluginInternal,
    Jwe,
    /// `PluginNotFound`; the payload is the plugin (first path segment).
    PluginNotFound(String),
    /// `InvalidRequestPath`; the payload is the request path.
    InvalidRequestPath(String),
    /// `PolicyEngineError`: the KBS's policy engine failed (a fault knob).
    PolicyEngine,
}

impl Problem {
    /// The failed `/auth` detail: `Attestation error: RCAR handshake Auth failed: <cause>`.
    pub fn auth(cause: &str) -> Problem {
        Problem::Attestation(format!(
            "Attestation error: RCAR handshake Auth failed: {cause}"
        ))
    }

    /// The failed `/attest` detail; upstream hides the cause.
    pub fn attest() -> Problem {
        Problem::Attestation("Attestation error: RCAR handshake Attest failed".to_string())
    }

    /// The `type` suffix, i.e. Trustee's variant name.
    pub fn variant(&self) -> &'static str {
        match self {
            Problem::Attestation(_) => "AttestationError",
            Problem::TokenNotFound => "TokenNotFound",
            Problem::TokenVerifier => "TokenVerifierError",
            Problem::PolicyDeny => "PolicyDeny",
            Problem::PluginInternal => "PluginInternalError",
            Problem::Jwe => "JweError",
            Problem::PluginNotFound(_) => "PluginNotFound",
            Problem::InvalidRequestPath(_) => "InvalidRequestPath",
            Problem::PolicyEngine => "PolicyEngineError",
        }
    }

    /// The `detail` text (Trustee's `Display` of the variant).
    pub fn detail(&self) -> String {
        match self {
            Problem::Attestation(detail) => detail.clone(),
            Problem::TokenNotFound => "Attestation Token not found".to_string(),
            Problem::TokenVerifier => "Token Verifier error".to_string(),
            Problem::PolicyDeny => "Access denied by policy".to_string(),
            Problem::PluginInternal => "Plugin internal error".to_string(),
            Problem::Jwe => "JWE failed".to_string(),
            Problem::PluginNotFound(name) => format!("Plugin {name} not found"),
            Problem::InvalidRequestPath(path) => format!("Invalid request path {path}"),
            Problem::PolicyEngine => "Policy Engine error".to_string(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Problem::PluginNotFound(_) | Problem::InvalidRequestPath(_) => 404,
            _ => 401,
        }
    }

    /// The HTTP reply: status, body, and deliberately no `Content-Type`.
    pub fn reply(&self) -> Reply {
        let info = ErrorInformation {
            error_type: format!("{ERROR_TYPE_PREFIX}{}", self.variant()),
            detail: self.detail(),
        };
        // Serializing two strings cannot fail.
        let body = serde_json::to_vec(&info).unwrap_or_default();
        Reply::new(self.status(), Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn policy_deny_matches_capture() {
        let reply = Problem::PolicyDeny.reply();
        assert_eq!(reply.status, 401);
        assert!(reply.headers.is_empty());
        assert_eq!(
            &reply.body[..],
            br#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}"#
        );
    }

    #[test]
    fn plugin_not_found_is_404() {
        assert_eq!(Problem::PluginNotFound("x".into()).status(), 404);
        assert_eq!(Problem::PluginInternal.status(), 401);
    }
}
