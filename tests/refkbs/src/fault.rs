// SPDX-License-Identifier: Apache-2.0
//! Fault knobs for the agent's retry tests: a queue of faults, each applied to
//! the next `count` requests for its endpoint. Not part of the KBS protocol.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /kbs/v0/auth`
    Auth,
    /// `POST /kbs/v0/attest`
    Attest,
    /// `/kbs/v0/resource/...`
    Resource,
    /// Every `/kbs/v0/...` request.
    Any,
}

/// What happens to a faulted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Sleep, then answer normally (JSON: milliseconds).
    Delay(#[serde(serialize_with = "ser_millis", deserialize_with = "de_millis")] Duration),
    /// Answer this status with a small plain-text body and optional `Retry-After`.
    Status { code: u16, retry_after: Option<u64> },
    /// Full `Content-Length`, about half of the real body, then close the connection.
    Drop,
    /// The first half of the real body with a `Content-Length` matching it.
    Truncate,
    /// 200 `application/json` with a body that is not JSON.
    Garble,
    /// 200 `application/json`, chunked, this many bytes (a JSON string of `A`s).
    Oversize(u64),
    /// `/auth` only: the session keeps one nonce, the challenge carries another.
    NonceMismatch,
    /// Trustee's `PolicyEngineError` document (401), a transient server failure.
    PolicyEngineError,
    /// Trustee's `TokenVerifierError` document (401), as from a KBS that
    /// cannot verify the tokens it issues.
    TokenVerifierError,
    /// Trustee's `InvalidRequestPath` document (404), as for a path its
    /// router cannot split.
    InvalidRequestPath,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub endpoint: Endpoint,
    pub count: u32,
    pub kind: FaultKind,
}

impl Fault {
    pub fn new(endpoint: Endpoint, count: u32, kind: FaultKind) -> Fault {
        Fault {
            endpoint,
            count,
            kind,
        }
    }
}

/// The pending faults, oldest first.
#[derive(Debug, Default)]
pub struct FaultQueue {
    faults: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        if fault.count > 0 {
            self.faults.push_back(fault);
        }
    }

    /// Consumes one count of the oldest fault matching a request to `endpoint`
    /// (`None` for requests outside auth/attest/resource, which only `Any` matches).
    pub fn take(&mut self, endpoint: Option<Endpoint>) -> Option<FaultKind> {
        let index = self
            .faults
            .iter()
            .position(|f| f.endpoint == Endpoint::Any || Some(f.endpoint) == endpoint)?;
        let fault = &mut self.faults[index];
        fault.count -= 1;
        let kind = fault.kind.clone();
        if fault.count == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }
}

fn ser_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn de_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Endpoint, Fault, FaultKind, FaultQueue};

    #[test]
    fn json_shapes() {
        let f: Fault = serde_json::from_str(
            r#"{"endpoint":"resource","count":3,"kind":{"status":{"code":503,"retry_after":null}}}"#,
        )
        .expect("status");
        assert_eq!(
            f.kind,
            FaultKind::Status {
                code: 503,
                retry_after: None
            }
        );
        let f: Fault = serde_json::from_str(r#"{"endpoint":"any","count":1,"kind":{"delay":250}}"#)
            .expect("delay");
        assert_eq!(f.kind, FaultKind::Delay(Duration::from_millis(250)));
        let f: Fault =
            serde_json::from_str(r#"{"endpoint":"auth","count":1,"kind":"nonce_mismatch"}"#)
                .expect("unit");
        assert_eq!(f.kind, FaultKind::NonceMismatch);
    }

    #[test]
    fn counts_are_consumed_in_order() {
        let mut q = FaultQueue::default();
        q.push(Fault::new(Endpoint::Attest, 2, FaultKind::Garble));
        q.push(Fault::new(Endpoint::Any, 1, FaultKind::Drop));
        assert_eq!(q.take(Some(Endpoint::Auth)), Some(FaultKind::Drop));
        assert_eq!(q.take(Some(Endpoint::Auth)), None);
        assert_eq!(q.take(Some(Endpoint::Attest)), Some(FaultKind::Garble));
        assert_eq!(q.take(Some(Endpoint::Attest)), Some(FaultKind::Garble));
        assert_eq!(q.take(Some(Endpoint::Attest)), None);
    }
}
