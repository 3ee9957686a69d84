// SPDX-License-Identifier: Apache-2.0
//! Reloading or restarting the units that consume delivered secrets. The
//! agent runs its units helper (`cvm-attest-units`, [`crate::helper`]),
//! which asks systemd over the system bus and waits for the jobs
//! (`manager.rs`): zbus stays out of the agent's binary and memory.

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::time::Instant;

use super::action::UnitAction;
use crate::helper::Helper;

/// The helper gets the journal's stream and the bus address, nothing else of
/// the agent's environment.
const HELPER: Helper = Helper {
    name: "cvm-attest-units",
    what: "the units helper",
    test_env: "CVM_ATTEST_UNITS_HELPER",
    env: &["JOURNAL_STREAM", "DBUS_SYSTEM_BUS_ADDRESS"],
};

/// How long a helper past its own deadline lives before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// Acts on each unit in turn and waits for every job, all within `timeout`.
/// Every action is tried; the error names each unit that failed. No
/// actions: nothing to do, and no helper run.
pub async fn act_on_units(actions: &[UnitAction], timeout: Duration) -> Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    let path = HELPER.path();
    let args = std::iter::once(timeout.as_millis().to_string())
        .chain(actions.iter().map(UnitAction::to_arg));
    let mut child = HELPER.spawn(&path, args, Stdio::null())?;
    let killed_at = Instant::now() + timeout + GRACE;
    let status = loop {
        let done = match child.try_wait() {
            Ok(done) => done,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).context("wait for the units helper");
            }
        };
        if let Some(status) = done {
            break status;
        }
        if Instant::now() >= killed_at {
            let _ = child.kill();
            let status = child.wait().context("reap the units helper")?;
            // It may have ended on its own between the two looks.
            if status.signal() == Some(libc::SIGKILL) {
                bail!(
                    "the units helper {} did not finish within {:.1} s; it ended (killed: {status})",
                    path.display(),
                    (timeout + GRACE).as_secs_f64()
                );
            }
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if status.success() {
        return Ok(());
    }
    // The helper's one-line error (its logs went to stderr, as ours).
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    match said.trim() {
        "" => bail!("the units helper {} failed ({status})", path.display()),
        said => bail!("{said}"),
    }
}
