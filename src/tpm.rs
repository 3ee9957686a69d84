// SPDX-License-Identifier: Apache-2.0
//! The TPM, through the agent's TPM helper (`cvm-attest-tpm`, beside this
//! binary or in libexec), which holds tss-esapi and the system tpm2-tss.
//!
//! Why a second process: tpm2-tss brings OpenSSL's libcrypto, and loading
//! the two costs every run about 4 million instructions of dynamic linking
//! (half of a whole `get`) and 2 MiB of memory, also on SEV-SNP and TDX,
//! which never touch a TPM. The helper is started only when a TPM is
//! used, and a crash inside the C stack (tpm2-tss 3.2 has one) becomes an
//! error message here instead of the agent's death. Protocol: [`wire`].
//!
//! Only device TCTIs are taken (`device:/dev/tpmrm0`): a guest talks to its
//! (v)TPM through the kernel, and tss-esapi parses the other kinds (swtpm,
//! mssim, tabrmd) with `regex`, which would be a fifth of the helper.

pub mod wire;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context as _, Result};

pub use wire::{AkSource, Quote};
use wire::{Request, Response};

use crate::root;

/// File name of the helper, installed beside the agent or in libexec.
const HELPER: &str = "cvm-attest-tpm";

/// Test seam: the helper to run instead of the installed one.
pub const HELPER_ENV: &str = "CVM_ATTEST_TPM_HELPER";

/// Where the package installs the helper when it is not beside the agent.
const LIBEXECDIR: &str = match option_env!("CVM_ATTEST_LIBEXECDIR") {
    Some(dir) => dir,
    None => "/usr/libexec",
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

/// The helper: `$CVM_ATTEST_TPM_HELPER`, else beside this binary (a build
/// tree), else in the libexec directory.
fn helper_path() -> PathBuf {
    if let Some(path) = std::env::var_os(HELPER_ENV) {
        return path.into();
    }
    if let Ok(exe) = std::env::current_exe() {
        let beside = exe.with_file_name(HELPER);
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from(LIBEXECDIR).join(HELPER)
}

/// An open TPM: a running helper. Dropping it closes the helper's stdin,
/// on which it releases the TPM and exits.
pub struct Tpm {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    helper: PathBuf,
}

impl Tpm {
    /// Opens the TPM behind `tcti`, a device TCTI (`device:/dev/tpmrm0`).
    pub fn open(tcti: &str) -> Result<Tpm> {
        let path = device_path(tcti)?;
        if !std::path::Path::new(path).exists() {
            bail!("no TPM at {path}: this VM has no (v)TPM, or its driver is not loaded (tpm_crb/tpm_tis)");
        }
        let helper = helper_path();
        let mut child = Command::new(&helper)
            .args(crate::logger::flags())
            .arg(tcti)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "run the TPM helper {} (it comes with cvm-attest)",
                    helper.display()
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the TPM helper's pipes were not set up");
        };
        let mut tpm = Tpm {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            helper,
        };
        match tpm.receive()? {
            Response::Ready => Ok(tpm),
            other => bail!("the TPM helper answered {other:?} to opening the TPM"),
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

    /// The next response; a helper error or death becomes an error here.
    fn receive(&mut self) -> Result<Response> {
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line);
        if read.as_ref().is_ok_and(|n| *n > 0) {
            return match serde_json::from_str(&line) {
                Ok(Response::Error(message)) => bail!("{message}"),
                Ok(response) => Ok(response),
                Err(e) => bail!(
                    "the TPM helper {} sent a malformed line ({e})",
                    self.helper.display()
                ),
            };
        }
        drop(self.stdin.take());
        let status = self.child.wait();
        match status {
            Ok(status) => bail!(
                "the TPM helper {} ended ({status}) without answering",
                self.helper.display()
            ),
            Err(e) => bail!(
                "the TPM helper {} ended without answering ({e})",
                self.helper.display()
            ),
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Err(e) = self.child.wait() {
            log::warn!("wait for the TPM helper: {e}");
        }
    }
}
