// SPDX-License-Identifier: Apache-2.0
//! Reloading or restarting the units that consume delivered secrets, through
//! the service manager's D-Bus API (`org.freedesktop.systemd1.Manager`,
//! org.freedesktop.systemd1(5)): `ReloadUnit`, `RestartUnit` or
//! `ReloadOrRestartUnit` with mode `replace`, then the manager's `JobRemoved`
//! signal for the returned job. A job is done only with result `done`; any
//! other (`failed`, `canceled`, `timeout`, `dependency`, `skipped`) is an
//! error naming the unit.
//!
//! The system bus is the one in `$DBUS_SYSTEM_BUS_ADDRESS`, else the standard
//! socket. The initramfs usually has no bus at all: units are then ordered
//! after the agent instead.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use tokio::time::Instant;
use zbus::connection::Builder;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use crate::sink::{Action, UnitAction};

/// The system bus when `$DBUS_SYSTEM_BUS_ADDRESS` is unset (the D-Bus
/// specification's default, also zbus's).
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// How a queued job replaces conflicting ones (what `systemctl` uses).
const MODE: &str = "replace";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn reload_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_or_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// Acts on each unit in turn over the system bus and waits for every job to
/// finish, all within `timeout`. Every action is tried; the error names each
/// unit that failed. No actions: nothing to do, and no bus needed.
pub async fn act_on_units(actions: &[UnitAction], timeout: Duration) -> Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    let address =
        std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| DEFAULT_SYSTEM_BUS.to_owned());
    act_on_units_at(&address, actions, timeout).await
}

pub(super) async fn act_on_units_at(
    address: &str,
    actions: &[UnitAction],
    timeout: Duration,
) -> Result<()> {
    if actions.is_empty() {
        return Ok(());
    }
    for action in actions {
        check_unit_name(&action.unit)?;
    }
    let deadline = Instant::now() + timeout;
    let connection =
        tokio::time::timeout_at(deadline, async { Builder::address(address)?.build().await })
            .await
            .map_err(|_| anyhow!("no answer within {}", secs(timeout)))
            // zbus shows its I/O source in its own message: keep it once.
            .and_then(|r| r.map_err(|e| anyhow!("{e}")))
            .with_context(|| {
                format!(
                    "no D-Bus system bus at {address}: units cannot be reloaded from here; \
                 order them After=cvm-attest.service instead"
                )
            })?;
    let manager = ManagerProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .context("address systemd's manager object on the system bus")?;
    // Subscribe before queueing any job, so that no JobRemoved is missed. The
    // manager sends it to the client that queued the job even without
    // Subscribe() (systemd tracks the requester of each job).
    let mut removed = manager
        .receive_job_removed()
        .await
        .context("listen for systemd's JobRemoved signals")?;

    let mut failures = Vec::new();
    for action in actions {
        let what = format!("{} {}", verb(action.action), action.unit);
        let outcome = tokio::time::timeout_at(deadline, async {
            let job = queue(&manager, action)
                .await
                .with_context(|| format!("ask systemd to {what}"))?;
            log::debug!("{what}: job {}", job.as_str());
            while let Some(signal) = removed.next().await {
                let args = signal.args().context("decode a JobRemoved signal")?;
                if args.job != job {
                    continue;
                }
                if args.result != "done" {
                    bail!(
                        "{what}: the job ended with result '{}' (see journalctl -u {})",
                        args.result,
                        action.unit
                    );
                }
                return Ok(());
            }
            bail!("{what}: the system bus closed the connection")
        })
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "{what}: systemd did not finish the job within {}",
                secs(timeout)
            ))
        });
        match outcome {
            Ok(()) => log::info!("{what}: done"),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let all: Vec<String> = failures.iter().map(|e| format!("{e:#}")).collect();
            bail!("{n} unit actions failed: {}", all.join("; "))
        }
    }
}

async fn queue(manager: &ManagerProxy<'_>, action: &UnitAction) -> zbus::Result<OwnedObjectPath> {
    match action.action {
        Action::Reload => manager.reload_unit(&action.unit, MODE).await,
        Action::Restart => manager.restart_unit(&action.unit, MODE).await,
        Action::ReloadOrRestart => manager.reload_or_restart_unit(&action.unit, MODE).await,
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Reload => "reload",
        Action::Restart => "restart",
        Action::ReloadOrRestart => "reload or restart",
    }
}

/// The configuration validated names already; this refuses what could never
/// be a unit whatever the caller (a path, a control character).
fn check_unit_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        bail!(
            "refuse to act on unit '{}': a unit name is not empty and has no '/' or control characters",
            name.escape_default()
        );
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
