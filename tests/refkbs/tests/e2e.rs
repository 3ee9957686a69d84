// SPDX-License-Identifier: Apache-2.0
//! End-to-end tests: drive an in-process refkbs with a raw HTTP/1.1 client over
//! `TcpStream`, compute sample evidence as a client would, and decrypt the JWE
//! with an independent implementation of kbs-protocol.md §2.3.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use aes_kw::KekAes256;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::elliptic_curve::sec1::{FromEncodedPoint as _, ToEncodedPoint as _};
use p256::{EncodedPoint, PublicKey, SecretKey};
use refkbs::{Config, Endpoint, Fault, FaultKind, Policy, RefKbs, Rule};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest::{digest, SHA256, SHA384};
use serde_json::{json, Value};

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn problem(&self) -> (u16, String, String) {
        assert_eq!(
            self.header("content-type"),
            None,
            "problems have no content type"
        );
        let v = self.json();
        let kind = v["type"].as_str().expect("type");
        let variant = kind
            .strip_prefix("https://github.com/confidential-containers/kbs/errors/")
            .expect("type prefix");
        (
            self.status,
            variant.to_string(),
            v["detail"].as_str().expect("detail").to_string(),
        )
    }
}

/// One request on a fresh connection; reads to EOF (`Connection: close`).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = stream.shutdown(Shutdown::Both);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    let head = String::from_utf8(raw[..split].to_vec()).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line")[9..12]
        .parse()
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

struct Client {
    addr: SocketAddr,
    key: SecretKey,
    cookie: Option<String>,
}

impl Client {
    fn new(kbs: &RefKbs) -> Client {
        let scalar = digest(&SHA256, b"e2e tee key");
        Client {
            addr: kbs.addr(),
            key: SecretKey::from_slice(scalar.as_ref()).expect("key"),
            cookie: None,
        }
    }

    fn tee_pubkey(&self) -> Value {
        let point = self.key.public_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y"))})
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let cookie = self.cookie.as_ref().map(|c| format!("kbs-session-id={c}"));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        http(self.addr, method, path, &headers, body)
    }

    fn auth(&mut self) -> (Response, String) {
        let body = br#"{"version":"0.4.0","tee":"sample","extra-params":{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}"#;
        let response = self.send("POST", "/kbs/v0/auth", body);
        assert_eq!(response.status, 200);
        let cookie = response.header("set-cookie").expect("cookie").to_string();
        let id = cookie
            .strip_prefix("kbs-session-id=")
            .expect("name")
            .split(';')
            .next()
            .expect("id");
        self.cookie = Some(id.to_string());
        let nonce = response.json()["nonce"]
            .as_str()
            .expect("nonce")
            .to_string();
        (response, nonce)
    }

    fn attestation(&self, nonce: &str) -> Vec<u8> {
        let runtime =
            json!({"additional-evidence": "", "nonce": nonce, "tee-pubkey": self.tee_pubkey()});
        let canonical = serde_json_canonicalizer::to_vec(&runtime).expect("jcs");
        let report_data = STANDARD.encode(digest(&SHA384, &canonical));
        let body = json!({"init-data": null,
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.tee_pubkey()},
            "tee-evidence": {"primary_evidence": {"svn": "1", "report_data": report_data}, "additional_evidence": ""}});
        serde_json::to_vec(&body).expect("json")
    }

    /// auth + attest; returns the token.
    fn handshake(&mut self) -> String {
        let (_, nonce) = self.auth();
        let response = self.send("POST", "/kbs/v0/attest", &self.attestation(&nonce));
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Independent ECDH-ES+A256KW / A256GCM decryption (kbs-protocol.md §2.3).
    fn decrypt(&self, jwe: &Value) -> Vec<u8> {
        let field = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(jwe[name].as_str().expect(name))
                .expect("b64")
        };
        let protected_text = jwe["protected"].as_str().expect("protected");
        let header: Value = serde_json::from_slice(&field("protected")).expect("header");
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        assert_eq!(header["enc"], "A256GCM");
        let coord = |n: &str| {
            URL_SAFE_NO_PAD
                .decode(header["epk"][n].as_str().expect(n))
                .expect("coord")
        };
        let (x, y) = (coord("x"), coord("y"));
        let point =
            EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
        let epk = PublicKey::from_encoded_point(&point).expect("epk");
        let z = p256::ecdh::diffie_hellman(self.key.to_nonzero_scalar(), epk.as_affine());
        let mut kdf = vec![0, 0, 0, 1];
        kdf.extend_from_slice(z.raw_secret_bytes());
        kdf.extend_from_slice(&[0, 0, 0, 14]);
        kdf.extend_from_slice(b"ECDH-ES+A256KW");
        kdf.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let kek = digest(&SHA256, &kdf);
        let mut cek = [0u8; 32];
        KekAes256::new(kek.as_ref().into())
            .unwrap(&field("encrypted_key"), &mut cek)
            .expect("unwrap");
        let mut data = field("ciphertext");
        data.extend_from_slice(&field("tag"));
        let iv: [u8; 12] = field("iv").try_into().expect("iv");
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).expect("cek"));
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(protected_text.as_bytes()),
                &mut data,
            )
            .expect("gcm");
        plain.to_vec()
    }
}

fn resources() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("refkbs-e2e-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("default/key")).expect("mkdir");
    std::fs::write(dir.join("default/key/test"), b"this is a test data\n").expect("write");
    dir
}

fn start(configure: impl FnOnce(&mut Config)) -> RefKbs {
    let mut config = Config::new(resources());
    config.quiet = true;
    config.policy = Policy::allow_all();
    configure(&mut config);
    RefKbs::start(config).expect("start")
}

#[test]
fn happy_path_matches_trustee_shapes() {
    let kbs = start(|_| {});
    let mut client = Client::new(&kbs);
    let (auth, nonce) = client.auth();
    assert_eq!(auth.header("content-type"), Some("application/json"));
    let cookie = auth.header("set-cookie").expect("cookie").to_string();
    let (name_id, expires) = cookie.split_once("; Expires=").expect("only Expires");
    assert_eq!(name_id.len(), "kbs-session-id=".len() + 32);
    assert!(
        expires.ends_with(" GMT") && !expires.contains(';'),
        "{expires}"
    );
    assert_eq!(nonce.len(), 44);
    assert_eq!(
        String::from_utf8(auth.body.clone()).expect("utf8"),
        format!(r#"{{"nonce":"{nonce}","extra-params":""}}"#)
    );

    let attest = client.send("POST", "/kbs/v0/attest", &client.attestation(&nonce));
    assert_eq!(attest.status, 200);
    assert_eq!(attest.header("content-type"), Some("application/json"));
    assert_eq!(attest.header("set-cookie"), Some(cookie.as_str()));
    let token = attest.json()["token"].as_str().expect("token").to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"]["crv"], "P-256");
    // A second attest on the attested session returns the stored token.
    let again = client.send("POST", "/kbs/v0/attest", &client.attestation(&nonce));
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["token"].as_str(), Some(token.as_str()));
    // The body is parsed before the session is looked up: a malformed one
    // is refused even on an attested session.
    let malformed = client.send("POST", "/kbs/v0/attest", b"{\"not\":\"checked\"}");
    assert_eq!(malformed.status, 401);

    let resource = client.send("GET", "/kbs/v0/resource/default/key/test?x=1", b"");
    assert_eq!(resource.status, 200);
    assert_eq!(resource.header("content-type"), Some("application/json"));
    let jwe = resource.json();
    let keys: Vec<&str> = resource
        .body
        .split(|b| *b == b'"')
        .skip(1)
        .step_by(4)
        .take(5)
        .map(|k| std::str::from_utf8(k).expect("utf8"))
        .collect();
    assert_eq!(
        keys,
        ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    );
    assert_eq!(client.decrypt(&jwe), b"this is a test data\n");

    // Bearer token without a cookie works too.
    let bearer = format!("Bearer {token}");
    let response = http(
        kbs.addr(),
        "GET",
        "/kbs/v0/resource/default/key/test",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(client.decrypt(&response.json()), b"this is a test data\n");

    let recorded = kbs.requests();
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/kbs/v0/auth");
    assert!(recorded[0].body.starts_with(r#"{"version":"0.4.0""#));
    assert!(recorded
        .iter()
        .any(|r| r.path == "/kbs/v0/resource/default/key/test?x=1"));
    let stats = kbs.stats();
    // Three attest requests: the first, the repeat, the malformed one.
    assert_eq!((stats.auth, stats.attest, stats.resource), (1, 3, 2));
    assert!(stats.busy > Duration::ZERO);
}

#[test]
fn error_documents() {
    let kbs = start(|_| {});
    let mut client = Client::new(&kbs);
    let path = "/kbs/v0/resource/default/key/test";
    assert_eq!(
        client.send("GET", path, b"").problem(),
        (
            401,
            "TokenNotFound".into(),
            "Attestation Token not found".into()
        )
    );
    let bad = client
        .send(
            "POST",
            "/kbs/v0/auth",
            br#"{"version":"0.3.0","tee":"sample","extra-params":""}"#,
        )
        .problem();
    assert_eq!(bad, (401, "AttestationError".into(),
        "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0".into()));
    let bad = client.send("POST", "/kbs/v0/auth", b"{").problem();
    assert_eq!(
        bad.2,
        "Attestation error: RCAR handshake Auth failed: deserialize Request"
    );
    let attest_failed = "Attestation error: RCAR handshake Attest failed".to_string();
    assert_eq!(
        client.send("POST", "/kbs/v0/attest", b"{}").problem().2,
        attest_failed
    );

    let (_, nonce) = client.auth();
    let mut body: Value = serde_json::from_slice(&client.attestation(&nonce)).expect("json");
    body["tee-evidence"]["primary_evidence"]["report_data"] = json!(STANDARD.encode([0u8; 48]));
    let wrong = client.send(
        "POST",
        "/kbs/v0/attest",
        &serde_json::to_vec(&body).expect("json"),
    );
    assert_eq!(
        wrong.problem(),
        (401, "AttestationError".into(), attest_failed.clone())
    );
    let wrong_nonce = client.attestation("AAAA");
    assert_eq!(
        client
            .send("POST", "/kbs/v0/attest", &wrong_nonce)
            .problem()
            .2,
        attest_failed
    );

    client.handshake();
    let missing = client.send("GET", "/kbs/v0/resource/default/key/missing", b"");
    assert_eq!(
        missing.problem(),
        (
            401,
            "PluginInternalError".into(),
            "Plugin internal error".into()
        )
    );
    assert_eq!(missing.body, br#"{"type":"https://github.com/confidential-containers/kbs/errors/PluginInternalError","detail":"Plugin internal error"}"#);
    assert_eq!(
        client
            .send("GET", "/kbs/v0/resource/default/..%2F/x", b"")
            .problem()
            .1,
        "PluginInternalError"
    );
    assert_eq!(
        client
            .send("GET", "/kbs/v0/resource/default/key", b"")
            .problem()
            .1,
        "PluginInternalError"
    );
    assert_eq!(
        client.send("GET", "/kbs/v0/auth", b"").problem(),
        (404, "PluginNotFound".into(), "Plugin auth not found".into())
    );
    assert_eq!(client.send("POST", "/kbs/v0/nope", b"").problem().0, 404);
    assert_eq!(client.send("GET", "/healthz", b"").status, 200);
    // Declared too large: answered before any body byte is read.
    let mut stream = TcpStream::connect(kbs.addr()).expect("connect");
    let head = format!(
        "POST /kbs/v0/attest HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        refkbs::BODY_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).expect("write");
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).expect("read");
    assert_eq!(&status, b"HTTP/1.1 413");
}

/// Trustee's default resource policy (`Config::new`'s) refuses `sample`
/// evidence, as a stock Trustee KBS does (capture wire/policy-deny).
#[test]
fn the_default_policy_refuses_sample() {
    let kbs = start(|c| c.policy = Config::new("/").policy);
    let mut client = Client::new(&kbs);
    client.handshake();
    assert_eq!(
        client
            .send("GET", "/kbs/v0/resource/default/key/test", b"")
            .problem(),
        (401, "PolicyDeny".into(), "Access denied by policy".into())
    );
}

#[test]
fn policy_deny_and_expiry() {
    let kbs = start(|c| {
        c.policy = Policy::from_rules(vec![
            Rule::allow("sample", "default/key/other").expect("rule")
        ]);
    });
    let mut client = Client::new(&kbs);
    let token = client.handshake();
    assert_eq!(
        client
            .send("GET", "/kbs/v0/resource/default/key/test", b"")
            .problem(),
        (401, "PolicyDeny".into(), "Access denied by policy".into())
    );
    kbs.expire_sessions();
    assert_eq!(
        client
            .send("GET", "/kbs/v0/resource/default/key/test", b"")
            .problem()
            .1,
        "TokenNotFound"
    );
    let bearer = format!("Bearer {token}");
    let response = http(
        kbs.addr(),
        "GET",
        "/kbs/v0/resource/default/key/test",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(response.problem().1, "TokenVerifierError");
    assert_eq!(
        client
            .send("POST", "/kbs/v0/attest", &client.attestation("x"))
            .problem()
            .0,
        401
    );
}

#[test]
fn faults() {
    let kbs = start(|_| {});
    let mut client = Client::new(&kbs);
    kbs.push_fault(Fault {
        endpoint: Endpoint::Auth,
        count: 1,
        kind: FaultKind::Status {
            code: 503,
            retry_after: Some(2),
        },
    });
    let response = client.send("POST", "/kbs/v0/auth", b"{}");
    assert_eq!(
        (response.status, response.header("retry-after")),
        (503, Some("2"))
    );

    kbs.push_fault(Fault {
        endpoint: Endpoint::Auth,
        count: 1,
        kind: FaultKind::NonceMismatch,
    });
    let (_, nonce) = client.auth();
    let response = client.send("POST", "/kbs/v0/attest", &client.attestation(&nonce));
    assert_eq!(response.status, 401);

    kbs.push_fault(Fault {
        endpoint: Endpoint::Any,
        count: 1,
        kind: FaultKind::Drop,
    });
    let dropped = client.send(
        "POST",
        "/kbs/v0/auth",
        br#"{"version":"0.4.0","tee":"sample","extra-params":""}"#,
    );
    let declared: usize = dropped
        .header("content-length")
        .expect("length")
        .parse()
        .expect("num");
    assert!(
        dropped.body.len() < declared,
        "{} < {declared}",
        dropped.body.len()
    );

    kbs.push_fault(Fault {
        endpoint: Endpoint::Attest,
        count: 1,
        kind: FaultKind::Truncate,
    });
    let (_, nonce) = client.auth();
    let cut = client.send("POST", "/kbs/v0/attest", &client.attestation(&nonce));
    assert_eq!(
        cut.header("content-length").map(str::to_string),
        Some(cut.body.len().to_string())
    );
    assert!(serde_json::from_slice::<Value>(&cut.body).is_err());

    kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 1,
        kind: FaultKind::Oversize(200_000),
    });
    let big = client.send("GET", "/kbs/v0/resource/default/key/test", b"");
    assert_eq!(big.header("transfer-encoding"), Some("chunked"));
    assert!(big.body.len() > 200_000);

    kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 1,
        kind: FaultKind::Garble,
    });
    let garbled = client.send("GET", "/kbs/v0/resource/default/key/test", b"");
    assert_eq!(garbled.status, 200);
    assert!(serde_json::from_slice::<Value>(&garbled.body).is_err());

    kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 1,
        kind: FaultKind::Delay(Duration::from_millis(100)),
    });
    let started = std::time::Instant::now();
    let delayed = client.send("GET", "/kbs/v0/resource/default/key/test", b"");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(client.decrypt(&delayed.json()), b"this is a test data\n");
}

#[test]
fn session_timeout_expires_cookie() {
    let kbs = start(|c| c.session_timeout = Duration::from_millis(300));
    let mut client = Client::new(&kbs);
    let (_, nonce) = client.auth();
    std::thread::sleep(Duration::from_millis(400));
    let response = client.send("POST", "/kbs/v0/attest", &client.attestation(&nonce));
    assert_eq!(response.problem().1, "AttestationError");
}
