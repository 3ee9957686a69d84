// SPDX-License-Identifier: Apache-2.0
//! `sd_notify(3)` without libsystemd: one datagram per message to the
//! `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written `@name`). The units run the agent with `NotifyAccess=main`, so
//! systemd accepts `STATUS=` and `EXTEND_TIMEOUT_USEC=` from it (systemd 252
//! `service_notify_message()` extends the start timeout for any `Type=`).
//!
//! Reporting progress must never fail the boot: without `$NOTIFY_SOCKET` (run
//! by hand) every call is a silent no-op, and a send that fails is logged once
//! and otherwise ignored.

use std::ffi::{OsStr, OsString};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Sends state changes to the service manager, if there is one.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Set once the first failure has been logged.
    warned: AtomicBool,
}

impl Notifier {
    /// The socket systemd named in `$NOTIFY_SOCKET`; inactive when unset.
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET"))
    }

    pub(super) fn new(socket: Option<OsString>) -> Notifier {
        let mut notifier = Notifier {
            target: None,
            warned: AtomicBool::new(false),
        };
        match socket.filter(|s| !s.is_empty()).map(|s| open(&s)) {
            None => {}
            Some(Ok(target)) => notifier.target = Some(target),
            Some(Err(e)) => notifier.warn(&e),
        }
        notifier
    }

    /// `STATUS=`: one line shown by `systemctl status`; control characters,
    /// newlines included, become spaces.
    pub fn status(&self, text: &str) {
        let line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.send(&format!("STATUS={line}"));
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks for `by` more before the start timeout.
    pub fn extend_timeout(&self, by: Duration) {
        let usec = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
    }

    /// `READY=1`: start-up is finished (acted on by `Type=notify` units only).
    #[cfg(test)]
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        // The kernel attaches our credentials for systemd (SO_PASSCRED), which
        // NotifyAccess=main checks against the main PID.
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr) {
            let path = display_addr(addr);
            self.warn(&anyhow::Error::new(e).context(format!("send to NOTIFY_SOCKET {path}")));
        }
    }

    fn warn(&self, e: &anyhow::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{e:#}: progress is not reported to systemd (further notify errors are not shown)"
            );
        }
    }
}

fn open(socket: &OsStr) -> Result<(UnixDatagram, SocketAddr)> {
    let bytes = socket.as_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        SocketAddr::from_abstract_name(name)
    } else if bytes.starts_with(b"/") {
        SocketAddr::from_pathname(Path::new(socket))
    } else {
        bail!(
            "NOTIFY_SOCKET={} is neither an absolute path nor an abstract socket name (@name)",
            socket.to_string_lossy()
        );
    }
    .with_context(|| format!("use NOTIFY_SOCKET={}", socket.to_string_lossy()))?;
    let datagram = UnixDatagram::unbound().context("create a socket for NOTIFY_SOCKET")?;
    // A manager that stops reading must not stall the boot: drop the message.
    datagram
        .set_nonblocking(true)
        .context("make the NOTIFY_SOCKET socket non-blocking")?;
    Ok((datagram, addr))
}

fn display_addr(addr: &SocketAddr) -> String {
    match (addr.as_pathname(), addr.as_abstract_name()) {
        (Some(path), _) => path.display().to_string(),
        (None, Some(name)) => format!("@{}", String::from_utf8_lossy(name)),
        (None, None) => "(unnamed)".to_owned(),
    }
}
