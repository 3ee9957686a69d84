// SPDX-License-Identifier: Apache-2.0
//! `cvm-attest run` as the boot unit runs it, under a re-rooted tree whose
//! /run is a real tmpfs, with the real kernel keyring, a test NOTIFY_SOCKET
//! and the reference KBS. Needs root (for the tmpfs and chown); without it
//! each test prints `SKIPPED …` and returns (CI runs as root).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::util::{
    agent_cmd, assert_exit, assert_fails_with, assert_logged, assert_not_logged, data, stderr,
    Endpoint, Fault, FaultKind, TempDir, Tmpfs, World,
};

/// The secret of the root volume, delivered to its crypttab key file.
const ROOT_VOLUME: &str = "[[secret]]\nname = \"root\"\nresource = \"default/luks/root\"\n  [[secret.cryptsetup]]\n  volume = \"root\"\n";

/// A re-rooted machine: tmpfs /run, /etc/cvm-attest/config.toml, passwd/group.
/// Fields drop in order: the tmpfs is unmounted before its directory goes.
struct Machine {
    _run: Tmpfs,
    dir: TempDir,
    keyring: String,
    tag: String,
}

impl Machine {
    fn new(name: &str, run_size: usize) -> Option<Machine> {
        let dir = TempDir::new(name);
        let Some(run) = Tmpfs::mount(&dir.path().join("run"), run_size) else {
            eprintln!("SKIPPED {name}: needs root to mount a tmpfs");
            return None;
        };
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(etc.join("cvm-attest")).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\ndaemon:x:1:\n").unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/cmdline"),
            "BOOT_IMAGE=/vmlinuz root=/dev/mapper/root quiet\n",
        )
        .unwrap();
        let tag = format!("{}-{}", name, std::process::id());
        Some(Machine {
            dir,
            _run: run,
            keyring: format!("cvm-attest-test-{tag}"),
            tag,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The sample TEE against `kbs` over http, then `rest` (the secrets).
    fn write_sample_config(&self, kbs: &str, rest: &str) {
        self.write_config(&format!(
            "[kbs]\nurl = \"{kbs}\"\ninsecure-http = true\n[tee]\ntype = \"sample\"\n{rest}"
        ));
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.path("etc/cvm-attest/config.toml"), text).unwrap();
    }

    /// The five-sink configuration of the issue, against `kbs`.
    fn five_secrets(&self, kbs: &str) -> String {
        format!(
            r#"
[kbs]
url = "{kbs}"
insecure-http = true
timeout = 30
[tee]
type = "sample"
[delivery]
keyring = "{ring}"

[[secret]]
name = "app-key"
resource = "default/key/k0"
reload = ["sshd.service"]
  [[secret.file]]
  path = "app/k0.key"
  mode = "0440"
  owner = "root"
  group = "daemon"

[[secret]]
name = "tls.key"
resource = "default/key/k1"
restart = ["nginx.service"]
  [[secret.credential]]

[[secret]]
name = "root-luks"
resource = "default/luks/root"
  [[secret.cryptsetup]]
  volume = "root"

[[secret]]
name = "dataset"
resource = "default/key/k2"
  [[secret.keyring]]
  type = "user"
  description = "cvm-test:user-{tag}"
  permissions = "0x3f0b0000"

[[secret]]
name = "dm-key"
resource = "default/key/k3"
  [[secret.keyring]]
  type = "logon"
  description = "cvm-test:logon-{tag}"
"#,
            ring = self.keyring,
            tag = self.tag
        )
    }

    /// Runs `cvm-attest run` with a notify socket; returns output and messages.
    fn run(&self, extra: &[&str]) -> (Output, Vec<String>) {
        self.run_env(extra, &[])
    }

    fn run_env(&self, extra: &[&str], env: &[(&str, &str)]) -> (Output, Vec<String>) {
        self.run_with(extra, env, false)
    }

    /// `private`: in a new anonymous session keyring, as under systemd's
    /// `KeyringMode=private`: nothing under root's user keyring is possessed.
    fn run_with(
        &self,
        extra: &[&str],
        env: &[(&str, &str)],
        private: bool,
    ) -> (Output, Vec<String>) {
        let notify = Notify::bind(&self.path("notify.sock"));
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let mut cmd = unit_cmd(&args);
        cmd.env("CVM_ATTEST_ROOT", self.dir.path())
            .env("NOTIFY_SOCKET", notify.path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if private {
            // SAFETY: keyctl(2) is async-signal-safe and touches no memory of
            // the parent; the pointer argument is NULL (an anonymous keyring).
            unsafe {
                cmd.pre_exec(|| {
                    let null: *const libc::c_char = std::ptr::null();
                    if libc::syscall(libc::SYS_keyctl, libc::KEYCTL_JOIN_SESSION_KEYRING, null) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = cmd.output().unwrap();
        (out, notify.finish())
    }
}

/// The agent as the units start it: root, but without the capabilities
/// that bypass file permissions (`CapabilityBoundingSet=` keeps none), so
/// that a 0400 file is not writable to it, as on a real machine.
fn unit_cmd(args: &[&str]) -> std::process::Command {
    crate::util::wrapped(
        &[
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
        ],
        &agent_cmd(args),
    )
}

/// A NOTIFY_SOCKET drained by a thread, like systemd reads it (the
/// datagram queue holds only a few messages).
struct Notify {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<Vec<String>>,
}

impl Notify {
    fn bind(path: &Path) -> Notify {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let reader = std::thread::spawn(move || {
            let (mut messages, mut buf) = (Vec::new(), [0u8; 4096]);
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) if flag.load(std::sync::atomic::Ordering::SeqCst) => return messages,
                    Err(_) => {}
                }
            }
        });
        Notify {
            path: path.to_owned(),
            stop,
            reader,
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.reader.join().unwrap()
    }
}

/// /proc/keys line for a description: (perm hex, type).
fn proc_key(description: &str) -> Option<(String, String)> {
    let keys = std::fs::read_to_string("/proc/keys").unwrap();
    keys.lines()
        .find(|l| {
            l.ends_with(&format!("{description}: 32")) || l.contains(&format!(" {description}: "))
        })
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4].to_owned(), f[7].to_owned())
        })
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn five_secrets_reach_their_sinks() {
    let Some(m) = Machine::new("run-five", 1 << 20) else {
        return;
    };
    let w = World::new("run-five", 4, |_| {});
    m.write_config(&m.five_secrets(&w.kbs.url()));
    let results = [("sshd.service", "done"), ("nginx.service", "done")];
    let Some(systemd) = tee_emu::systemd1::FakeSystemd::start(m.dir.path(), &results) else {
        return;
    };
    // As the unit makes it (RuntimeDirectoryMode=0700).
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(m.path("run/cvm-attest"))
        .unwrap();
    let (out, notes) = m.run_env(&[], &[("DBUS_SYSTEM_BUS_ADDRESS", systemd.address())]);
    assert_exit(&out, 0);
    assert!(out.stdout.is_empty(), "run prints nothing on stdout");
    // The consumer units were acted on over D-Bus, after delivery.
    let calls: Vec<(&str, String, String)> = systemd
        .calls()
        .into_iter()
        .map(|c| (c.method, c.unit, c.mode))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "ReloadOrTryRestartUnit",
                "sshd.service".to_owned(),
                "replace".to_owned()
            ),
            (
                "TryRestartUnit",
                "nginx.service".to_owned(),
                "replace".to_owned()
            ),
        ]
    );

    let file = m.path("run/cvm-attest/app/k0.key");
    assert_eq!(std::fs::read(&file).unwrap(), w.secret("default/key/k0"));
    assert_eq!(mode(&file), 0o440);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 1), "owner root, group daemon");
    // The group can reach and read it: the directories on the way are
    // searchable by all (0711), not listable.
    assert_eq!(
        (
            mode(&m.path("run/cvm-attest")),
            mode(&m.path("run/cvm-attest/app"))
        ),
        (0o711, 0o711)
    );
    let read = std::process::Command::new("cat")
        .arg(&file)
        .uid(1)
        .gid(1)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(read.stdout, w.secret("default/key/k0"));
    let cred = m.path("run/credstore/tls.key");
    assert_eq!(std::fs::read(&cred).unwrap(), w.secret("default/key/k1"));
    assert_eq!(
        (mode(&cred), mode(&m.path("run/credstore"))),
        (0o400, 0o700)
    );
    let luks = m.path("run/cryptsetup-keys.d/root.key");
    assert_eq!(std::fs::read(&luks).unwrap(), w.secret("default/luks/root"));
    assert_eq!(mode(&luks), 0o400);

    // The keys: in the named keyring under @u, with the configured permissions.
    let (perm, kind) =
        proc_key(&format!("cvm-test:user-{}", m.tag)).expect("the user key is in /proc/keys");
    assert_eq!((perm.as_str(), kind.as_str()), ("3f0b0000", "user"));
    let (perm, kind) =
        proc_key(&format!("cvm-test:logon-{}", m.tag)).expect("the logon key is in /proc/keys");
    assert_eq!((perm.as_str(), kind.as_str()), ("3f010000", "logon"));
    let ring = proc_key(&m.keyring).expect("the named keyring exists");
    assert_eq!(ring.1, "keyring");
    let user_ring = keyutils::Keyring::attach(keyutils::SpecialKeyring::User).unwrap();
    let (_, rings) = user_ring.read().unwrap();
    let named = rings
        .into_iter()
        .find(|r| r.description().unwrap().description == m.keyring)
        .expect("linked under @u");
    let (keys, _) = named.read().unwrap();
    let find = |d: &str| {
        keys.iter()
            .find(|k| k.description().unwrap().description == d)
            .expect(d)
    };
    assert_eq!(
        find(&format!("cvm-test:user-{}", m.tag)).read().unwrap(),
        w.secret("default/key/k2")
    );
    let logon = find(&format!("cvm-test:logon-{}", m.tag));
    assert!(logon.read().is_err(), "a logon key cannot be read back");

    // systemd heard each phase, in order, and READY last.
    let phases: Vec<&str> = notes.iter().map(|n| n.trim_end()).collect();
    let pos = |prefix: &str| {
        phases
            .iter()
            .position(|p| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing: {phases:?}"))
    };
    assert!(pos("STATUS=detecting the TEE") < pos("STATUS=attesting to"));
    assert!(pos("STATUS=attesting to") < pos("STATUS=delivering 5 secret(s)"));
    assert!(pos("STATUS=delivering") < pos("STATUS=reloading 2 unit(s)"));
    assert!(pos("STATUS=reloading") < pos("STATUS=delivered 5 secret(s)"));
    assert_eq!(phases.last(), Some(&"READY=1"));

    // A second run with the same content rewrites no file.
    let inode = std::fs::metadata(&file).unwrap().ino();
    let (out, _) = m.run_env(&[], &[("DBUS_SYSTEM_BUS_ADDRESS", systemd.address())]);
    assert_exit(&out, 0);
    assert_logged(&out, "1 destination(s) written, 4 unchanged");
    assert_eq!(std::fs::metadata(&file).unwrap().ino(), inode);
    // The logon key is always replaced (it cannot be read back to compare),
    // but no unit's secret changed: no unit was acted on again.
    assert_eq!(systemd.calls().len(), 2, "{:?}", systemd.calls());

    // A third run after the KBS's tls.key changed restarts only its unit.
    std::fs::write(w.dir.path().join("resources/default/key/k1"), b"a new key").unwrap();
    let (out, _) = m.run_env(&[], &[("DBUS_SYSTEM_BUS_ADDRESS", systemd.address())]);
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(&cred).unwrap(), b"a new key");
    let calls: Vec<(&str, String)> = systemd
        .calls()
        .into_iter()
        .map(|c| (c.method, c.unit))
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2], ("TryRestartUnit", "nginx.service".to_owned()));
    // Remove the test's keyring (and its keys) from @u.
    let _ = named.invalidate();
}

/// One secret in a file, whose consumer `a.service` is restarted.
fn restarting_config(kbs: &str) -> String {
    format!(
        "[kbs]\nurl = \"{kbs}\"\ninsecure-http = true\ntimeout = 2\n[tee]\ntype = \"sample\"\n\
         [[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\nrestart = [\"a.service\"]\n\
         [[secret.file]]\npath = \"k.key\"\n"
    )
}

/// In the initramfs the units named are the real root's, which start after
/// switch-root: the secret is delivered and no unit is acted on (no helper
/// runs: the one named does not exist).
#[test]
fn the_initramfs_run_delivers_and_leaves_units_to_the_real_root() {
    let Some(m) = Machine::new("run-initrd-units", 1 << 20) else {
        return;
    };
    let w = World::new("run-initrd-units", 1, |_| {});
    m.write_config(&restarting_config(&w.kbs.url()));
    let absent = m.path("no-such-helper");
    let (out, notes) = m.run_env(
        &["--initrd"],
        &[("CVM_ATTEST_UNITS_HELPER", absent.to_str().unwrap())],
    );
    assert_exit(&out, 0);
    assert_logged(
        &out,
        "in the initramfs: 1 unit action(s) left to the real root",
    );
    assert!(
        !notes.iter().any(|n| n.starts_with("STATUS=reloading")),
        "{notes:?}"
    );
    assert_eq!(
        std::fs::read(m.path("run/cvm-attest/k.key")).unwrap(),
        w.secret("default/key/k0")
    );
}

/// The units helper (`CVM_ATTEST_UNITS_HELPER` points the debug agent at a
/// stand-in): missing, failing with its own message, failing silently, and
/// never finishing. Each is an error naming what happened, after delivery.
#[test]
fn a_missing_failing_or_hanging_units_helper_is_a_clear_error() {
    let Some(m) = Machine::new("run-units-helper", 1 << 20) else {
        return;
    };
    let w = World::new("run-units-helper", 1, |_| {});
    m.write_config(&restarting_config(&w.kbs.url()));
    let delivered = m.path("run/cvm-attest/k.key");
    let with_helper = |helper: &Path| {
        // A fresh delivery each time: units are acted on only after a change.
        let _ = std::fs::remove_file(&delivered);
        let (out, _) = m.run_env(
            &[],
            &[("CVM_ATTEST_UNITS_HELPER", helper.to_str().unwrap())],
        );
        assert_eq!(
            std::fs::read(&delivered).unwrap(),
            w.secret("default/key/k0")
        );
        out
    };
    let absent = m.path("no-such-helper");
    let out = with_helper(&absent);
    assert_fails_with(
        &out,
        1,
        &format!("run the units helper {}", absent.display()),
    );

    let out = with_helper(&data("units-helper/fail.sh"));
    assert_fails_with(
        &out,
        1,
        "restart a.service: the job ended with result 'failed' (see journalctl -u a.service)",
    );

    let out = with_helper(Path::new("/bin/false"));
    assert_fails_with(
        &out,
        1,
        "the units helper /bin/false failed (exit status: 1)",
    );

    let out = with_helper(&data("units-helper/hang.sh"));
    assert_fails_with(&out, 1, "hang.sh did not finish within ");
    assert_logged(&out, "it ended (killed: signal: 9 (SIGKILL))");
}

#[test]
fn a_denied_required_secret_delivers_nothing() {
    let Some(m) = Machine::new("run-deny", 1 << 20) else {
        return;
    };
    let w = World::new("run-deny", 4, |c| {
        c.policy = refkbs::Policy::from_rules(vec![
            refkbs::Rule::deny("sample", "default/luks/root").unwrap(),
            refkbs::Rule::allow("*", "*/*/*").unwrap(),
        ])
    });
    m.write_config(&m.five_secrets(&w.kbs.url()));
    // An earlier delivery of the app key must survive the failed run.
    let old = m.path("run/cvm-attest/app/k0.key");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"previous").unwrap();
    let (out, notes) = m.run(&[]);
    assert_fails_with(
        &out,
        3,
        "the KBS policy denied default/luks/root for TEE sample",
    );
    assert_eq!(std::fs::read(&old).unwrap(), b"previous");
    assert!(!m.path("run/credstore/tls.key").exists());
    assert!(!m.path("run/cryptsetup-keys.d/root.key").exists());
    assert!(proc_key(&format!("cvm-test:user-{}", m.tag)).is_none());
    assert!(!notes.iter().any(|n| n.starts_with("READY=1")));
}

#[test]
fn a_full_tmpfs_leaves_no_partial_file() {
    // 64 KiB of /run, and a secret of 100 KiB for the first file sink.
    let Some(m) = Machine::new("run-full", 64 << 10) else {
        return;
    };
    let w = World::new("run-full", 1, |c| {
        std::fs::write(c.resources.join("default/key/k0"), vec![0x5a; 100 << 10]).unwrap();
    });
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"small\"\nresource = \"default/luks/root\"\n  [[secret.credential]]\n\
         [[secret]]\nname = \"big\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"big.key\"\n",
    );
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "run/cvm-attest/big.key");
    assert_logged(&out, "No space left on device");
    let leftovers: Vec<_> = std::fs::read_dir(m.path("run/cvm-attest"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "no partial or temporary file: {leftovers:?}"
    );
    assert!(!m.path("run/credstore/small").exists(), "all or nothing");
}

/// A sink path that is a symlink or a directory is refused before anything
/// is delivered: never written through, never replaced.
#[test]
fn a_sink_path_that_is_not_a_regular_file_delivers_nothing() {
    let Some(m) = Machine::new("run-not-a-file", 1 << 20) else {
        return;
    };
    let w = World::new("run-not-a-file", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"small\"\nresource = \"default/luks/root\"\n  [[secret.credential]]\n\
         [[secret]]\nname = \"app\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"app.key\"\n",
    );
    let target = m.path("run/cvm-attest/app.key");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let elsewhere = m.path("elsewhere");
    std::fs::write(&elsewhere, b"not a secret").unwrap();
    std::os::unix::fs::symlink(&elsewhere, &target).unwrap();
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "run/cvm-attest/app.key is not a regular file");
    assert!(std::fs::symlink_metadata(&target).unwrap().is_symlink());
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not a secret");
    assert!(!m.path("run/credstore/small").exists(), "all or nothing");

    std::fs::remove_file(&target).unwrap();
    std::fs::create_dir(&target).unwrap();
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "remove it, or name another path");
    assert!(target.is_dir());
    assert!(!m.path("run/credstore/small").exists(), "all or nothing");
}

/// A symlink among the directories on the way (one a service user could
/// plant in its own runtime directory) is refused: the secret does not
/// follow it into another directory.
#[test]
fn a_symlink_on_the_way_to_a_sink_delivers_nothing() {
    let Some(m) = Machine::new("run-symlink-dir", 1 << 20) else {
        return;
    };
    let w = World::new("run-symlink-dir", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"app\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"/run/app/tls/app.key\"\n",
    );
    let elsewhere = m.path("run/credstore");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(m.path("run/app")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, m.path("run/app/tls")).unwrap();
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "run/app/tls is a symlink");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// A service's runtime directory that root may only search (0711, owned by
/// the service's user; the units run without CAP_DAC_OVERRIDE): the agent
/// goes through it to the sink's own directory, as a path would.
#[test]
fn a_sink_beyond_a_directory_root_may_only_search_is_delivered() {
    let Some(m) = Machine::new("run-search-only", 1 << 20) else {
        return;
    };
    let w = World::new("run-search-only", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"app\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"/run/svc/tls/app.key\"\n",
    );
    let svc = m.path("run/svc");
    std::fs::create_dir_all(svc.join("tls")).unwrap();
    std::os::unix::fs::chown(&svc, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&svc, std::fs::Permissions::from_mode(0o711)).unwrap();
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(svc.join("tls/app.key")).unwrap(),
        w.secret("default/key/k0")
    );
}

/// An optional secret that cannot be delivered is skipped with a warning;
/// the required ones are delivered and the run succeeds.
#[test]
fn an_optional_secret_that_cannot_be_delivered_is_skipped() {
    let Some(m) = Machine::new("run-optional", 1 << 20) else {
        return;
    };
    let w = World::new("run-optional", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"luks\"\nresource = \"default/luks/root\"\n  [[secret.cryptsetup]]\n  volume = \"root\"\n\
         [[secret]]\nname = \"extra\"\nresource = \"default/key/k0\"\nrequired = false\n  [[secret.file]]\n  path = \"blocker/extra.key\"\n",
    );
    // A file where the optional secret's directory should be.
    std::fs::create_dir_all(m.path("run/cvm-attest")).unwrap();
    std::fs::write(m.path("run/cvm-attest/blocker"), b"").unwrap();
    let (out, notes) = m.run(&[]);
    assert_exit(&out, 0);
    let log = stderr(&out);
    assert!(
        log.contains("optional secret 'extra' (default/key/k0) is not delivered"),
        "{log}"
    );
    assert!(
        log.contains("run/cvm-attest/blocker is not a directory, so "),
        "{log}"
    );
    assert_eq!(
        std::fs::read(m.path("run/cryptsetup-keys.d/root.key")).unwrap(),
        w.secret("default/luks/root")
    );
    assert_eq!(notes.last().map(|n| n.trim_end()), Some("READY=1"));
}

/// The secret a delivery replaces is overwritten with zeros, not only
/// unlinked: its pages hold no copy once the run is over.
#[test]
fn a_replaced_secret_is_wiped() {
    let Some(m) = Machine::new("run-replaced", 1 << 20) else {
        return;
    };
    let w = World::new("run-replaced", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"k.key\"\n",
    );
    let file = m.path("run/cvm-attest/k.key");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let previous = b"the previous secret";
    std::fs::write(&file, previous).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let pages = m.path("run/old-pages");
    std::fs::hard_link(&file, &pages).unwrap();
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(&file).unwrap(), w.secret("default/key/k0"));
    assert_eq!(std::fs::read(&pages).unwrap(), vec![0u8; previous.len()]);
}

/// A commit that fails halfway puts every file back as it was, and leaves no
/// copy of a new secret behind. The second file's backup name is taken (by a directory named after the
/// agent's PID, made by the shell that becomes the agent), so its commit
/// fails after the first file's.
#[test]
fn a_commit_that_fails_halfway_puts_every_file_back() {
    let Some(m) = Machine::new("run-undo", 1 << 20) else {
        return;
    };
    let w = World::new("run-undo", 2, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"a\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"a.key\"\n\
         [[secret]]\nname = \"b\"\nresource = \"default/key/k1\"\n  [[secret.file]]\n  path = \"b.key\"\n",
    );
    let dir = m.path("run/cvm-attest");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.key"), b"previous a").unwrap();
    std::fs::write(dir.join("b.key"), b"previous b").unwrap();
    let mut agent = unit_cmd(&["run"]);
    agent
        .env("CVM_ATTEST_ROOT", m.dir.path())
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env("DIR", &dir);
    let squat = r#"mkdir -p "$DIR/.b.key.cvm-attest-old-$$/x" && shift && exec "$@""#;
    let out = crate::util::wrapped(&["sh", "-c", squat, "sh"], &agent)
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        1,
        "nothing was delivered: every destination is as it was",
    );
    assert_logged(&out, "keep the previous");
    assert_eq!(std::fs::read(dir.join("a.key")).unwrap(), b"previous a");
    assert_eq!(std::fs::read(dir.join("b.key")).unwrap(), b"previous b");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".b.key.cvm-attest-old-"))
        .collect();
    left.sort();
    assert_eq!(left, ["a.key", "b.key"], "no copy of a new secret is left");
}

/// A group taken out of the configuration is taken away from the file: the
/// next run does not find the file "unchanged" while another group reads it.
#[test]
fn a_group_removed_from_the_configuration_is_taken_back() {
    let Some(m) = Machine::new("run-group-removed", 1 << 20) else {
        return;
    };
    let w = World::new("run-group-removed", 1, |_| {});
    let secret = "[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"k.key\"\n  mode = \"0440\"\n";
    m.write_sample_config(&w.kbs.url(), &format!("{secret}  group = \"daemon\"\n"));
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    let file = m.path("run/cvm-attest/k.key");
    assert_ne!(std::fs::metadata(&file).unwrap().gid(), 0);
    m.write_sample_config(&w.kbs.url(), secret);
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    assert_logged(&out, "1 destination(s) written, 0 unchanged");
    assert_eq!(std::fs::metadata(&file).unwrap().gid(), 0);
    let (out, _) = m.run(&[]);
    assert_logged(&out, "0 destination(s) written, 1 unchanged");
}

/// When a directory on the way cannot be opened up for the secret's group
/// (here a read-only tmpfs of mode 0700), the run fails saying which.
#[test]
fn a_directory_that_cannot_be_made_searchable_is_a_clear_error() {
    let Some(m) = Machine::new("run-searchable", 1 << 20) else {
        return;
    };
    let w = World::new("run-searchable", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"k.key\"\n  group = \"daemon\"\n",
    );
    let dir = m.path("run/cvm-attest");
    let Some(_ro) = Tmpfs::mount_read_only(&dir, 0o700) else {
        return;
    };
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "let the secret's owner search");
    assert_logged(&out, "Read-only file system");
}

/// Under `KeyringMode=private` (a session keyring without `@u`), a later run
/// still possesses the keys an earlier run left in the named keyring: it
/// reads a user key back to find it unchanged (and could keep the old key to
/// undo a failed delivery), though its permissions give root's user only
/// "view".
#[test]
fn a_later_run_in_a_private_session_possesses_the_keys() {
    let Some(m) = Machine::new("run-private", 1 << 20) else {
        return;
    };
    let w = World::new("run-private", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        &format!(
            "[delivery]\nkeyring = \"{}\"\n\
         [[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.keyring]]\n  type = \"user\"\n  description = \"cvm-test:private-{}\"\n",
            m.keyring,
            m.tag
        ),
    );
    let (out, _) = m.run_with(&[], &[], true);
    assert_exit(&out, 0);
    assert_logged(&out, "1 destination(s) written, 0 unchanged");
    let (out, _) = m.run_with(&[], &[], true);
    assert_exit(&out, 0);
    assert_logged(&out, "0 destination(s) written, 1 unchanged");
    let ring = keyutils::Keyring::attach(keyutils::SpecialKeyring::User)
        .unwrap()
        .read()
        .unwrap()
        .1
        .into_iter()
        .find(|r| r.description().unwrap().description == m.keyring);
    if let Some(ring) = ring {
        let _ = ring.invalidate();
    }
}

/// A named keyring that root's user may not link (made by someone else, with
/// other permissions) cannot be possessed: a clear error naming it.
#[test]
fn a_named_keyring_without_link_permission_is_a_clear_error() {
    let Some(m) = Machine::new("run-nolink", 1 << 20) else {
        return;
    };
    let w = World::new("run-nolink", 1, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        &format!(
            "[delivery]\nkeyring = \"{}\"\n\
         [[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.keyring]]\n  type = \"user\"\n  description = \"cvm-test:nolink-{}\"\n",
            m.keyring,
            m.tag
        ),
    );
    let mut user = keyutils::Keyring::attach_or_create(keyutils::SpecialKeyring::User).unwrap();
    let mut ring = user.add_keyring(m.keyring.as_str()).unwrap();
    // Possessor: all; root's user: view and search, no link.
    ring.set_permissions(keyutils::Permission::from_bits_truncate(0x3f09_0000))
        .unwrap();
    let (out, _) = m.run_with(&[], &[], true);
    assert_fails_with(&out, 1, &format!("possess keyring '{}'", m.keyring));
    let _ = ring.invalidate();
}

/// A run killed between staging and finishing leaves a temporary file and a
/// backup (a second copy of an earlier secret) beside the target; the next
/// run removes them, for each of two files in one directory (read once for
/// both). Those of a process still alive are left alone.
#[test]
fn leftovers_of_a_killed_run_are_removed() {
    let Some(m) = Machine::new("run-stale", 1 << 20) else {
        return;
    };
    let w = World::new("run-stale", 2, |_| {});
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n\
         [[secret]]\nname = \"j\"\nresource = \"default/key/k1\"\n  [[secret.credential]]\n",
    );
    let store = m.path("run/credstore");
    std::fs::create_dir_all(&store).unwrap();
    // No process has a PID above the kernel's limit (at most 2^22).
    let stale = [
        ".k.cvm-attest-old-99999999",
        ".k.cvm-attest-new-99999999",
        ".j.cvm-attest-new-99999998",
    ];
    for name in stale {
        std::fs::write(store.join(name), b"an earlier secret").unwrap();
    }
    let alive = ".k.cvm-attest-new-1";
    std::fs::write(store.join(alive), b"pid 1's").unwrap();
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    for name in stale {
        assert!(!store.join(name).exists(), "{name} is still there");
    }
    assert!(store.join(alive).exists());
    for (name, resource) in [("k", "default/key/k0"), ("j", "default/key/k1")] {
        assert_eq!(std::fs::read(store.join(name)).unwrap(), w.secret(resource));
    }
}

#[test]
fn a_kbs_down_for_twenty_seconds_is_waited_for() {
    let Some(m) = Machine::new("run-late", 1 << 20) else {
        return;
    };
    let port = crate::util::closed_port();
    let url = format!("http://127.0.0.1:{port}");
    m.write_config(&format!(
        "[kbs]\nurl = \"{url}\"\ninsecure-http = true\ntimeout = 60\n[tee]\ntype = \"sample\"\n\
         [[secret]]\nname = \"late\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n"
    ));
    // The KBS comes up 20 s after the agent starts.
    let resources = TempDir::new("run-late-res");
    std::fs::create_dir_all(resources.path().join("default/key")).unwrap();
    std::fs::write(resources.path().join("default/key/k0"), b"late secret").unwrap();
    let res = resources.path().to_owned();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let mut config = refkbs::Config::new(res);
        config.policy = refkbs::Policy::allow_all();
        config.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.quiet = true;
        let kbs = refkbs::RefKbs::start(config).unwrap();
        let _ = finished.recv_timeout(Duration::from_secs(60));
        drop(kbs);
    });
    let started = std::time::Instant::now();
    let (out, notes) = m.run_env(&[], &[("CVM_ATTEST_TEST_BACKOFF_MS", "1000")]);
    assert_exit(&out, 0);
    let retries = notes.iter().filter(|n| n.contains("retrying in")).count();
    assert!(retries >= 10, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("EXTEND_TIMEOUT_USEC=")),
        "{notes:?}"
    );
    assert_eq!(notes.last().map(|n| n.trim_end()), Some("READY=1"));
    let _ = done.send(());
    assert!(started.elapsed() >= Duration::from_secs(20));
    assert_eq!(
        std::fs::read(m.path("run/credstore/late")).unwrap(),
        b"late secret"
    );
    server.join().unwrap();
}

#[test]
fn a_passed_deadline_is_a_clean_failure() {
    let Some(m) = Machine::new("run-deadline", 1 << 20) else {
        return;
    };
    let port = crate::util::closed_port();
    m.write_config(&format!(
        "[kbs]\nurl = [\"http://127.0.0.1:{port}\", \"http://127.0.0.1:{port}\"]\ninsecure-http = true\ntimeout = 2\n\
         [tee]\ntype = \"sample\"\n[[secret]]\nname = \"never\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n"
    ));
    let (out, notes) = m.run(&[]);
    assert_fails_with(
        &out,
        4,
        "no KBS answered within the 2s deadline (tried http://127.0.0.1:",
    );
    assert!(!m.path("run/credstore/never").exists());
    assert!(!notes.iter().any(|n| n.starts_with("READY=1")));
}

/// A backup KBS URL with a typo is an error before any traffic, not a
/// surprise on the day the first KBS is down.
#[test]
fn every_kbs_url_is_checked_before_any_traffic() {
    let Some(m) = Machine::new("run-backup-url", 1 << 20) else {
        return;
    };
    let w = World::new("run-backup-url", 1, |_| {});
    let secret =
        "[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n";
    m.write_config(&format!(
        "[kbs]\nurl = [\"{}\", \"htps://kbs-b.example:8080\"]\ninsecure-http = true\n\
         [tee]\ntype = \"sample\"\n{secret}",
        w.kbs.url()
    ));
    let (out, _) = m.run(&[]);
    assert_fails_with(
        &out,
        2,
        "KBS URL 'htps://kbs-b.example:8080' has scheme 'htps'",
    );
    let url = w.kbs.url();
    let (out, _) = m.run(&["--kbs", &url, "--kbs", "htps://backup"]);
    assert_fails_with(&out, 2, "KBS URL 'htps://backup' has scheme 'htps'");
    assert_eq!(w.kbs.stats().auth, 0, "nothing was sent");
    assert!(!m.path("run/credstore/k").exists());
}

/// A KBS that answers 503 with `Retry-After: 60` is left alone: the run does
/// not go round its KBS list asking again (it used to send thousands of
/// `/auth` requests a second), and ends at its deadline with the reason.
#[test]
fn a_kbs_asking_for_quiet_is_not_asked_again_and_again() {
    let Some(m) = Machine::new("run-quiet", 1 << 20) else {
        return;
    };
    let w = World::new("run-quiet", 1, |_| {});
    w.kbs.push_fault(Fault {
        endpoint: Endpoint::Auth,
        count: 100_000,
        kind: FaultKind::Status {
            code: 503,
            retry_after: Some(60),
        },
    });
    m.write_config(&format!(
        "[kbs]\nurl = [\"{0}\", \"{0}\"]\ninsecure-http = true\ntimeout = 3\n[tee]\ntype = \"sample\"\n\
         [[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n",
        w.kbs.url()
    ));
    let (out, notes) = m.run(&[]);
    assert_fails_with(&out, 4, "no KBS answered within the 3s deadline");
    assert_logged(&out, "HTTP 503");
    // Once per URL in the list, then the 60 s asked for outlast the run.
    assert_eq!(w.kbs.stats().auth, 2);
    assert!(!notes.iter().any(|n| n.starts_with("READY=1")));
}

/// A KBS whose certificate does not verify is not asked again: the run
/// ends with the TLS error at once instead of retrying until its deadline.
#[test]
fn a_kbs_certificate_that_does_not_verify_ends_the_run() {
    let Some(m) = Machine::new("run-tls", 1 << 20) else {
        return;
    };
    let w = World::new("run-tls", 1, |c| {
        c.tls = Some(crate::util::Tls {
            cert_chain: data("tls/server.pem"),
            key: data("tls/server.key"),
        })
    });
    m.write_config(&format!(
        "[kbs]\nurl = \"{}\"\nca = \"{}\"\ntimeout = 300\n[tee]\ntype = \"sample\"\n\
         [[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  [[secret.credential]]\n",
        w.kbs.url(),
        data("tls/other-ca.pem").display()
    ));
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 4, "TLS with the KBS at");
    assert_logged(&out, "chains to the pinned CA (--kbs-ca, kbs.ca");
    let log = stderr(&out);
    assert_eq!(log.matches("TLS with the KBS at").count(), 1, "once: {log}");
    assert!(!log.contains("no KBS answered"), "{log}");
    assert!(!log.contains("trying again"), "{log}");
    // Among several, each such KBS is named as dropped, and the run ends
    // once every one is.
    let url = w.kbs.url();
    let (out, _) = m.run(&["--kbs", &url, "--kbs", &url]);
    assert_fails_with(&out, 4, "TLS with the KBS at");
    assert_logged(&out, &format!("not asking {url}"));
    assert_eq!(w.kbs.stats().auth, 0);
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let Some(m) = Machine::new("run-config", 1 << 20) else {
        return;
    };
    m.write_config("[kbs]\nurl = \"http://127.0.0.1:1\"\n\n[[secret]]\nname = \"x\"\nresource = \"default/key\"\n  [[secret.credential]]\n");
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 2, "config.toml:6");
    assert_logged(&out, "resource");
    // A configuration that cannot be read is local I/O: exit 1, naming it.
    std::fs::remove_file(m.path("etc/cvm-attest/config.toml")).unwrap();
    std::fs::create_dir(m.path("etc/cvm-attest/config.toml")).unwrap();
    let (out, _) = m.run(&[]);
    assert_fails_with(&out, 1, "read ");
    assert_logged(&out, "config.toml");
    std::fs::remove_dir(m.path("etc/cvm-attest/config.toml")).unwrap();
    // Disabled on the kernel command line: nothing to do, success.
    std::fs::create_dir_all(m.path("proc")).unwrap();
    std::fs::write(m.path("proc/cmdline"), "quiet cvm_attest=0\n").unwrap();
    let (out, notes) = m.run(&[]);
    assert_exit(&out, 0);
    assert_logged(&out, "disabled by");
    assert!(notes.iter().any(|n| n.trim_end() == "READY=1"));
}

/// A key in place that its possessor may not link (made by hand: the
/// agent's configuration demands that bit) could not be put back if the
/// delivery failed later: it is not replaced, and the error says what to do.
#[test]
fn a_key_that_cannot_be_kept_for_an_undo_is_not_replaced() {
    use keyutils::keytypes::User;
    use keyutils::{Keyring, Permission, SpecialKeyring};
    let Some(m) = Machine::new("run-keep-key", 1 << 20) else {
        return;
    };
    let w = World::new("run-keep-key", 1, |_| {});
    let desc = format!("cvm-test:keep-{}", m.tag);
    m.write_sample_config(
        &w.kbs.url(),
        &format!(
            "[delivery]\nkeyring = \"{}\"\n[[secret]]\nname = \"k\"\nresource = \"default/key/k0\"\n  \
             [[secret.keyring]]\n  type = \"user\"\n  description = \"{desc}\"\n",
            m.keyring
        ),
    );
    let mut user = Keyring::attach_or_create(SpecialKeyring::User).unwrap();
    let mut ring = user.add_keyring(m.keyring.as_str()).unwrap();
    ring.set_permissions(Permission::from_bits_truncate(0x3f3f_0000))
        .unwrap();
    let mut key = ring
        .add_key::<User, _, _>(desc.as_str(), &b"an older key"[..])
        .unwrap();
    key.set_permissions(Permission::from_bits_truncate(0x0b0b_0000))
        .unwrap();
    let (out, _) = m.run(&[]);
    let (keys, _) = ring.read().unwrap();
    let payload = key.read();
    let _ = ring.invalidate();
    assert_fails_with(
        &out,
        1,
        "its permissions must grant its possessor link (0x10000000)",
    );
    assert_logged(&out, &format!("keyctl purge user '{desc}'"));
    assert_eq!(keys, [key], "the old key stays in place");
    assert_eq!(payload.unwrap(), b"an older key");
}

#[test]
fn an_exhausted_keyring_quota_is_a_clear_error() {
    // An unprivileged user's key quota is 20000 bytes (keyrings(7)); a
    // 30000-byte user key cannot fit. Run the agent as nobody to hit it.
    let Some(m) = Machine::new("run-quota", 1 << 20) else {
        return;
    };
    let w = World::new("run-quota", 1, |c| {
        std::fs::write(c.resources.join("default/key/k0"), vec![0x42; 30_000]).unwrap();
    });
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"big\"\nresource = \"default/key/k0\"\n  [[secret.keyring]]\n  type = \"user\"\n  description = \"cvm-test:quota\"\n",
    );
    let out = agent_cmd(&["run"])
        .env("CVM_ATTEST_ROOT", m.dir.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_fails_with(
        &out,
        1,
        "the kernel key quota of this user is exhausted (EDQUOT)",
    );
    assert_logged(&out, "deliver secret 'big'");
    // Nothing was delivered: no such key among those nobody can see.
    let keys = std::process::Command::new("cat")
        .arg("/proc/keys")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_exit(&keys, 0);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(!keys.contains("cvm-test:quota"), "{keys}");
}

impl Machine {
    /// An open dm-crypt volume as /sys/block shows it.
    fn open_volume(&self, dev: &str, name: &str) {
        let dm = self.path(&format!("sys/block/{dev}/dm"));
        std::fs::create_dir_all(&dm).unwrap();
        std::fs::write(dm.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(
            dm.join("uuid"),
            format!("CRYPT-LUKS2-00112233445566778899aabbccddeeff-{name}\n"),
        )
        .unwrap();
    }

    /// `cvm-attest cleanup`, as the initramfs unit's ExecStop runs it.
    fn cleanup(&self) -> Output {
        unit_cmd(&["cleanup", "--initrd"])
            .env("CVM_ATTEST_ROOT", self.path(""))
            .output()
            .unwrap()
    }

    /// A key file as an earlier run (the initramfs) left it: 0400.
    fn key_file(&self, volume: &str, data: &[u8]) -> PathBuf {
        let dir = self.path("run/cryptsetup-keys.d");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{volume}.key"));
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        path
    }
}

/// The real root's run after the initramfs opened the root volume: its key
/// file, still in /run, is wiped, and not written again; the key of a
/// volume still closed is delivered; a secret whose only destination was
/// the open volume is not even fetched.
#[test]
fn an_open_volume_gets_no_key_file_and_loses_the_old_one() {
    let Some(m) = Machine::new("run-open-volume", 1 << 20) else {
        return;
    };
    let w = World::new("run-open-volume", 2, |_| {});
    m.open_volume("dm-0", "root");
    m.open_volume("dm-1", "home");
    let left = m.key_file("root", w.secret("default/luks/root"));
    m.write_sample_config(
        &w.kbs.url(),
        "[[secret]]\nname = \"root\"\nresource = \"default/luks/root\"\n  [[secret.cryptsetup]]\n  volume = \"root\"\n\
         [[secret]]\nname = \"data\"\nresource = \"default/key/k0\"\n  [[secret.cryptsetup]]\n  volume = \"data\"\n\
         [[secret]]\nname = \"both\"\nresource = \"default/key/k1\"\n  [[secret.cryptsetup]]\n  volume = \"home\"\n  [[secret.credential]]\n",
    );
    let (out, _) = m.run(&[]);
    assert_exit(&out, 0);
    let log = stderr(&out);
    assert!(!left.exists(), "{log}");
    assert!(
        log.contains("volume 'root' is open: wiped and removed") && log.contains("root.key"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(m.path("run/cryptsetup-keys.d/data.key")).unwrap(),
        w.secret("default/key/k0")
    );
    assert_eq!(
        std::fs::read(m.path("run/credstore/both")).unwrap(),
        w.secret("default/key/k1")
    );
    assert!(!m.path("run/cryptsetup-keys.d/home.key").exists());
    let fetched: Vec<String> = w
        .kbs
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/resource/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        fetched.len(),
        2,
        "only the two secrets with somewhere to go: {fetched:?}"
    );
    assert!(!fetched.iter().any(|p| p.contains("luks")), "{fetched:?}");

    // Only the open volume's key configured: no attestation at all.
    w.kbs.clear_requests();
    m.key_file("root", w.secret("default/luks/root"));
    m.write_sample_config(&w.kbs.url(), ROOT_VOLUME);
    let (out, notes) = m.run(&[]);
    assert_exit(&out, 0);
    assert!(!left.exists());
    assert!(w.kbs.requests().is_empty(), "{:?}", w.kbs.requests());
    assert!(
        notes
            .iter()
            .any(|n| n == "STATUS=nothing to fetch: the volumes are open")
            && notes.iter().any(|n| n == "READY=1"),
        "{notes:?}"
    );
    // Disabled, `run` does nothing at all (cleanup is the cleanup units' job).
    m.key_file("root", w.secret("default/luks/root"));
    m.write_config(&format!(
        "enable = false\n{}",
        std::fs::read_to_string(m.path("etc/cvm-attest/config.toml")).unwrap()
    ));
    let (disabled, _) = m.run(&[]);
    assert_exit(&disabled, 0);
    assert_logged(&disabled, "disabled by");
    assert!(left.exists(), "a disabled run touches nothing");
}

/// `cleanup`, the initramfs unit's ExecStop: the key files of configured
/// volumes that are open are overwritten in place, then removed; others
/// stay. One that cannot be removed is named, and the command fails.
#[test]
fn cleanup_wipes_the_key_files_of_open_volumes_only() {
    let Some(m) = Machine::new("run-cleanup", 1 << 20) else {
        return;
    };
    let kbs = "http://127.0.0.1:9";
    m.write_sample_config(
        kbs,
        "[[secret]]\nname = \"root\"\nresource = \"default/luks/root\"\n  [[secret.cryptsetup]]\n  volume = \"root\"\n\
         [[secret]]\nname = \"data\"\nresource = \"default/key/k0\"\n  [[secret.cryptsetup]]\n  volume = \"data\"\n",
    );
    m.open_volume("dm-0", "root");
    m.open_volume("dm-1", "other");
    let key = b"0123456789abcdef-root-volume-key";
    let root = m.key_file("root", key);
    // A second name for the same pages: what the wipe leaves in them.
    let pages = m.path("run/pages");
    std::fs::hard_link(&root, &pages).unwrap();
    let data = m.key_file("data", b"still closed");
    let other = m.key_file("other", b"not ours");
    // A copy a run killed mid-delivery left beside the open volume's key
    // (no process has a PID above the kernel's limit).
    let stale = m.path("run/cryptsetup-keys.d/.root.key.cvm-attest-old-99999999");
    std::fs::write(&stale, key).unwrap();
    let stale_pages = m.path("run/stale-pages");
    std::fs::hard_link(&stale, &stale_pages).unwrap();
    let out = m.cleanup();
    assert_exit(&out, 0);
    assert!(!root.exists(), "{}", stderr(&out));
    assert!(!stale.exists(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&pages).unwrap(), vec![0u8; key.len()]);
    assert_eq!(std::fs::read(&stale_pages).unwrap(), vec![0u8; key.len()]);
    assert_eq!(std::fs::read(&data).unwrap(), b"still closed");
    assert_eq!(std::fs::read(&other).unwrap(), b"not ours");

    // Nothing left to do is no error; a key "file" that is a directory is.
    assert_exit(&m.cleanup(), 0);
    std::fs::create_dir(&root).unwrap();
    let out = m.cleanup();
    assert_fails_with(
        &out,
        1,
        "1 key file(s) of open volumes could not be removed",
    );
    assert_logged(&out, "volume 'root' is open, but its key file stays");
    assert_logged(&out, "cryptsetup-keys.d/root.key");
}

/// A `--config` that does not exist is a usage error, not an empty
/// configuration; one that never ends is refused at the size cap.
#[test]
fn a_named_config_must_exist_and_be_of_sane_size() {
    let Some(m) = Machine::new("run-config-named", 1 << 20) else {
        return;
    };
    let missing = m.path("etc/cvm-attest/confg.toml");
    let missing = missing.to_str().unwrap();
    let (out, _) = m.run(&["--config", missing, "--kbs", "http://127.0.0.1:9"]);
    assert_fails_with(&out, 2, &format!("--config: {missing} does not exist"));
    let out = unit_cmd(&["cleanup", "--config", missing])
        .env("CVM_ATTEST_ROOT", m.path(""))
        .output()
        .unwrap();
    assert_fails_with(&out, 2, &format!("--config: {missing} does not exist"));
    let (out, _) = m.run(&["--config", "/dev/zero"]);
    assert_fails_with(&out, 1, "read /dev/zero: it holds more than 1024 KiB");
}

/// Without a key-file sink in the configuration, `cleanup` looks up no
/// device and leaves every key file alone, even that of an open volume.
#[test]
fn cleanup_without_key_file_sinks_looks_at_no_volume() {
    let Some(m) = Machine::new("run-cleanup-no-keys", 1 << 20) else {
        return;
    };
    m.write_config(
        "[[secret]]\nname = \"tls\"\nresource = \"default/key/k0\"\n  [[secret.file]]\n  path = \"tls/key.pem\"\n",
    );
    m.open_volume("dm-0", "root");
    let root = m.key_file("root", b"not configured here");
    let out = unit_cmd(&["-v", "cleanup", "--initrd"])
        .env("CVM_ATTEST_ROOT", m.path(""))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_logged(&out, "no configured volume is open");
    assert_not_logged(&out, "open dm-crypt volumes");
    assert_eq!(std::fs::read(&root).unwrap(), b"not configured here");
}

/// A key file the agent cannot overwrite (another owner's 0400 file, and the
/// unit has no CAP_DAC_OVERRIDE) is removed all the same, with a warning.
#[test]
fn a_key_file_that_cannot_be_overwritten_is_removed_anyway() {
    let Some(m) = Machine::new("run-cleanup-foreign", 1 << 20) else {
        return;
    };
    m.write_config(ROOT_VOLUME);
    m.open_volume("dm-0", "root");
    let root = m.key_file("root", b"owned by nobody");
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let out = m.cleanup();
    assert_exit(&out, 0);
    assert_logged(&out, "removing it without wiping it first");
    assert!(!root.exists());
}

/// The real root may run no agent (`cvm_attest=0`, no KBS URL) after the
/// initramfs did: its cleanup unit still wipes the key left for a volume
/// opened after switch-root.
#[test]
fn cleanup_needs_neither_an_enabled_agent_nor_a_kbs() {
    let Some(m) = Machine::new("run-cleanup-disabled", 1 << 20) else {
        return;
    };
    m.write_config(ROOT_VOLUME);
    m.open_volume("dm-0", "root");
    // Disabled on the real root; enabled, with the KBS URL given to the
    // initramfs only.
    for cmdline in [
        "quiet rd.cvm_attest=1 cvm_attest=0\n",
        "quiet rd.cvm_attest.kbs=http://kbs\n",
    ] {
        std::fs::write(m.path("proc/cmdline"), cmdline).unwrap();
        let root = m.key_file("root", b"left by the initramfs");
        let out = unit_cmd(&["cleanup"])
            .env("CVM_ATTEST_ROOT", m.path(""))
            .output()
            .unwrap();
        assert_exit(&out, 0);
        assert!(!root.exists(), "{cmdline}: {}", stderr(&out));
    }
}

/// One key for two volumes: crypttab names the root volume's key file as
/// the key of another volume, not open yet. The file stays for it, in the
/// initramfs (the real root's crypttab under /sysroot) as after switch-root.
#[test]
fn a_key_file_crypttab_names_for_a_closed_volume_is_kept() {
    let Some(m) = Machine::new("run-cleanup-shared", 1 << 20) else {
        return;
    };
    m.write_sample_config("http://127.0.0.1:9", ROOT_VOLUME);
    m.open_volume("dm-0", "root");
    let root = m.key_file("root", b"one key for two volumes");
    // A run killed between keeping its backup and the rename left a second
    // name of the key file: removed, but the key it names is not wiped.
    let stale = m.path("run/cryptsetup-keys.d/.root.key.cvm-attest-old-99999999");
    std::fs::hard_link(&root, &stale).unwrap();
    std::fs::create_dir_all(m.path("sysroot/etc")).unwrap();
    std::fs::write(
        m.path("sysroot/etc/crypttab"),
        "root UUID=1 none\ndata UUID=2 /run/cryptsetup-keys.d/root.key luks\n",
    )
    .unwrap();
    let out = m.cleanup();
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(&root).unwrap(), b"one key for two volumes");
    assert!(!stale.exists());
    assert_logged(&out, "crypttab names");
    assert_logged(&out, "key file of 'data'");
    m.open_volume("dm-1", "data");
    assert_exit(&m.cleanup(), 0);
    assert!(!root.exists());
}
