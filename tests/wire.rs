// SPDX-License-Identifier: Apache-2.0
//! The agent's requests against the captures of upstream `trustee-attester`
//! talking to a real Trustee KBS (tests/data/wire/ok): same member names in
//! the same order, same nesting, same encodings and lengths, same headers
//! that matter; only random values (nonce, key, digest, cookie) differ.

use serde_json::Value;

use crate::util::{assert_exit, data, World};

/// Member names in the order they appear in a raw JSON text.
fn member_order(raw: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(raw).unwrap();
    let mut names = Vec::new();
    // serde_json's map is sorted, so walk the raw text for the order instead.
    let mut rest = raw;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let end = after.find('"').unwrap();
        let token = &after[..end];
        rest = &after[end + 1..];
        if rest.trim_start().starts_with(':') {
            names.push(token.to_owned());
        }
    }
    assert!(v.is_object());
    names
}

/// The encodings a string value can be in: a random base64 value may, by
/// chance, use neither `+`, `/` nor `=` and then reads as base64url too.
fn families(s: &str) -> Vec<&'static str> {
    let all = |f: fn(char) -> bool| s.chars().all(f);
    let mut out = Vec::new();
    if s.is_empty() {
        out.push("empty");
    }
    if all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        out.push("hex");
    }
    if all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        out.push("base64url");
    }
    if all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=') {
        out.push("base64");
    }
    if out.is_empty() {
        out.push("text");
    }
    out
}

/// Same length and at least one encoding in common.
#[track_caller]
fn assert_same_class(a: &str, b: &str, what: &str) {
    let (fa, fb) = (families(a), families(b));
    assert!(
        a.len() == b.len() && fa.iter().any(|f| fb.contains(f)),
        "encoding differs at {what}: {a} ({fa:?}) vs {b} ({fb:?})"
    );
}

/// Same shape: objects with the same keys, arrays of the same kinds, strings
/// equal or of the same encoding class. `loose` names arrays whose length
/// may differ (the advertised hash list).
fn same_shape(ours: &Value, theirs: &Value, at: &str, loose: &[&str]) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            assert_eq!(ka, kb, "members differ at {at}");
            for (k, v) in a {
                same_shape(v, &b[k], &format!("{at}/{k}"), loose);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if !loose.contains(&at) {
                assert_eq!(a.len(), b.len(), "array length differs at {at}");
            }
            for (x, y) in a.iter().zip(b) {
                same_shape(x, y, at, loose);
            }
        }
        (Value::String(a), Value::String(b)) => {
            if a != b {
                assert_same_class(a, b, at);
            }
        }
        (a, b) => assert_eq!(a, b, "value differs at {at}"),
    }
}

fn capture(name: &str) -> (Vec<(String, String)>, String) {
    let raw = std::fs::read_to_string(data(&format!("wire/ok/{name}"))).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    let headers = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    (headers, v["body_raw"].as_str().unwrap().to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn requests_match_the_upstream_capture() {
    let w = World::new("wire", 1, |_| {});
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    let recorded = w.kbs.requests();
    assert_eq!(recorded.len(), 3, "auth, attest, resource");
    let cases = [
        ("POST", "/kbs/v0/auth", "01-POST-kbs_v0_auth.req.json"),
        ("POST", "/kbs/v0/attest", "02-POST-kbs_v0_attest.req.json"),
        (
            "GET",
            "/kbs/v0/resource/default/key/k0",
            "03-GET-kbs_v0_resource_default_key_test.req.json",
        ),
    ];
    for (req, (method, path, file)) in recorded.iter().zip(cases) {
        assert_eq!((req.method.as_str(), req.path.as_str()), (method, path));
        let (their_headers, their_body) = capture(file);
        for name in ["content-type", "cookie"] {
            let (ours, theirs) = (header(&req.headers, name), header(&their_headers, name));
            assert_eq!(ours.is_some(), theirs.is_some(), "{file}: header {name}");
            if let (Some(a), Some(b)) = (ours, theirs) {
                if name == "cookie" {
                    let (ia, ib) = (
                        a.strip_prefix("kbs-session-id=").unwrap(),
                        b.strip_prefix("kbs-session-id=").unwrap(),
                    );
                    assert_same_class(ia, ib, &format!("{file}: cookie"));
                } else {
                    assert_eq!(a, b, "{file}: header {name}");
                }
            }
        }
        if their_body.is_empty() {
            assert!(req.body.is_empty(), "{file}: GET carries no body");
            continue;
        }
        assert_eq!(
            member_order(&req.body),
            member_order(&their_body),
            "{file}: member order"
        );
        let (ours, theirs): (Value, Value) = (
            serde_json::from_str(&req.body).unwrap(),
            serde_json::from_str(&their_body).unwrap(),
        );
        same_shape(
            &ours,
            &theirs,
            "",
            &["/extra-params/supported-hash-algorithms"],
        );
    }
    // The one deliberate difference: we advertise only the hash we implement.
    let auth: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(
        auth["extra-params"]["supported-hash-algorithms"],
        serde_json::json!(["sha384"])
    );
}
