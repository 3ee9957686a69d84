// SPDX-License-Identifier: Apache-2.0
//! A software TPM 2.0 per test: `swtpm socket` on two free loopback ports,
//! provisioned with tpm2-tools (TCG EK Credential Profile EK, an AK like
//! `tpm2_createak -G rsa -g sha256 -s rsassa`, NV indices, PCR extends).
//!
//! swtpm limits (devices.md §3.1): one client connection at a time, so tools
//! run one after the other and nothing may hold the command port open while
//! they do; three transient object slots and no resource manager, so every
//! tool run is followed by `tpm2_flushcontext -t` and `-s`; NV indices of at
//! most 2048 bytes. Dropping the handle kills the process.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};

use crate::ak::AkInfo;
use crate::quote::{hex, TpmQuote};
use crate::tpm_dev::TpmDevice;

/// Largest NV index swtpm accepts (`TPM_PT_NV_INDEX_MAX`).
pub const NV_INDEX_MAX: usize = 2048;

/// Whether swtpm and tpm2-tools are on PATH (tests print `SKIPPED` otherwise).
pub fn available() -> bool {
    ["swtpm", "tpm2_createek"].iter().all(|tool| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    })
}

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// Two adjacent free loopback ports `P`, `P+1` (free when probed).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a loopback port")?;
        let port = first.local_addr().context("read the bound port")?.port();
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no two adjacent free loopback ports")
}

/// Whether a socket listens on 127.0.0.1:`port` (/proc/net/tcp), seen
/// without connecting: a connection to swtpm's command port would take its
/// single client slot until swtpm notices it closed.
fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
    })
}

/// Waits until swtpm listens on both ports, or exits, or 5 s pass. It binds
/// the control port first, then the command port: waiting for the first
/// alone let a test's first command find nothing listening (EIO in CI).
fn wait_listening(child: &mut Child, port: u16) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().context("poll swtpm")?.is_some() {
            return Ok(false);
        }
        if listening(port + 1) && listening(port) {
            // Someone listens; make sure it is our process, not a port thief.
            return Ok(child.try_wait().context("poll swtpm")?.is_none());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!(
        "swtpm did not listen on 127.0.0.1:{port} and :{} within 5 s",
        port + 1
    )
}

impl Swtpm {
    /// Starts swtpm with its state in `dir/state` (tool files go to `dir`).
    pub fn start(dir: &Path) -> Result<Swtpm> {
        let state = dir.join("state");
        std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
        for _ in 0..10 {
            let port = free_port_pair()?;
            let log = std::fs::File::create(dir.join("swtpm.log"))
                .with_context(|| format!("create {}/swtpm.log", dir.display()))?;
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", state.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("run swtpm")?;
            if wait_listening(&mut child, port)? {
                return Ok(Swtpm {
                    child,
                    port,
                    dir: dir.to_path_buf(),
                });
            }
            // Exited: most likely a port clash with another test. Retry.
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.join("swtpm.log")).unwrap_or_default();
        bail!("swtpm did not start: {}", log.trim())
    }

    /// The TCTI string of tpm2-tss's swtpm TCTI, for tpm2-tools.
    pub fn tools_tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Mounts `dir/dev/tpmrm0` in front of this TPM, for the agent (which
    /// opens device TCTIs only). Needs root and `/dev/fuse`.
    pub fn device(&self) -> Result<TpmDevice> {
        TpmDevice::mount(&self.dir.join("dev"), self.port)
    }

    /// The command port (the control port is one higher).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the tool files live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs one tpm2-tools command against this TPM; returns its stdout.
    pub fn tool(&self, name: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(name)
            .args(args)
            .current_dir(&self.dir)
            .env("TPM2TOOLS_TCTI", self.tools_tcti())
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {name}"))?;
        if !out.status.success() {
            bail!(
                "{name} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Flushes transient objects and sessions (swtpm has 3 object slots).
    pub fn flush(&self) -> Result<()> {
        self.tool("tpm2_flushcontext", &["-t"])?;
        self.tool("tpm2_flushcontext", &["-s"])?;
        Ok(())
    }

    /// Creates the TCG EK (RSA-2048) and an RSA-2048 RSASSA-SHA256 AK under
    /// it, optionally made persistent at `persist_ak_at` (Azure: 0x81000003).
    pub fn create_ek_ak(&self, persist_ak_at: Option<u32>) -> Result<AkInfo> {
        self.tool(
            "tpm2_createek",
            &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
        )?;
        self.flush()?;
        self.tool(
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa", "-u",
                "ak.pub", "-n", "ak.name",
            ],
        )?;
        self.flush()?;
        let public = std::fs::read(self.dir.join("ak.pub")).context("read ak.pub")?;
        let mut ak = AkInfo::from_tpm2b_public(&public).context("parse ak.pub")?;
        ak.context = Some(self.dir.join("ak.ctx"));
        if let Some(handle) = persist_ak_at {
            let handle = format!("{handle:#010x}");
            self.tool("tpm2_evictcontrol", &["-C", "o", "-c", "ak.ctx", &handle])?;
            self.flush()?;
            ak.handle = persist_ak_at;
        }
        Ok(ak)
    }

    /// Defines NV `index` (owner read/write, `data.len()` bytes) and writes `data`.
    pub fn nv_define_write(&self, index: u32, data: &[u8]) -> Result<()> {
        ensure!(
            !data.is_empty() && data.len() <= NV_INDEX_MAX,
            "NV data of {} bytes: swtpm takes 1 to {NV_INDEX_MAX}",
            data.len()
        );
        let index = format!("{index:#010x}");
        let size = data.len().to_string();
        self.tool(
            "tpm2_nvdefine",
            &[&index, "-C", "o", "-s", &size, "-a", "ownerread|ownerwrite"],
        )?;
        let file = self.dir.join(format!("nv-{index}.bin"));
        std::fs::write(&file, data).with_context(|| format!("write {}", file.display()))?;
        let file = file.display().to_string();
        self.tool("tpm2_nvwrite", &[&index, "-C", "o", "-i", &file])?;
        Ok(())
    }

    /// Reads all of NV `index` with owner auth.
    pub fn nv_read(&self, index: u32) -> Result<Vec<u8>> {
        let index = format!("{index:#010x}");
        let file = self.dir.join(format!("nv-{index}.out"));
        let path = file.display().to_string();
        self.tool("tpm2_nvread", &[&index, "-C", "o", "-o", &path])?;
        std::fs::read(&file).with_context(|| format!("read {}", file.display()))
    }

    /// Removes NV `index`.
    pub fn nv_undefine(&self, index: u32) -> Result<()> {
        self.tool("tpm2_nvundefine", &[&format!("{index:#010x}"), "-C", "o"])?;
        Ok(())
    }

    /// Extends SHA-256 PCR `pcr` with `sha256`.
    pub fn extend_pcr(&self, pcr: u32, sha256: [u8; 32]) -> Result<()> {
        self.tool(
            "tpm2_pcrextend",
            &[&format!("{pcr}:sha256={}", hex(&sha256))],
        )?;
        Ok(())
    }

    /// The SHA-256 bank, PCRs 0–23.
    pub fn pcr_values(&self) -> Result<[[u8; 32]; 24]> {
        self.tool("tpm2_pcrread", &["sha256:all", "-o", "pcrs.bin"])?;
        let raw = std::fs::read(self.dir.join("pcrs.bin")).context("read pcrs.bin")?;
        ensure!(
            raw.len() == 24 * 32,
            "tpm2_pcrread gave {} bytes",
            raw.len()
        );
        let mut pcrs = [[0u8; 32]; 24];
        for (pcr, chunk) in pcrs.iter_mut().zip(raw.chunks(32)) {
            pcr.copy_from_slice(chunk);
        }
        Ok(pcrs)
    }

    /// TPM2_Quote with `ak` over SHA-256 PCRs 0–23 and qualifyingData `nonce`
    /// (`tpm2_quote`), then the PCR values.
    pub fn quote(&self, ak: &AkInfo, nonce: &[u8]) -> Result<TpmQuote> {
        let key = match (ak.handle, &ak.context) {
            (Some(handle), _) => format!("{handle:#010x}"),
            (None, Some(context)) => context.display().to_string(),
            (None, None) => return Err(anyhow!("the AK is neither persistent nor has a context")),
        };
        let nonce = hex(nonce);
        self.tool(
            "tpm2_quote",
            &[
                "-c",
                &key,
                "-l",
                "sha256:all",
                "-q",
                &nonce,
                "-g",
                "sha256",
                "-m",
                "quote.msg",
                "-s",
                "quote.sig",
            ],
        )?;
        self.flush()?;
        let message = std::fs::read(self.dir.join("quote.msg")).context("read quote.msg")?;
        let signature = std::fs::read(self.dir.join("quote.sig")).context("read quote.sig")?;
        Ok(TpmQuote {
            message,
            signature,
            pcrs: self.pcr_values()?,
        })
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
