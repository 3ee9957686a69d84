// SPDX-License-Identifier: Apache-2.0
//! The configfs-tsm report state machine, without the FUSE plumbing.
//!
//! Kernel ABI: Documentation/ABI/testing/configfs-tsm-report and
//! drivers/virt/coco/guest/report.c (Linux 6.7+). One entry per `mkdir` under
//! `tsm/report`; attributes per provider; `generation` counts committed writes
//! to `inblob` and `privlevel`; `outblob`/`auxblob` are (re)generated on read
//! when no report exists or `generation` moved since the last one; the
//! providers want exactly 64 bytes of `inblob` (else `EINVAL` at read).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{snp, tdx};

/// The TSM provider registered with the emulated kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `sev_guest`: SNP reports, `auxblob`, `privlevel`.
    Sev,
    /// `tdx_guest`: TDX v4 quotes.
    Tdx,
}

impl Provider {
    /// The `provider` attribute's value without the newline.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Sev => "sev_guest",
            Provider::Tdx => "tdx_guest",
        }
    }
}

/// Fault knobs and run-time configuration of the TSM emulator.
#[derive(Debug, Clone, Default)]
pub struct TsmFaults {
    /// Registered provider; `None` makes `mkdir` fail with `ENXIO`.
    pub provider: Option<Provider>,
    /// For the next `race` inblob commits, a simulated concurrent writer bumps
    /// that entry's `generation` once more before the agent reads `outblob`.
    pub race: u32,
    /// The next `busy` reads of `outblob` fail with `EBUSY`.
    pub busy: u32,
    /// The next `eio` reads of `outblob` fail with `EIO`.
    pub eio: u32,
    /// `mkdir` fails with `EACCES`, as for an unprivileged caller.
    pub deny: bool,
    /// Truncate generated `outblob`s to this many bytes.
    pub outblob_len: Option<usize>,
    /// SEV: the certificates in `auxblob` (none: it is empty).
    pub certs: snp::HostCerts,
    /// TDX: RTMR0..3 of the quotes (else the template's).
    pub rtmrs: Option<[[u8; 48]; 4]>,
    /// SEV: the reports' reported SNP SPL (else 23, the test VCEK's).
    pub reported_snp_spl: Option<u8>,
}

/// An entry attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Inblob = 1,
    Outblob,
    Auxblob,
    Provider,
    Generation,
    Privlevel,
    PrivlevelFloor,
}

impl Attr {
    pub(crate) const ALL: [Attr; 7] = [
        Attr::Inblob,
        Attr::Outblob,
        Attr::Auxblob,
        Attr::Provider,
        Attr::Generation,
        Attr::Privlevel,
        Attr::PrivlevelFloor,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Attr::Inblob => "inblob",
            Attr::Outblob => "outblob",
            Attr::Auxblob => "auxblob",
            Attr::Provider => "provider",
            Attr::Generation => "generation",
            Attr::Privlevel => "privlevel",
            Attr::PrivlevelFloor => "privlevel_floor",
        }
    }

    /// configfs modes: binary blobs 0400/0200, text 0444/0200.
    pub(crate) fn mode(self) -> u16 {
        match self {
            Attr::Inblob | Attr::Privlevel => 0o200,
            Attr::Outblob | Attr::Auxblob => 0o400,
            _ => 0o444,
        }
    }

    pub(crate) fn visible(self, provider: Option<Provider>) -> bool {
        match self {
            Attr::Auxblob | Attr::Privlevel | Attr::PrivlevelFloor => {
                provider == Some(Provider::Sev)
            }
            _ => true,
        }
    }
}

/// Maximum `inblob` size (`TSM_INBLOB_MAX`).
pub const INBLOB_MAX: usize = 64;

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) id: u64,
    inblob: Vec<u8>,
    privlevel: u32,
    write_gen: u64,
    read_gen: Option<u64>,
    outblob: Vec<u8>,
    auxblob: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct TsmState {
    pub(crate) faults: TsmFaults,
    pub(crate) entries: Vec<Entry>,
    next_id: u64,
}

/// Shared handle on the emulator's state: the test holds one to turn knobs.
#[derive(Debug, Clone, Default)]
pub struct TsmKnobs(pub(crate) Arc<Mutex<TsmState>>);

impl TsmKnobs {
    pub(crate) fn lock(&self) -> MutexGuard<'_, TsmState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes knobs: `knobs.update(|f| f.busy = 2)`.
    pub fn update(&self, change: impl FnOnce(&mut TsmFaults)) {
        change(&mut self.lock().faults);
    }

    /// The current knobs (counters show what is left).
    pub fn faults(&self) -> TsmFaults {
        self.lock().faults.clone()
    }

    /// Names of the entries that exist now (to check that a client cleans up).
    pub fn entries(&self) -> Vec<String> {
        self.lock().entries.iter().map(|e| e.name.clone()).collect()
    }
}

type Errno = i32;

impl TsmState {
    pub(crate) fn entry(&self, id: u64) -> Result<&Entry, Errno> {
        self.entries.iter().find(|e| e.id == id).ok_or(libc::ENOENT)
    }

    fn entry_mut(&mut self, id: u64) -> Result<&mut Entry, Errno> {
        self.entries
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or(libc::ENOENT)
    }

    pub(crate) fn find(&self, name: &str) -> Option<u64> {
        self.entries.iter().find(|e| e.name == name).map(|e| e.id)
    }

    pub(crate) fn mkdir(&mut self, name: &str) -> Result<u64, Errno> {
        if self.faults.deny {
            return Err(libc::EACCES);
        }
        if self.faults.provider.is_none() {
            return Err(libc::ENXIO);
        }
        if self.find(name).is_some() {
            return Err(libc::EEXIST);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(Entry {
            name: name.to_string(),
            id,
            inblob: Vec::new(),
            privlevel: 0,
            write_gen: 0,
            read_gen: None,
            outblob: Vec::new(),
            auxblob: Vec::new(),
        });
        Ok(id)
    }

    pub(crate) fn rmdir(&mut self, name: &str) -> Result<(), Errno> {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        if self.entries.len() == before {
            return Err(libc::ENOENT);
        }
        Ok(())
    }

    /// configfs calls the bin attribute's store on release and ignores the result.
    pub(crate) fn commit_inblob(&mut self, id: u64, data: &[u8]) {
        let race = self.faults.race > 0;
        if race {
            self.faults.race -= 1;
        }
        if let Ok(entry) = self.entry_mut(id) {
            entry.inblob = data.to_vec();
            entry.write_gen += 1;
            if race {
                entry.write_gen += 1;
            }
        }
    }

    /// `privlevel` store: "must be between privlevel_floor and 3" (else EINVAL).
    pub(crate) fn write_privlevel(&mut self, id: u64, text: &[u8]) -> Result<(), Errno> {
        let level: u32 = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim_end_matches('\n').parse().ok())
            .ok_or(libc::EINVAL)?;
        if level > 3 {
            return Err(libc::EINVAL);
        }
        let entry = self.entry_mut(id)?;
        entry.privlevel = level;
        entry.write_gen += 1;
        Ok(())
    }

    /// Content of a readable attribute, generating the report when needed.
    pub(crate) fn read(&mut self, id: u64, attr: Attr) -> Result<Vec<u8>, Errno> {
        let provider = self.faults.provider;
        match attr {
            Attr::Provider => {
                let p = provider.ok_or(libc::ENXIO)?;
                Ok(format!("{}\n", p.name()).into_bytes())
            }
            Attr::Generation => Ok(format!("{}\n", self.entry(id)?.write_gen).into_bytes()),
            Attr::PrivlevelFloor => Ok(b"0\n".to_vec()),
            Attr::Outblob | Attr::Auxblob => self.read_blob(id, attr),
            Attr::Inblob | Attr::Privlevel => Err(libc::EACCES),
        }
    }

    fn read_blob(&mut self, id: u64, attr: Attr) -> Result<Vec<u8>, Errno> {
        let provider = self.faults.provider.ok_or(libc::ENOTTY)?;
        if attr == Attr::Outblob {
            if self.faults.busy > 0 {
                self.faults.busy -= 1;
                return Err(libc::EBUSY);
            }
            if self.faults.eio > 0 {
                self.faults.eio -= 1;
                return Err(libc::EIO);
            }
        }
        let (truncate, certs, rtmrs, spl) = (
            self.faults.outblob_len,
            self.faults.certs,
            self.faults.rtmrs,
            self.faults.reported_snp_spl,
        );
        let entry = self.entry_mut(id)?;
        if entry.read_gen != Some(entry.write_gen) {
            // Both providers: "if (desc->inblob_len != 64) return -EINVAL".
            let data: [u8; 64] = entry
                .inblob
                .as_slice()
                .try_into()
                .map_err(|_| libc::EINVAL)?;
            let (out, aux) = match provider {
                Provider::Sev => (
                    snp::report_at_snp_spl(&data, entry.privlevel, spl).map_err(|_| libc::EIO)?,
                    snp::host_table(certs),
                ),
                Provider::Tdx => (
                    tdx::quote_with(&data, rtmrs.as_ref()).map_err(|_| libc::EIO)?,
                    Vec::new(),
                ),
            };
            entry.outblob = out;
            entry.auxblob = aux;
            if let Some(len) = truncate {
                entry.outblob.truncate(len);
            }
            entry.read_gen = Some(entry.write_gen);
        }
        Ok(match attr {
            Attr::Outblob => entry.outblob.clone(),
            _ => entry.auxblob.clone(),
        })
    }
}
