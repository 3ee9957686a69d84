// SPDX-License-Identifier: Apache-2.0
//! Reloading or restarting the units that consume delivered secrets, through
//! the service manager's D-Bus API (`org.freedesktop.systemd1.Manager`,
//! org.freedesktop.systemd1(5)): `TryRestartUnit` or `ReloadOrTryRestartUnit`
//! (a unit that is not running reads its secret when it starts) with mode
//! `replace`, then the manager's `JobRemoved`
//! signal for the returned job. A job is done only with result `done`; any
//! other (`failed`, `canceled`, `timeout`, `dependency`, `skipped`) is an
//! error naming the unit.
//!
//! The system bus is the one in `$DBUS_SYSTEM_BUS_ADDRESS`, else the standard
//! socket. The initramfs usually has no bus at all: units are then ordered
//! after the agent instead.
//!
//! Compiled into the units helper (`src/bin/cvm-attest-units.rs`) only: zbus
//! would be a sixth of the agent's binary and resident in every run.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use tokio::time::Instant;
use zbus::connection::Builder;
use zbus::zvariant::OwnedObjectPath;

use crate::action::{check_unit_name, Action, UnitAction};

/// The system bus when `$DBUS_SYSTEM_BUS_ADDRESS` is unset (the D-Bus
/// specification's default, also zbus's).
const DEFAULT_SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// How a queued job replaces conflicting ones (what `systemctl` uses).
const MODE: &str = "replace";

/// The manager object. Plain method calls and one match rule, not a
/// `#[zbus::proxy]`: the proxy's property cache and signal machinery were
/// 100 KB of the binary for three methods and one signal.
const SERVICE: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

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

pub async fn act_on_units_at(
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
    // Subscribe before queueing any job, so that no JobRemoved is missed. The
    // manager sends it to the client that queued the job even without
    // Subscribe() (systemd tracks the requester of each job).
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(SERVICE)?
        .path(PATH)?
        .interface(MANAGER)?
        .member("JobRemoved")?
        .build();
    let mut removed = zbus::MessageStream::for_match_rule(rule, &connection, None)
        .await
        .context("listen for systemd's JobRemoved signals")?;

    let mut failures = Vec::new();
    for action in actions {
        let what = format!("{} {}", action.action.name(), action.unit);
        let outcome = tokio::time::timeout_at(deadline, async {
            let job = queue(&connection, action)
                .await
                .with_context(|| format!("ask systemd to {what}"))?;
            log::debug!("{what}: job {}", job.as_str());
            while let Some(signal) = removed.next().await {
                let signal = signal.context("read from the system bus")?;
                let (_id, removed_job, _unit, result): (u32, OwnedObjectPath, String, String) =
                    signal
                        .body()
                        .deserialize()
                        .context("decode a JobRemoved signal")?;
                if removed_job != job {
                    continue;
                }
                if result != "done" {
                    bail!(
                        "{what}: the job ended with result '{result}' (see journalctl -u {})",
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

async fn queue(
    connection: &zbus::Connection,
    action: &UnitAction,
) -> zbus::Result<OwnedObjectPath> {
    // The "try" forms act only on a unit that runs. One that does not reads
    // the new secret when it starts; and at boot a consumer ordered
    // After=cvm-attest.service has a start job waiting for this very run:
    // a plain restart or reload would merge into that job and wait for us
    // until the deadline. systemd has no try-reload: a reload is
    // ReloadOrTryRestartUnit (`systemctl try-reload-or-restart`).
    let method = match action.action {
        Action::Restart => "TryRestartUnit",
        Action::Reload | Action::ReloadOrRestart => "ReloadOrTryRestartUnit",
    };
    let reply = connection
        .call_method(
            Some(SERVICE),
            PATH,
            Some(MANAGER),
            method,
            &(action.unit.as_str(), MODE),
        )
        .await?;
    reply.body().deserialize()
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
