// SPDX-License-Identifier: Apache-2.0
//! Azure's paravisor between the guest and its vTPM (kbs-protocol.md §3.4):
//! the guest writes its report data to NV 0x01400002, and the paravisor then
//! refreshes the HCL report in NV 0x01400001 so that var-data `user-data` is
//! that data and the hardware report binds SHA-256(var-data).
//!
//! Emulated as a TCP proxy in front of a [`Swtpm`], which the guest reaches
//! through a [`TpmDevice`] (its `/dev/tpmrm0`, [`Paravisor::tcti`]): commands
//! are forwarded one frame at a time (swtpm takes one client, so each open
//! device file gets one upstream connection, and they are served one after
//! the other). After a successful
//! `TPM2_NV_Write` to 0x01400002 the proxy reads the index back (owner auth,
//! so it works whatever session the agent used), builds a new HCL report
//! ([`crate::hcl::build`]) and writes it, zero-padded to 2048 bytes, into
//! 0x01400001 with its own NV_Write commands on the same swtpm connection,
//! before the agent's next command. NV_DefineSpace/UndefineSpace pass through.
//!
//! Knobs: [`Paravisor::delay_reads`] keeps the old report for the next n
//! report reads (NV_Reads of 0x01400001 at offset 0; the later chunks of a
//! read see the same report); [`Paravisor::never`] never refreshes it.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context as _, Result};

use crate::ak::AkInfo;
use crate::hcl::{self, HclKind, NV_HCL_REPORT, NV_USER_DATA};
use crate::swtpm::Swtpm;
use crate::tpm_cmd::{self, CC_NV_READ, CC_NV_WRITE};
use crate::tpm_dev::TpmDevice;

#[derive(Default)]
struct Knobs {
    delay_reads: usize,
    never: bool,
    /// A refreshed report not yet written, and how many report reads still see the old one.
    pending: Option<(Vec<u8>, usize)>,
    user_data: Option<Vec<u8>>,
    refreshes: usize,
    errors: Vec<String>,
}

struct Shared {
    kind: HclKind,
    ak: AkInfo,
    tpm_port: u16,
    stop: AtomicBool,
    knobs: Mutex<Knobs>,
}

/// A running paravisor proxy.
pub struct Paravisor {
    port: u16,
    shared: Arc<Shared>,
    device: TpmDevice,
}

/// The HCL report padded to the NV index size.
fn nv_image(kind: HclKind, ak: &AkInfo, user_data: &[u8]) -> Result<Vec<u8>> {
    let mut report = hcl::build(kind, ak, user_data)?;
    report.resize(hcl::MAX_LEN, 0);
    Ok(report)
}

impl Paravisor {
    /// Writes the initial HCL report (user-data all zeros) into NV 0x01400001
    /// of `swtpm` and starts proxying on two free loopback ports.
    pub fn start(swtpm: &Swtpm, kind: HclKind, ak: &AkInfo) -> Result<Paravisor> {
        let initial = nv_image(kind, ak, &[])?;
        if swtpm.nv_define_write(NV_HCL_REPORT, &initial).is_err() {
            swtpm.nv_undefine(NV_HCL_REPORT)?;
            swtpm.nv_define_write(NV_HCL_REPORT, &initial)?;
        }
        let commands =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a loopback port")?;
        let port = commands.local_addr().context("read the bound port")?.port();
        let shared = Arc::new(Shared {
            kind,
            ak: ak.clone(),
            tpm_port: swtpm.port(),
            stop: AtomicBool::new(false),
            knobs: Mutex::new(Knobs::default()),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("paravisor-cmd".into())
            .spawn(move || {
                for agent in commands.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(agent) = agent {
                        if let Err(e) = s.serve(agent) {
                            s.knobs().errors.push(format!("{e:#}"));
                        }
                    }
                }
            })
            .context("spawn the paravisor command thread")?;
        // The guest sees the paravisor's TPM as its /dev/tpmrm0.
        let device = TpmDevice::mount(&swtpm.dir().join("paravisor-dev"), port)?;
        Ok(Paravisor {
            port,
            shared,
            device,
        })
    }

    /// The TCTI string the agent should use: the paravisor's `/dev/tpmrm0`.
    pub fn tcti(&self) -> String {
        self.device.tcti()
    }

    /// The command port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next `n` report reads after a user-data write still see the old report.
    pub fn delay_reads(&self, n: usize) {
        self.shared.knobs().delay_reads = n;
    }

    /// The report is never refreshed.
    pub fn never(&self) {
        self.shared.knobs().never = true;
    }

    /// How many refreshed reports were written into NV 0x01400001.
    pub fn refreshes(&self) -> usize {
        self.shared.knobs().refreshes
    }

    /// The user data last read back from NV 0x01400002.
    pub fn user_data(&self) -> Option<Vec<u8>> {
        self.shared.knobs().user_data.clone()
    }

    /// Errors of the proxy (a broken connection, a failed refresh), oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.shared.knobs().errors.clone()
    }
}

impl Drop for Paravisor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

impl Shared {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards one agent connection's commands until it closes.
    fn serve(&self, mut agent: TcpStream) -> Result<()> {
        use std::io::Write as _;
        let mut tpm =
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.tpm_port)).context("connect swtpm")?;
        while let Some(command) = tpm_cmd::read_frame(&mut agent)? {
            let cc = tpm_cmd::code(&command);
            let index = tpm_cmd::handle(&command, 1);
            if cc == CC_NV_READ
                && index == Some(NV_HCL_REPORT)
                && tpm_cmd::nv_read_offset(&command) == Some(0)
            {
                self.before_report_read(&mut tpm)?;
            }
            let response = tpm_cmd::transact(&mut tpm, &command)?;
            if cc == CC_NV_WRITE && index == Some(NV_USER_DATA) && tpm_cmd::code(&response) == 0 {
                self.after_user_data(&mut tpm)?;
            }
            agent.write_all(&response).context("answer the agent")?;
        }
        Ok(())
    }

    /// Reads the user data back and prepares (or writes) the refreshed report.
    fn after_user_data(&self, tpm: &mut TcpStream) -> Result<()> {
        let size = tpm_cmd::nv_size(tpm, NV_USER_DATA)?.min(64);
        let data = tpm_cmd::read_start(tpm, NV_USER_DATA, size)?;
        let report = nv_image(self.kind, &self.ak, &data)?;
        let mut knobs = self.knobs();
        knobs.user_data = Some(data);
        if knobs.never {
            return Ok(());
        }
        let delay = knobs.delay_reads;
        knobs.pending = Some((report, delay));
        drop(knobs);
        if delay == 0 {
            self.before_report_read(tpm)?;
        }
        Ok(())
    }

    /// Writes a pending report unless its delay still holds.
    fn before_report_read(&self, tpm: &mut TcpStream) -> Result<()> {
        let mut knobs = self.knobs();
        let report = match knobs.pending.take() {
            None => return Ok(()),
            Some((report, 0)) => report,
            Some((report, left)) => {
                knobs.pending = Some((report, left - 1));
                return Ok(());
            }
        };
        drop(knobs);
        tpm_cmd::write_all(tpm, NV_HCL_REPORT, &report).context("refresh the HCL report")?;
        self.knobs().refreshes += 1;
        Ok(())
    }
}
