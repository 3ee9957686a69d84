// SPDX-License-Identifier: Apache-2.0
//! No secret, token, cookie or key material may reach the agent's stderr,
//! even at maximum verbosity and on failure paths.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::util::{
    agent, assert_exit, data, stderr, Endpoint, Fault, FaultKind, Tls, Tmpfs, World,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn nothing_secret_in_stderr_at_maximum_verbosity_over_http() {
    check_verbose_run(false);
}

#[test]
fn nothing_secret_in_stderr_at_maximum_verbosity_over_https() {
    check_verbose_run(true);
}

fn check_verbose_run(tls: bool) {
    let w = World::new("leaks", 8, |c| {
        if tls {
            c.tls = Some(Tls {
                cert_chain: data("tls/server.pem"),
                key: data("tls/server.key"),
            });
        }
    });
    // Exercise retries and a dropped stream too, so their log lines are checked.
    let status = FaultKind::Status {
        code: 503,
        retry_after: None,
    };
    w.kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 2,
        kind: status,
    });
    w.kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 1,
        kind: FaultKind::Drop,
    });
    let (url, ca, dir) = (w.kbs.url(), data("tls/ca.pem"), w.out("out"));
    let mut args: Vec<&str> = vec!["-vvv", "get", "--kbs", &url, "--tee", "sample"];
    if tls {
        args.extend(["--kbs-ca", ca.to_str().unwrap()]);
    } else {
        args.push("--insecure-http");
    }
    let paths: Vec<String> = (0..8).map(|i| format!("default/key/k{i}")).collect();
    args.extend(paths.iter().map(String::as_str));
    args.extend(["--output", dir.to_str().unwrap()]);
    let out = agent(&args);
    assert_exit(&out, 0);
    let log = stderr(&out);
    assert!(
        log.lines().count() > 20,
        "maximum verbosity should say a lot:\n{log}"
    );
    for (path, secret) in &w.secrets {
        let text = String::from_utf8_lossy(&secret[..secret.len() - 4]).into_owned();
        for form in [
            text,
            hex(secret),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ] {
            assert!(!log.contains(&form), "{path} leaked as {form}");
        }
    }
    // Session cookies as the KBS recorded them.
    for r in w.kbs.requests() {
        for (name, value) in &r.headers {
            if name == "cookie" {
                let id = value.trim_start_matches("kbs-session-id=");
                assert!(!log.contains(id), "session id leaked");
            }
        }
    }
    // Tokens (JWTs) and JWE members are base64url JSON: they start with eyJ.
    assert!(!log.contains("eyJ"), "a token or JWE header leaked");
}

#[test]
fn nothing_secret_in_stderr_when_delivery_fails() {
    let w = World::new("leaks-fail", 1, |_| {});
    // A read-only directory: writing fails after the fetch.
    let dir = w.out("read-only");
    let Some(_ro) = Tmpfs::mount_read_only(&dir, 0o755) else {
        println!("SKIPPED nothing_secret_in_stderr_when_delivery_fails: needs root to mount");
        return;
    };
    let target = dir.join("key");
    let out = w.get(&[
        "-vvv",
        "default/key/k0",
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    let log = stderr(&out);
    assert!(log.contains("Read-only file system"), "{log}");
    assert_eq!(w.kbs.stats().resource, 1, "it failed after the fetch");
    let secret = w.secret("default/key/k0");
    assert!(!log.contains(&String::from_utf8_lossy(&secret[..secret.len() - 4]).into_owned()));
    assert!(!log.contains("eyJ"));
}

/// A crash must not dump the agent's memory (its key, the secrets) to disk,
/// and other processes of its user must not read that memory. The kernel
/// shows a process that is not dumpable by giving its /proc files to root:
/// run as nobody, the agent's `/proc/PID/mem` belongs to root once it is
/// past its first lines, checked while the KBS holds the resource request.
#[test]
fn the_agent_cannot_dump_core_or_be_read_by_its_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED the_agent_cannot_dump_core_or_be_read_by_its_user: needs root to become nobody");
        return;
    }
    let w = World::new("nodump", 1, |_| {});
    w.kbs.push_fault(Fault {
        endpoint: Endpoint::Resource,
        count: 1,
        kind: FaultKind::Delay(std::time::Duration::from_secs(3)),
    });
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let child = crate::util::wrapped(&nobody, &w.get_cmd(&["default/key/k0"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    w.wait_for_request("/resource/");
    use std::os::unix::fs::MetadataExt;
    let mem = std::fs::metadata(format!("/proc/{}/mem", child.id())).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "{status}"
    );
    assert_eq!(
        mem.uid(),
        0,
        "/proc/PID/mem of a dumpable process is its user's"
    );
}
