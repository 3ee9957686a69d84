// SPDX-License-Identifier: Apache-2.0
//! What the KBS said when it said no, and what the agent does about it.
//!
//! kbs-protocol §6: error bodies are kbs-types `ErrorInformation`
//! (`{"type":"…/errors/<Variant>","detail":…}`) sent without a Content-Type;
//! nearly every variant is a 401 (PolicyDeny has also been a 403 in some
//! releases), so the agent branches on the `type` suffix, never on the status.
//! Each outcome becomes a `KbsError` whose message tells an operator what
//! to check; `KbsError::rehandshake` marks the ones a fresh session fixes.

use kbs_types::ErrorInformation;

const TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// A parsed KBS problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variant name after the type prefix (e.g. `PolicyDeny`).
    pub kind: String,
    pub detail: String,
}

impl Problem {
    /// Parses a problem body; `None` when it is not one.
    pub fn parse(body: &[u8]) -> Option<Problem> {
        let info: ErrorInformation = serde_json::from_slice(body).ok()?;
        let kind = info
            .error_type
            .strip_prefix(TYPE_PREFIX)
            .unwrap_or(&info.error_type)
            .to_owned();
        Some(Problem {
            kind,
            detail: info.detail,
        })
    }
}

/// The KBS outcomes the agent reacts to.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    #[error("the KBS policy denied {resource} for TEE {tee}: check the resource policy")]
    PolicyDeny { resource: String, tee: String },
    #[error("the KBS has no resource {resource} (PluginInternalError): check that it was uploaded under that exact path")]
    ResourceMissing { resource: String },
    #[error("the KBS refused our TEE key ({detail}): this agent sends EC P-256 ECDH-ES+A256KW, which every Trustee KBS since protocol 0.2 accepts")]
    KeyRefused { detail: String },
    #[error("the KBS speaks another protocol version ({detail}); cvm-attest speaks 0.4.0: use a Trustee KBS that accepts 0.4.0")]
    VersionMismatch { detail: String },
    #[error("the KBS rejected the attestation request at {step} ({detail})")]
    AuthRejected { step: &'static str, detail: String },
    #[error("the KBS rejected the {tee} evidence: the cause (evidence, binding or attestation policy) is in the KBS log")]
    AttestRejected { tee: String },
    #[error("the KBS session ended (TokenNotFound)")]
    SessionGone,
    #[error("the KBS did not accept the token it issued (TokenVerifierError): check the KBS token verifier configuration")]
    TokenRejected,
    #[error(
        "{url} has no KBS {what} endpoint ({kind}): check the KBS URL and its resource plugin"
    )]
    NoEndpoint {
        url: String,
        what: &'static str,
        kind: String,
    },
    #[error("the KBS failed internally ({kind}: {detail})")]
    ServerFault { kind: String, detail: String },
    #[error("the KBS sent a malformed {what} ({body})")]
    Malformed { what: String, body: String },
    #[error("the KBS answered HTTP {status} to {what} with {body}")]
    Unexpected {
        status: u16,
        what: &'static str,
        body: String,
    },
}

impl KbsError {
    /// True when a fresh handshake is the remedy (bounded by the caller).
    pub fn rehandshake(&self) -> bool {
        matches!(self, KbsError::SessionGone | KbsError::TokenRejected) || self.retry_later()
    }

    /// True for the KBS's own transient failures, which kbs-protocol.md §6
    /// says to retry with backoff before giving up: a rejected attestation
    /// (the cause may be a VCEK or PCS fetch on the KBS side) and
    /// `SerdeError`/`PolicyEngineError`.
    pub fn retry_later(&self) -> bool {
        match self {
            KbsError::AttestRejected { .. } => true,
            KbsError::ServerFault { kind, .. } => {
                kind == "SerdeError" || kind == "PolicyEngineError"
            }
            _ => false,
        }
    }
}

/// Describes a non-problem body without echoing it (it may hold anything).
pub fn describe_body(body: &[u8]) -> String {
    if body.is_empty() {
        "an empty body".to_owned()
    } else {
        format!(
            "a {}-byte body that is not a KBS error document",
            body.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Problem;

    #[test]
    fn parses_the_captured_documents() {
        let deny = br#"{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":"Access denied by policy"}"#;
        assert_eq!(
            Problem::parse(deny),
            Some(Problem {
                kind: "PolicyDeny".into(),
                detail: "Access denied by policy".into()
            })
        );
        let missing = br#"{"type":"https://github.com/confidential-containers/kbs/errors/PluginInternalError","detail":"Plugin internal error"}"#;
        assert_eq!(Problem::parse(missing).unwrap().kind, "PluginInternalError");
    }

    #[test]
    fn other_bodies_are_not_problems() {
        assert_eq!(Problem::parse(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(Problem::parse(b""), None);
        assert_eq!(Problem::parse(br#"{"detail":"x"}"#), None);
    }
}
