// SPDX-License-Identifier: Apache-2.0
//! Every KBS refusal and transport fault the agent must handle, one test each.

use std::time::Duration;

use crate::util::{
    assert_exit, assert_fails_with, assert_logged, stderr, Endpoint, Fault, FaultKind, Policy,
    Rule, World,
};

fn fault(endpoint: Endpoint, count: u32, kind: FaultKind) -> Fault {
    Fault {
        endpoint,
        count,
        kind,
    }
}

#[test]
fn version_mismatch_fails_at_once() {
    let w = World::new("version", 1, |c| c.version = "0.5.0".into());
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 3);
    let log = stderr(&out);
    assert!(
        log.contains("the KBS speaks another protocol version"),
        "{log}"
    );
    assert!(
        log.contains("expect =0.5.0 while the request is 0.4.0"),
        "{log}"
    );
    assert_eq!(w.kbs.stats().auth, 1, "no retry of a version mismatch");
}

/// A rejected attestation is retried with fresh handshakes after a backoff,
/// five in all (kbs-protocol.md §6: the cause may be transient on the KBS
/// side), then it is final.
#[test]
fn nonce_mismatch_is_an_attestation_rejection() {
    let w = World::new("nonce", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Auth, 100, FaultKind::NonceMismatch));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(&out, 3, "the KBS rejected the sample evidence");
    assert_eq!(stderr(&out).matches("trying again in").count(), 4);
    let s = w.kbs.stats();
    assert_eq!(
        (s.auth, s.attest, s.resource),
        (5, 5, 0),
        "five handshakes, then give up"
    );
}

#[test]
fn a_rejected_attestation_can_succeed_on_a_later_handshake() {
    let w = World::new("nonce-later", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Auth, 2, FaultKind::NonceMismatch));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (3, 3, 1));
}

/// `PolicyEngineError` is the KBS failing for now: retried with backoff.
#[test]
fn a_policy_engine_failure_on_a_resource_is_retried_in_a_fresh_session() {
    let w = World::new("policy-engine", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 1, FaultKind::PolicyEngineError));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let log = stderr(&out);
    assert!(log.contains("PolicyEngineError"), "{log}");
    assert!(log.contains("trying again in"), "{log}");
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (2, 2, 2));
}

/// A 404 problem document: the URL leads to no KBS resource API. Final at
/// once, with no fresh session (kbs-protocol.md §6).
#[test]
fn an_invalid_request_path_is_final_at_once() {
    let w = World::new("invalid-path", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 10, FaultKind::InvalidRequestPath));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(
        &out,
        3,
        &format!(
            "{}/ has no KBS resource endpoint (InvalidRequestPath): check the KBS URL and its \
             resource plugin",
            w.kbs.url()
        ),
    );
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (1, 1, 1));
}

#[test]
fn a_policy_engine_failure_that_persists_is_final() {
    let w = World::new("policy-engine-final", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Attest, 100, FaultKind::PolicyEngineError));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(&out, 4, "the KBS failed internally (PolicyEngineError");
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (5, 5, 0));
}

#[test]
fn expired_session_gets_one_fresh_handshake() {
    let w = World::new("expired", 2, |c| {
        c.session_timeout = Duration::from_millis(700)
    });
    // The first resource request arrives after the session has expired.
    w.kbs.push_fault(fault(
        Endpoint::Resource,
        1,
        FaultKind::Delay(Duration::from_millis(1200)),
    ));
    let out = w.get(&["default/key/k0", "--output", w.out("k0").to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(w.out("k0")).unwrap(),
        w.secret("default/key/k0")
    );
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (2, 2, 2));
    assert_logged(&out, "need a fresh session");
}

#[test]
fn expired_token_gets_one_fresh_handshake() {
    // JWT `exp` has one-second resolution: a 2 s lifetime is over after 3.2 s
    // (Trustee would wait out its 60 s leeway first; none here, to be quick).
    let w = World::new("token", 1, |c| {
        c.token_lifetime = Duration::from_secs(2);
        c.token_leeway = Duration::ZERO;
    });
    w.kbs.push_fault(fault(
        Endpoint::Resource,
        1,
        FaultKind::Delay(Duration::from_millis(3200)),
    ));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (2, 2, 2));
    assert_logged(&out, "TokenVerifierError");
}

/// A KBS that refuses its own tokens again after a fresh session has a
/// misconfigured verifier: one fresh session, then a final error
/// (kbs-protocol.md §6), not the two a lost session gets.
#[test]
fn a_token_refused_twice_is_final_after_one_fresh_session() {
    let w = World::new("token-twice", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 10, FaultKind::TokenVerifierError));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(&out, 3, "still refused after 1 fresh session(s)");
    assert_logged(&out, "check the KBS token verifier configuration");
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (2, 2, 2));
}

/// The reference KBS's expire knob ends the session the agent holds: its
/// resource request, already in flight, is refused, and it makes one fresh
/// session. (Each `get` is its own process with its own session, so the
/// knob must act during one run to show anything.)
#[test]
fn expire_sessions_knob_forces_a_new_session() {
    let w = World::new("expire-knob", 1, |_| {});
    w.kbs.push_fault(fault(
        Endpoint::Resource,
        1,
        FaultKind::Delay(Duration::from_millis(1500)),
    ));
    let child = w
        .get_cmd(&["default/key/k0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    w.wait_for_request("/resource/");
    w.kbs.expire_sessions();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (2, 2, 2));
    assert_logged(&out, "need a fresh session");
}

#[test]
fn policy_denial_fails_fast_with_an_operator_message() {
    let w = World::new("deny", 1, |c| {
        c.policy = Policy::from_rules(vec![
            Rule::deny("sample", "default/luks/root").unwrap(),
            Rule::allow("*", "*/*/*").unwrap(),
        ])
    });
    let out = w.get(&[
        "default/luks/root",
        "default/key/k0",
        "--output",
        w.out("d").to_str().unwrap(),
    ]);
    assert_exit(&out, 3);
    let log = stderr(&out);
    assert!(
        log.contains(
            "the KBS policy denied default/luks/root for TEE sample: check the resource policy"
        ),
        "{log}"
    );
    let s = w.kbs.stats();
    assert_eq!(
        (s.auth, s.attest, s.resource),
        (1, 1, 2),
        "no retry, no re-handshake"
    );
    assert!(
        !w.out("d").join("default/key/k0").exists(),
        "all or nothing"
    );
}

#[test]
fn missing_resource_fails_fast() {
    let w = World::new("missing", 1, |_| {});
    let out = w.get(&["default/key/nope"]);
    assert_fails_with(&out, 3, "the KBS has no resource default/key/nope");
    assert_eq!(w.kbs.stats().resource, 1);
}

#[test]
fn three_503s_then_success() {
    let w = World::new("503", 1, |_| {});
    w.kbs.push_fault(fault(
        Endpoint::Resource,
        3,
        FaultKind::Status {
            code: 503,
            retry_after: None,
        },
    ));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert_eq!(w.kbs.stats().resource, 4);
    assert_eq!(
        stderr(&out)
            .matches("HTTP 503 Service Unavailable); retrying")
            .count(),
        3
    );
}

#[test]
fn too_many_requests_honours_retry_after() {
    let w = World::new("429", 1, |_| {});
    w.kbs.push_fault(fault(
        Endpoint::Auth,
        1,
        FaultKind::Status {
            code: 429,
            retry_after: Some(1),
        },
    ));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(&out, 0, "HTTP 429 Too Many Requests); retrying in 1000 ms");
    assert_eq!(w.kbs.stats().auth, 2);
}

/// `Retry-After: 0` (or a date in the past) is a floor, not a licence to
/// retry back to back: the backoff still applies.
#[test]
fn retry_after_zero_still_waits_the_backoff() {
    let w = World::new("retry-after-0", 1, |_| {});
    w.kbs.push_fault(fault(
        Endpoint::Auth,
        3,
        FaultKind::Status {
            code: 503,
            retry_after: Some(0),
        },
    ));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    let log = stderr(&out);
    assert_eq!(log.matches("retrying in").count(), 3, "{log}");
    assert!(!log.contains("retrying in 0 ms"), "{log}");
    assert_eq!(w.kbs.stats().auth, 4);
}

#[test]
fn connection_dropped_mid_body_is_retried() {
    let w = World::new("drop", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 1, FaultKind::Drop));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert_eq!(w.kbs.stats().resource, 2);
}

#[test]
fn garbage_json_is_a_clear_error() {
    let w = World::new("garble", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 1, FaultKind::Garble));
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 4);
    let log = stderr(&out);
    assert!(
        log.contains("the KBS sent a malformed response for resource default/key/k0"),
        "{log}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn truncated_attestation_result_is_a_clear_error() {
    let w = World::new("truncate", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Attest, 1, FaultKind::Truncate));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(&out, 4, "the KBS sent a malformed attestation result");
}

#[test]
fn oversized_body_is_refused_while_reading() {
    let w = World::new("oversize", 1, |_| {});
    w.kbs
        .push_fault(fault(Endpoint::Resource, 1, FaultKind::Oversize(256 << 20)));
    let out = w.get(&["default/key/k0"]);
    assert_fails_with(
        &out,
        4,
        "sent more than 4194304 bytes in reply to fetch a resource: refused",
    );
}

#[test]
fn deadline_bounds_the_retries() {
    let w = World::new("deadline", 1, |_| {});
    w.kbs.push_fault(fault(
        Endpoint::Auth,
        1000,
        FaultKind::Status {
            code: 503,
            retry_after: None,
        },
    ));
    let url = w.kbs.url();
    let out = crate::util::agent(&[
        "get",
        "--kbs",
        &url,
        "--insecure-http",
        "--tee",
        "sample",
        "--timeout",
        "1",
        "default/key/k0",
    ]);
    assert_fails_with(&out, 4, "within the 1s deadline");
}
