// SPDX-License-Identifier: Apache-2.0
//! `tee-emu`: mounts one emulator until SIGTERM or SIGINT, for manual
//! debugging and boot tests.
//!
//! ```text
//! tee-emu tsm --provider sev|tdx --mount DIR   # DIR = configfs mount point (…/sys/kernel/config)
//! tee-emu sev-guest --mount DIR                # DIR/sev-guest is the device
//! ```

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use tee_emu::{Provider, SevGuestEmulator, TsmEmulator};

const USAGE: &str =
    "usage: tee-emu tsm --provider sev|tdx --mount DIR | tee-emu sev-guest --mount DIR";

fn main() {
    if let Err(e) = run() {
        eprintln!("tee-emu: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or_else(|| anyhow!(USAGE))?;
    let (mut provider, mut mount) = (None, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--provider" => provider = Some(value),
            "--mount" => mount = Some(PathBuf::from(value)),
            _ => bail!("unknown argument {flag}; {USAGE}"),
        }
    }
    let mount = mount.ok_or_else(|| anyhow!("--mount is required; {USAGE}"))?;
    // Block the signals before any thread starts, so that only sigwait sees them.
    let signals = block_signals()?;
    match command.as_str() {
        "tsm" => {
            let provider = match provider.as_deref() {
                Some("sev") => Provider::Sev,
                Some("tdx") => Provider::Tdx,
                _ => bail!("--provider must be sev or tdx; {USAGE}"),
            };
            let emu = TsmEmulator::mount_at(&mount, provider)?;
            eprintln!(
                "tee-emu: configfs-tsm ({}) at {}",
                provider.name(),
                emu.report_dir().display()
            );
            wait(&signals)
        }
        "sev-guest" => {
            let emu = SevGuestEmulator::mount_at(&mount)?;
            eprintln!("tee-emu: sev-guest at {}", emu.device().display());
            wait(&signals)
        }
        _ => bail!("unknown command {command}; {USAGE}"),
    }
}

fn block_signals() -> Result<libc::sigset_t> {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error()).context("block SIGTERM and SIGINT");
        }
        Ok(set)
    }
}

fn wait(set: &libc::sigset_t) -> Result<()> {
    let mut sig = 0;
    // SAFETY: `set` is a valid signal set and `sig` a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        bail!("sigwait failed: {}", std::io::Error::from_raw_os_error(rc));
    }
    eprintln!("tee-emu: signal {sig}, unmounting");
    Ok(())
}
