// SPDX-License-Identifier: Apache-2.0
//! Command-line behaviour that needs no KBS: help, version, refusals made
//! before any traffic.

use crate::util::{
    agent, agent_cmd, assert_exit, assert_fails_with, assert_logged, assert_not_logged, stderr,
};

#[test]
fn version_and_help_read_well() {
    let out = agent(&["--version"]);
    assert_exit(&out, 0);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("cvm-attest {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = agent(&["--help"]);
    assert_exit(&out, 0);
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "get",
        "evidence",
        "Exit codes",
        "5 no usable TEE",
        "--verbose",
        "--quiet",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
    let out = agent(&["get", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--kbs <URL>",
        "--kbs-ca <PEM>",
        "--insecure-http",
        "--tee",
        "--output",
        "kbs:///repo/type/tag",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from get --help:\n{help}"
        );
    }
}

#[test]
fn bad_resource_paths_are_refused_before_any_traffic() {
    let out = agent(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--tee",
        "sample",
        "default/luks",
    ]);
    assert_fails_with(&out, 2, "has 2 path segments");
}

#[test]
fn several_resources_need_a_directory() {
    let out = agent(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--tee",
        "sample",
        "a/b/c",
        "a/b/d",
    ]);
    assert_fails_with(&out, 2, "2 resources need --output DIR");
}

#[test]
fn no_tee_is_chosen_silently() {
    // An empty root: no TEE interface at all. `sample` is never the fallback.
    let root = crate::util::TempDir::new("no-tee");
    let out = agent_cmd(&["evidence"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    assert_fails_with(&out, 5, "no TEE platform detected: no TEE interface found");
    assert_logged(&out, "or name one with --tee");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_secret_is_never_written_to_a_terminal() {
    // A pseudo-terminal stands in for the operator's terminal.
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the given integers.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        eprintln!(
            "SKIPPED a_secret_is_never_written_to_a_terminal: openpty failed (no /dev/ptmx here)"
        );
        return;
    }
    // SAFETY: slave is a fresh descriptor owned by nothing else.
    let tty = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let out = agent_cmd(&[
        "get",
        "--kbs",
        "https://127.0.0.1:1",
        "--tee",
        "sample",
        "a/b/c",
    ])
    .stdout(tty)
    .output()
    .unwrap();
    // SAFETY: master is ours and closed once.
    unsafe { libc::close(master) };
    assert_fails_with(&out, 2, "refusing to print a secret to the terminal");
}

/// The units helper, run by hand or handed bad arguments: usage (exit 2)
/// or the reason on its one stdout line (exit 1), before any bus traffic.
#[test]
fn the_units_helper_refuses_bad_arguments() {
    let helper = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cvm-attest-units"))
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .output()
            .unwrap()
    };
    for args in [&[][..], &["-v"], &["soon", "reload:a.service"], &["500"]] {
        let out = helper(args);
        assert_exit(&out, 2);
        assert!(
            stderr(&out)
                .starts_with("usage: cvm-attest-units [-q] [-v]... TIMEOUT_MS ACTION:UNIT..."),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = helper(&["500", "reload:a.service", "stop:b.service"]);
    assert_exit(&out, 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "'stop:b.service' is not ACTION:UNIT with ACTION reload, restart or reload-or-restart\n"
    );
}

/// `--output` is renamed over: a symlink (`/dev/stdout` is one) or a device
/// there would be replaced by a file holding the secret. Refused before
/// any traffic, and left as it was.
#[test]
fn an_output_that_is_not_a_regular_file_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let w = crate::util::World::new("output-special", 1, |_| {});
    let link = w.out("to-stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    for target in [link.to_str().unwrap(), "/dev/null"] {
        let out = w.get(&["default/key/k0", "--output", target]);
        assert_fails_with(
            &out,
            2,
            &format!("{target} is not a regular file (a symlink, directory, device or pipe)"),
        );
        assert_logged(&out, "pass --output - for stdout");
    }
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // In a directory of outputs too, before anything is written.
    let dir = w.out("many");
    std::fs::create_dir_all(dir.join("default/key")).unwrap();
    std::os::unix::fs::symlink("/proc/self/fd/1", dir.join("default/key/k0")).unwrap();
    let out = w.get(&[
        "default/key/k0",
        "default/luks/root",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert_fails_with(&out, 2, "default/key/k0 is not a regular file");
    assert_logged(&out, "remove it, or name another directory");
    assert_not_logged(&out, "--output -");
    assert!(!dir.join("default/luks/root").exists());
    assert!(w.kbs.requests().is_empty(), "refused before any traffic");
}

/// An `--output` that cannot be written is found before any traffic: one
/// that names a directory (a trailing '/'), one under a file.
#[test]
fn an_output_that_cannot_be_written_is_refused_before_any_traffic() {
    let w = crate::util::World::new("output-blocked", 1, |_| {});
    let file = w.out("a-file");
    std::fs::write(&file, b"").unwrap();
    let under_file = file.join("sub/root.key");
    let slash = format!("{}/", w.out("new-dir").display());
    for (args, why) in [
        (
            vec!["default/key/k0", "--output", under_file.to_str().unwrap()],
            format!(
                "{} is not a directory, so {} cannot be written",
                file.display(),
                under_file.display()
            ),
        ),
        (
            vec!["default/key/k0", "--output", &slash],
            format!("--output {slash} ends in '/'; with one resource it names the file"),
        ),
        (
            vec![
                "default/key/k0",
                "default/luks/root",
                "--output",
                under_file.to_str().unwrap(),
            ],
            format!("{} is not a directory", file.display()),
        ),
    ] {
        let out = w.get(&args);
        assert_fails_with(&out, 2, &why);
    }
    assert!(w.kbs.requests().is_empty(), "refused before any traffic");
    assert_eq!(std::fs::read(&file).unwrap(), b"");
}

/// A resource listed twice is fetched once, and `--output` still names the
/// directory that two names ask for.
#[test]
fn a_resource_listed_twice_still_goes_to_a_directory() {
    let w = crate::util::World::new("output-twice", 1, |_| {});
    let dir = w.out("twice");
    let out = w.get(&[
        "default/key/k0",
        "default/key/k0",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert_logged(&out, "default/key/k0 is listed twice; fetching it once");
    assert_eq!(
        std::fs::read(dir.join("default/key/k0")).unwrap(),
        w.secret("default/key/k0")
    );
    assert_eq!(w.kbs.stats().resource, 1);
}

/// Only device TCTIs are supported: anything else is a bad argument,
/// before any TPM, network or TEE work.
#[test]
fn a_tcti_that_is_not_a_device_is_a_bad_argument() {
    for args in [
        &["probe", "--tcti", "swtpm:port=2321"][..],
        &[
            "get",
            "--kbs",
            "https://127.0.0.1:1",
            "--tcti",
            "mssim:",
            "a/b/c",
        ],
        &["evidence", "--tcti", "device:relative/tpm"],
    ] {
        let out = agent(args);
        assert_fails_with(
            &out,
            2,
            "is not supported: give the TPM device node as device:PATH",
        );
    }
}

/// Journal priority prefixes only when stderr is the stream JOURNAL_STREAM
/// names (its device and inode, systemd.exec(5)); a stderr redirected
/// elsewhere gets plain lines.
#[test]
fn journal_prefixes_only_on_the_journal_stream() {
    use std::os::unix::fs::MetadataExt;
    let dir = crate::util::TempDir::new("journal-stream");
    let run = |name: &str, stream: Option<&str>| {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let m = file.metadata().unwrap();
        let this_file = format!("{}:{}", m.dev(), m.ino());
        let out = agent_cmd(&["decode", "/nonexistent/report"])
            .env("JOURNAL_STREAM", stream.unwrap_or(&this_file))
            .stderr(file)
            .output()
            .unwrap();
        assert_exit(&out, 1);
        std::fs::read_to_string(&path).unwrap()
    };
    let text = run("journal", None);
    assert!(text.starts_with("<3>"), "{text}");
    let text = run("elsewhere", Some("1:1"));
    assert!(text.starts_with("error: "), "{text}");
}
