// SPDX-License-Identifier: Apache-2.0
//! `get` success paths: one and many resources in one attested session.

use std::os::unix::fs::PermissionsExt;

use crate::util::{
    assert_exit, assert_fails_with, assert_logged, assert_not_logged, stderr, World,
};

#[test]
fn one_resource_to_a_file() {
    let w = World::new("one-file", 1, |_| {});
    let file = w.out("root.key");
    let out = w.get(&["default/luks/root", "--output", file.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(&file).unwrap(), w.secret("default/luks/root"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(out.stdout.is_empty());
    let s = w.kbs.stats();
    assert_eq!((s.auth, s.attest, s.resource), (1, 1, 1));
    let log = stderr(&out);
    for step in [
        "auth: ",
        "evidence: sample evidence",
        "attest: the KBS accepted",
        "resource default/luks/root: ",
    ] {
        assert!(log.contains(step), "missing {step:?} in:\n{log}");
    }
}

#[test]
fn eight_resources_in_one_session() {
    let w = World::new("eight", 8, |_| {});
    let dir = w.out("secrets");
    let paths: Vec<String> = (0..8).map(|i| format!("default/key/k{i}")).collect();
    let mut args: Vec<&str> = paths.iter().map(String::as_str).collect();
    args.extend(["--output", dir.to_str().unwrap()]);
    let out = w.get(&args);
    assert_exit(&out, 0);
    for p in &paths {
        let file = dir.join(p);
        assert_eq!(std::fs::read(&file).unwrap(), w.secret(p), "{p}");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let s = w.kbs.stats();
    assert_eq!(
        (s.auth, s.attest, s.resource),
        (1, 1, 8),
        "one handshake for all eight"
    );
    assert_logged(&out, "fetched 8 resource(s) in one attested session");
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("default/key"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn piped_stdout_receives_the_raw_secret() {
    let w = World::new("stdout", 1, |_| {});
    let out = w.get(&["kbs:///default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let out = w.get(&["default/key/k0", "--output", "-"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
}

#[test]
fn a_repeated_resource_is_fetched_once() {
    let w = World::new("repeat", 1, |_| {});
    let out = w.get(&["default/key/k0", "kbs:///default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert_eq!(w.kbs.stats().resource, 1);
    assert_logged(&out, "listed twice");
}

#[test]
fn evidence_command_binds_the_given_nonce() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let nonce = "PI0aozgydOubNNe3Vjb0Q9n3+MvpRwe8UuGffNiyBcA=";
    let out = crate::util::agent(&["evidence", "--tee", "sample", "--nonce", nonce]);
    assert_exit(&out, 0);
    let body: kbs_types::Attestation = serde_json::from_slice(&out.stdout).expect("an Attestation");
    assert_eq!(body.runtime_data.nonce, nonce);
    assert_eq!(body.tee_evidence.additional_evidence, "");
    // Recompute the binding independently and compare with report_data.
    let claims = serde_json::json!({
        "additional-evidence": "",
        "nonce": nonce,
        "tee-pubkey": body.runtime_data.tee_pubkey,
    });
    let digest = ring::digest::digest(
        &ring::digest::SHA384,
        &serde_json_canonicalizer::to_vec(&claims).unwrap(),
    );
    assert_eq!(
        body.tee_evidence.primary_evidence["report_data"],
        STANDARD.encode(digest.as_ref())
    );
    assert_eq!(body.tee_evidence.primary_evidence["svn"], "1");
}

/// Cargo's scratch directory for tests, when it is on persistent storage
/// (else `test` is reported skipped): where the not-on-tmpfs warnings show.
fn disk_dir(test: &str) -> Option<&'static std::path::Path> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .unwrap();
    if String::from_utf8_lossy(&fs.stdout).trim() == "tmpfs" {
        println!("SKIPPED {test}: the target directory is on tmpfs");
        return None;
    }
    Some(dir)
}

/// `get … > FILE` on persistent storage: the secret goes there, as asked,
/// with the same warning as `--output` gives there.
#[test]
fn stdout_redirected_to_a_file_on_disk_draws_a_warning() {
    let w = World::new("stdout-disk", 1, |_| {});
    let Some(dir) = disk_dir("stdout_redirected_to_a_file_on_disk_draws_a_warning") else {
        return;
    };
    let path = dir.join(format!("stdout-disk-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let out = w
        .get_cmd(&["default/key/k0"])
        .stdout(file)
        .output()
        .unwrap();
    let written = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_exit(&out, 0);
    assert_eq!(written, w.secret("default/key/k0"));
    assert_logged(&out, "stdout is a file that is not on tmpfs or ramfs");
    // A pipe is no file: no warning.
    let out = w.get(&["default/key/k0"]);
    assert_exit(&out, 0);
    assert_not_logged(&out, "stdout is a file");
}

/// `--output DIR` on persistent storage: allowed for an operator, with one
/// warning for the directory, however many files go there.
#[test]
fn output_dir_on_disk_draws_one_warning() {
    let w = World::new("outdir-disk", 3, |_| {});
    let Some(base) = disk_dir("output_dir_on_disk_draws_one_warning") else {
        return;
    };
    // Removed on drop, even when an assertion fails; the agent creates it.
    let dir = crate::util::TempDir(base.join(format!("outdir-disk-{}", std::process::id())));
    let out = w.get(&[
        "--output",
        dir.path().to_str().unwrap(),
        "default/key/k0",
        "default/key/k1",
        "default/key/k2",
    ]);
    assert_exit(&out, 0);
    for i in 0..3 {
        let path = format!("default/key/k{i}");
        assert_eq!(
            std::fs::read(dir.path().join(&path)).unwrap(),
            w.secret(&path)
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("is not on tmpfs or ramfs").count(),
        1,
        "one warning for the one directory: {stderr}"
    );
}

/// Under systemd, stdout is journald's stream (`JOURNAL_STREAM` names its
/// device and inode): a secret sent there would be logged. Refused before
/// any traffic, unless `--output -` asks. Another socket (a parent's
/// socketpair, as Node.js gives its children) is a pipe like any other.
#[test]
fn stdout_that_is_the_journal_is_refused() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let w = World::new("stdout-socket", 1, |_| {});
    for (extra, journal, code) in [
        (&[][..], true, 2),
        (&["--output", "-"][..], true, 0),
        (&[][..], false, 0),
    ] {
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let meta = std::fs::File::from(std::os::fd::OwnedFd::from(theirs.try_clone().unwrap()))
            .metadata()
            .unwrap();
        let mut args = vec!["default/key/k0"];
        args.extend_from_slice(extra);
        let mut cmd = w.get_cmd(&args);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let out = cmd
            .stdout(std::os::fd::OwnedFd::from(theirs))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_exit(&out, code);
        let mut sent = Vec::new();
        ours.set_nonblocking(true).unwrap();
        let _ = ours.read_to_end(&mut sent);
        if code == 2 {
            assert_logged(
                &out,
                "refusing to write a secret to stdout, which is the journal",
            );
            assert!(sent.is_empty());
            assert_eq!(w.kbs.stats().auth, 0, "refused before any traffic");
        } else {
            assert_eq!(sent, w.secret("default/key/k0"), "{extra:?} {journal}");
        }
    }
}

/// A unit whose stdout and stderr are separate journal streams has
/// `JOURNAL_STREAM` name stderr's: stdout is told by its peer, journald's
/// stream socket (here under the test's root).
#[test]
fn stdout_connected_to_journald_is_refused() {
    let w = World::new("stdout-journald", 1, |_| {});
    let root = crate::util::TempDir::new("stdout-journald");
    let socket = root.path().join("run/systemd/journal/stdout");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let _journald = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let out = w
        .get_cmd(&["default/key/k0"])
        .env("CVM_ATTEST_ROOT", root.path())
        .stdout(std::os::fd::OwnedFd::from(stream))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        2,
        "refusing to write a secret to stdout, which is the journal",
    );
    assert_eq!(w.kbs.stats().auth, 0, "refused before any traffic");
}

/// Started with stdin, stdout and stderr closed, the agent points them at
/// /dev/null first (`src/start.rs`), as Rust's runtime would: the secret's
/// file never takes number 1 or 2, so no log line lands in it, and
/// `--output -` sends the secret to /dev/null, not into another file.
#[test]
fn closed_stdout_and_stderr_become_dev_null() {
    let w = World::new("closed-fds", 2, |_| {});
    let dir = crate::util::TempDir::new("closed-fds");
    let file = dir.path().join("k0");
    let closed = |extra: &[&str], script: &str| {
        let cmd = w.get_cmd(extra);
        crate::util::wrapped(&["sh", "-c", script, "sh"], &cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let out = closed(
        &["-vvv", "--output", file.to_str().unwrap(), "default/key/k0"],
        r#"shift && exec "$@" <&- >&- 2>&-"#,
    );
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(&file).unwrap(), w.secret("default/key/k0"));
    let out = closed(
        &["--output", "-", "default/key/k1"],
        r#"shift && exec "$@" >&-"#,
    );
    assert_exit(&out, 0);
    assert_logged(&out, "stdout is /dev/null: the secret is thrown away");
}

/// A stdout pipe nobody reads: the write fails and the agent says so, as
/// SIGPIPE is ignored (`src/start.rs`), instead of dying of the signal.
#[test]
fn a_closed_pipe_on_stdout_is_an_error_not_a_signal() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let w = World::new("broken-pipe", 1, |_| {});
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let out = w
        .get_cmd(&["--output", "-", "default/key/k0"])
        .stdout(write)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_fails_with(&out, 1, "write the secret to stdout");
}

/// `get … >/dev/null` succeeds, but says that the secret went nowhere.
#[test]
fn stdout_to_dev_null_draws_a_warning() {
    let w = World::new("stdout-null", 1, |_| {});
    let out = w
        .get_cmd(&["default/key/k0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_logged(&out, "stdout is /dev/null: the secret is thrown away");
}
