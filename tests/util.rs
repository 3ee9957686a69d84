// SPDX-License-Identifier: Apache-2.0
//! Test harness: a temporary world with resources on disk, the reference KBS
//! in-process on loopback, and the real `cvm-attest` binary run against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use refkbs::{Config, Endpoint, Fault, FaultKind, Policy, RefKbs, Rule, Tls};

/// A directory removed when the test ends.
pub use tee_emu::scratch::Scratch as TempDir;

/// The repository's test data directory.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// A test world: a resource directory and a reference KBS serving it.
pub struct World {
    pub dir: TempDir,
    pub kbs: RefKbs,
    pub secrets: Vec<(String, Vec<u8>)>,
}

/// Distinct, recognisable secret bytes (not valid UTF-8 on purpose).
pub fn secret_bytes(i: usize) -> Vec<u8> {
    let mut v = format!(
        "S3CRET-{i:02}-{:016x}-",
        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)
    )
    .into_bytes();
    v.extend_from_slice(&[0xff, 0x00, 0xfe, i as u8]);
    v
}

impl World {
    /// `n` resources `default/key/k0..`, plus `default/luks/root`.
    pub fn new(name: &str, n: usize, tweak: impl FnOnce(&mut Config)) -> World {
        let dir = TempDir::new(name);
        let root = dir.path().join("resources");
        let mut secrets = Vec::new();
        for i in 0..n {
            secrets.push((format!("default/key/k{i}"), secret_bytes(i)));
        }
        secrets.push(("default/luks/root".to_owned(), secret_bytes(99)));
        for (path, data) in &secrets {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, data).unwrap();
        }
        let mut config = Config::new(&root);
        config.quiet = true;
        // The sample TEE needs it, as in Trustee's own tests.
        config.policy = refkbs::Policy::allow_all();
        tweak(&mut config);
        let kbs = RefKbs::start(config).expect("start the reference KBS");
        World { dir, kbs, secrets }
    }

    pub fn secret(&self, path: &str) -> &[u8] {
        &self
            .secrets
            .iter()
            .find(|(p, _)| p == path)
            .expect("known resource")
            .1
    }

    /// `cvm-attest get` against this KBS over plain http with the sample TEE.
    pub fn get(&self, extra: &[&str]) -> Output {
        self.get_cmd(extra).output().expect("run cvm-attest")
    }

    /// The command [`World::get`] runs, to be given other stdio first.
    pub fn get_cmd(&self, extra: &[&str]) -> Command {
        let url = self.kbs.url();
        let mut args = vec!["get", "--kbs", &url, "--tee", "sample", "--timeout", "20"];
        if url.starts_with("http://") {
            args.push("--insecure-http");
        }
        args.extend_from_slice(extra);
        agent_cmd(&args)
    }

    /// Waits (up to 20 s) until the KBS has received a request whose path
    /// contains `part`: for tests that act while the agent waits on it.
    pub fn wait_for_request(&self, part: &str) {
        let waited = std::time::Instant::now();
        while !self.kbs.requests().iter().any(|r| r.path.contains(part)) {
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(20),
                "the KBS saw no request for {part}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs the agent binary with fast retries and no terminal.
pub fn agent(args: &[&str]) -> Output {
    agent_cmd(args).output().expect("run cvm-attest")
}

/// `cmd` run under `wrapper` (a program and its options, e.g. setpriv's):
/// the same program, arguments and environment, stdin closed.
pub fn wrapped(wrapper: &[&str], cmd: &Command) -> Command {
    let mut out = Command::new(wrapper[0]);
    out.args(&wrapper[1..])
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    out.stdin(Stdio::null());
    out
}

pub fn agent_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cvm-attest"));
    cmd.args(args)
        .env("CVM_ATTEST_TEST_BACKOFF_MS", "20")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stderr:\n{}", stderr(out));
}

/// Asserts a failure with `code` whose stderr says `needle`.
#[track_caller]
pub fn assert_fails_with(out: &Output, code: i32, needle: &str) {
    assert_exit(out, code);
    assert_logged(out, needle);
}

/// The agent's stderr holds `needle`; shows the whole of it otherwise.
#[track_caller]
pub fn assert_logged(out: &Output, needle: &str) {
    let log = stderr(out);
    assert!(log.contains(needle), "stderr lacks {needle:?}:\n{log}");
}

/// The agent's stderr does not hold `needle`.
#[track_caller]
pub fn assert_not_logged(out: &Output, needle: &str) {
    let log = stderr(out);
    assert!(!log.contains(needle), "stderr holds {needle:?}:\n{log}");
}

/// A tmpfs mounted for one test (root only); lazily unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes on `dir`, or `None` when not root.
    pub fn mount(dir: &Path, size: usize) -> Option<Tmpfs> {
        Tmpfs::mount_with(dir, &format!("size={size},mode=0755"), 0)
    }

    /// Mounts an empty read-only tmpfs whose root has `mode`.
    pub fn mount_read_only(dir: &Path, mode: u32) -> Option<Tmpfs> {
        Tmpfs::mount_with(dir, &format!("size=64k,mode={mode:04o}"), libc::MS_RDONLY)
    }

    fn mount_with(dir: &Path, opts: &str, flags: libc::c_ulong) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let opts = std::ffi::CString::new(opts).unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                opts.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Some(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: target is a valid path string.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A loopback port nobody listens on (bound, noted, released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
