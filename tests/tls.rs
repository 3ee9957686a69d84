// SPDX-License-Identifier: Apache-2.0
//! Transport policy: HTTPS with a pinned CA, plain http only when allowed,
//! URLs checked before any traffic.

use crate::util::{
    agent, assert_exit, assert_fails_with, assert_logged, assert_not_logged, data, stderr, Tls,
    World,
};

fn tls_world(name: &str) -> World {
    tls_world_with(name, 1)
}

/// A reference KBS on HTTPS with the test CA, holding `n` resources.
fn tls_world_with(name: &str, n: usize) -> World {
    World::new(name, n, |c| {
        c.tls = Some(Tls {
            cert_chain: data("tls/server.pem"),
            key: data("tls/server.key"),
        })
    })
}

#[test]
fn https_with_the_pinned_ca() {
    let w = tls_world("tls-ok");
    let url = w.kbs.url();
    assert!(url.starts_with("https://"));
    let ca = data("tls/ca.pem");
    let out = agent(&[
        "get",
        "--kbs",
        &url,
        "--kbs-ca",
        ca.to_str().unwrap(),
        "--tee",
        "sample",
        "default/key/k0",
    ]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
}

#[test]
fn https_multiplexes_over_http2_and_survives_a_dropped_stream() {
    let w = tls_world_with("tls-h2", 3);
    w.kbs.push_fault(crate::util::Fault {
        endpoint: crate::util::Endpoint::Resource,
        count: 1,
        kind: crate::util::FaultKind::Drop,
    });
    let (url, ca, dir) = (w.kbs.url(), data("tls/ca.pem"), w.out("h2"));
    let out = agent(&[
        "get",
        "--kbs",
        &url,
        "--kbs-ca",
        ca.to_str().unwrap(),
        "--tee",
        "sample",
        "default/key/k0",
        "default/key/k1",
        "default/key/k2",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    for p in ["default/key/k0", "default/key/k1", "default/key/k2"] {
        assert_eq!(std::fs::read(dir.join(p)).unwrap(), w.secret(p));
    }
    let stats = w.kbs.stats();
    assert_eq!(stats.resource, 4, "three resources and one retry");
    assert_eq!(
        stats.connections, 1,
        "auth, attest and every resource request over one connection"
    );
    // HTTP/2 carries the authority as a pseudo-header, so no request has a Host header.
    assert!(w
        .kbs
        .requests()
        .iter()
        .all(|r| r.headers.iter().all(|(k, _)| k != "host")));
}

#[test]
fn a_wrong_ca_is_a_tls_error_naming_the_kbs() {
    let w = tls_world("tls-wrong");
    let url = w.kbs.url();
    let ca = data("tls/other-ca.pem");
    let out = agent(&[
        "get",
        "--kbs",
        &url,
        "--kbs-ca",
        ca.to_str().unwrap(),
        "--tee",
        "sample",
        "default/key/k0",
    ]);
    assert_exit(&out, 4);
    let log = stderr(&out);
    assert!(
        log.contains(&format!("TLS with the KBS at {url}/kbs/v0/auth failed")),
        "{log}"
    );
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert_logged(
        &out,
        "check that the KBS certificate chains to the pinned CA (--kbs-ca, kbs.ca",
    );
    assert!(
        !log.contains("retrying"),
        "a certificate problem is not retried: {log}"
    );
    assert_eq!(w.kbs.stats().auth, 0);
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let out = agent(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--kbs-ca",
        "/nonexistent/ca.pem",
        "--tee",
        "sample",
        "a/b/c",
    ]);
    assert_fails_with(&out, 2, "read KBS CA file /nonexistent/ca.pem");
    let not_pem = data("README.md");
    let out = agent(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--kbs-ca",
        not_pem.to_str().unwrap(),
        "--tee",
        "sample",
        "a/b/c",
    ]);
    assert_fails_with(&out, 2, "holds no PEM certificate");
    // A stream (or a huge wrong file) is read up to a cap, not to the end.
    let out = agent(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--kbs-ca",
        "/dev/zero",
        "--tee",
        "sample",
        "a/b/c",
    ]);
    assert_fails_with(
        &out,
        2,
        "read KBS CA file /dev/zero: it holds more than 4096 KiB",
    );
}

#[test]
fn plain_http_needs_the_opt_in() {
    let w = World::new("http-refused", 1, |_| {});
    let url = w.kbs.url();
    let out = agent(&["get", "--kbs", &url, "--tee", "sample", "default/key/k0"]);
    assert_fails_with(&out, 2, "is plain http: use https, or pass --insecure-http");
    assert!(w.kbs.requests().is_empty(), "nothing may be sent");
    let out = agent(&[
        "get",
        "--kbs",
        &url,
        "--insecure-http",
        "--tee",
        "sample",
        "default/key/k0",
    ]);
    assert_exit(&out, 0);
    assert_logged(&out, "using plain http");
}

#[test]
fn a_url_without_scheme_is_refused_up_front() {
    let w = World::new("no-scheme", 1, |_| {});
    let hostport = w.kbs.addr().to_string();
    let out = agent(&[
        "get",
        "--kbs",
        &hostport,
        "--tee",
        "sample",
        "default/key/k0",
    ]);
    assert_fails_with(&out, 2, &format!("has no scheme: write https://{hostport}"));
    assert!(w.kbs.requests().is_empty());
}

#[test]
fn an_unreachable_kbs_is_retried_until_the_deadline() {
    // A port nobody listens on: bind, note the port, close.
    let port = crate::util::closed_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = agent(&[
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
    assert_exit(&out, 4);
    let log = stderr(&out);
    assert!(log.contains("could not authenticate at"), "{log}");
    assert!(log.contains("retrying"), "{log}");
}

/// The TLS failures an operator meets most, each in words that say what to
/// change: a certificate for another name, an expired one, and a KBS that
/// serves plain http.
#[test]
fn tls_failures_say_what_to_change() {
    let ca = data("tls/ca.pem");
    let get = |url: &str| {
        agent(&[
            "get",
            "--kbs",
            url,
            "--kbs-ca",
            ca.to_str().unwrap(),
            "--tee",
            "sample",
            "default/key/k0",
        ])
    };
    // The test certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    let other_name = World::new("tls-name", 1, |c| {
        c.listen = "127.0.0.2:0".parse().unwrap();
        c.tls = Some(Tls {
            cert_chain: data("tls/server.pem"),
            key: data("tls/server.key"),
        })
    });
    let out = get(&other_name.kbs.url());
    assert_fails_with(&out, 4, "its certificate is valid only for ");
    assert_logged(&out, "not for the host in the KBS URL");
    assert_not_logged(&out, "IpAddress(");
    let expired = World::new("tls-expired", 1, |c| {
        c.tls = Some(Tls {
            cert_chain: data("tls/expired.pem"),
            key: data("tls/expired.key"),
        })
    });
    let out = get(&expired.kbs.url());
    assert_fails_with(
        &out,
        4,
        "its certificate is outside its validity period: renew it, or check this VM's clock",
    );
    let plain = World::new("tls-plain", 1, |_| {});
    let url = plain.kbs.url().replacen("http://", "https://", 1);
    let out = get(&url);
    assert_fails_with(
        &out,
        4,
        "the server does not speak TLS: check the scheme and the port of the KBS URL",
    );
}
