// SPDX-License-Identifier: Apache-2.0
//! The TPM, through the agent's TPM helper (`cvm-attest-tpm`, beside this
//! binary or in libexec), which holds tss-esapi and the system tpm2-tss.
//!
//! Why a second process: tpm2-tss brings OpenSSL's libcrypto, and loading
//! the two costs every run about 4 million instructions of dynamic linking
//! (half of a whole `get`) and 2 MiB of memory, also on SEV-SNP and TDX,
//! which attest without a TPM. The helper is started only when a TPM is
//! used (including detection on a VM that has one, which looks for Azure's
//! HCL report first), and a crash inside the C stack (tpm2-tss 3.2 has one) becomes an
//! error message here instead of the agent's death. Protocol: [`wire`].
//!
//! Only device TCTIs are taken (`device:/dev/tpmrm0`): a guest talks to its
//! (v)TPM through the kernel, and tss-esapi parses the other kinds (swtpm,
//! mssim, tabrmd) with `regex`, which would be a fifth of the helper.

pub mod wire;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

pub use wire::{AkSource, Quote};
use wire::{Request, Response};

use crate::helper::Helper;
use crate::root;

/// The helper gets the journal's stream (log prefixes) and tpm2-tss's log
/// level, nothing else of the agent's environment.
const HELPER: Helper = Helper {
    name: "cvm-attest-tpm",
    what: "the TPM helper",
    test_env: "CVM_ATTEST_TPM_HELPER",
    env: &["JOURNAL_STREAM", "TSS2_LOG"],
};

/// The default TCTI: the kernel resource manager, under the current root.
pub fn default_tcti() -> String {
    format!("device:{}", root::path(root::TPMRM).display())
}

/// The device node of a device TCTI, `device:PATH`.
pub fn device_path(tcti: &str) -> Result<&str> {
    match tcti.strip_prefix("device:") {
        Some(path) if path.starts_with('/') => Ok(path),
        _ => bail!(
            "TCTI '{tcti}' is not supported: give the TPM device node as device:PATH, \
             e.g. device:/dev/tpmrm0 (simulators can be reached through a device too, \
             e.g. `swtpm cuse`)"
        ),
    }
}

/// Why the TPM device at `path` cannot be used, when it does not exist.
pub fn absent(path: &str) -> Option<String> {
    (!std::path::Path::new(path).exists()).then(|| {
        format!("no TPM at {path}: this VM has no (v)TPM, or its driver is not loaded (tpm_crb/tpm_tis)")
    })
}

/// How long one TPM request may take. Creating an AK under the EK is the
/// slowest (RSA key generation: seconds on a slow TPM).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// [`REQUEST_TIMEOUT`]; debug builds (the tests') take
/// `$CVM_ATTEST_TEST_TPM_TIMEOUT_MS`.
fn request_timeout() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CVM_ATTEST_TEST_TPM_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    REQUEST_TIMEOUT
}
/// How long a closing helper gets before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// An open TPM: a running helper, its stdout read line by line on a thread
/// of its own so that every request has a deadline. Dropping it closes the
/// helper's stdin, on which it releases the TPM and exits (or is killed).
pub struct Tpm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    helper: PathBuf,
    /// How the helper ended, once it has (reported in an error already).
    ended: Option<String>,
}

impl Tpm {
    /// Opens the TPM behind `tcti`, a device TCTI (`device:/dev/tpmrm0`).
    pub fn open(tcti: &str) -> Result<Tpm> {
        let path = device_path(tcti)?;
        if let Some(absent) = absent(path) {
            bail!(absent);
        }
        let helper = HELPER.path();
        let mut child = HELPER.spawn(&helper, [tcti], Stdio::piped())?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the TPM helper's pipes were not set up");
        };
        let (sender, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("tpm-helper".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("start a thread to read the TPM helper")?;
        let mut tpm = Tpm {
            child,
            stdin: Some(stdin),
            lines,
            helper,
            ended: None,
        };
        match tpm.receive() {
            Ok(Response::Ready) => Ok(tpm),
            Ok(other) => bail!("the TPM helper answered {other:?} to opening the TPM"),
            Err(e) => {
                // It said why it could not open the TPM, and exits non-zero
                // as it should: no second word about that.
                tpm.stop();
                Err(e)
            }
        }
    }

    /// Quotes PCRs 0-23 (SHA-256) with `qualifying` as extraData.
    pub fn quote(&mut self, source: AkSource, qualifying: &[u8], rsassa: bool) -> Result<Quote> {
        let request = Request::Quote {
            source,
            qualifying: qualifying.to_vec(),
            rsassa,
        };
        match self.call(&request)? {
            Response::Quote(quote) => Ok(quote),
            other => bail!("the TPM helper answered {other:?} to a quote"),
        }
    }

    /// Whether `index` is a defined NV index.
    pub fn nv_defined(&mut self, index: u32) -> Result<bool> {
        match self.call(&Request::NvDefined { index })? {
            Response::Defined(defined) => Ok(defined),
            other => bail!("the TPM helper answered {other:?} to an NV query"),
        }
    }

    /// Reads a whole NV index with owner authorization.
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>> {
        match self.call(&Request::NvRead { index })? {
            Response::NvData(data) => Ok(data),
            other => bail!("the TPM helper answered {other:?} to an NV read"),
        }
    }

    /// Writes `data` to an owner NV index, (re)defining it with that size.
    pub fn nv_write(&mut self, index: u32, data: &[u8]) -> Result<()> {
        let request = Request::NvWrite {
            index,
            data: data.to_vec(),
        };
        match self.call(&request)? {
            Response::Written => Ok(()),
            other => bail!("the TPM helper answered {other:?} to an NV write"),
        }
    }

    fn call(&mut self, request: &Request) -> Result<Response> {
        let mut line = serde_json::to_vec(request).context("encode a TPM request")?;
        line.push(b'\n');
        if let Some(stdin) = self.stdin.as_mut() {
            // A failed write means the helper is gone: receive() says how it ended.
            let _ = stdin.write_all(&line).and_then(|()| stdin.flush());
        }
        self.receive()
    }

    /// The next response; a helper error, death or silence becomes an error here.
    fn receive(&mut self) -> Result<Response> {
        let timeout = request_timeout();
        let why = match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => match serde_json::from_str(&line) {
                Ok(Response::Error(message)) => bail!("{message}"),
                Ok(response) => return Ok(response),
                Err(e) => format!("sent a malformed line ({e})"),
            },
            Ok(Err(e)) => format!("could not be read ({e})"),
            Err(RecvTimeoutError::Timeout) => {
                format!("did not answer within {:.1} s", timeout.as_secs_f64())
            }
            Err(RecvTimeoutError::Disconnected) => "closed its output".to_owned(),
        };
        // Whatever happened, this helper is done: say how it ended.
        let status = self.stop();
        bail!(
            "the TPM helper {} {why}; it ended ({status})",
            self.helper.display()
        )
    }

    /// Closes the helper's stdin, gives it [`EXIT_GRACE`] to exit, then
    /// kills it; returns how it ended.
    fn stop(&mut self) -> String {
        if let Some(status) = &self.ended {
            return status.clone();
        }
        let status = self.wait_or_kill();
        self.ended = Some(status.clone());
        status
    }

    fn wait_or_kill(&mut self) -> String {
        drop(self.stdin.take());
        let until = Instant::now() + EXIT_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return match self.child.wait() {
                        Ok(status) => format!("killed: {status}"),
                        Err(e) => format!("killed, not reaped: {e}"),
                    };
                }
                Err(e) => return format!("unknown: {e}"),
            }
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let status = self.stop();
        if !status.starts_with("exit status: 0") {
            log::warn!("the TPM helper {} ended ({status})", self.helper.display());
        }
    }
}
