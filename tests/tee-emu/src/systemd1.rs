// SPDX-License-Identifier: Apache-2.0
//! A private `dbus-daemon` with a stand-in `org.freedesktop.systemd1`
//! (`/org/freedesktop/systemd1`, interface `org.freedesktop.systemd1.Manager`):
//! `TryRestartUnit` and `ReloadOrTryRestartUnit` (the two the agent calls)
//! record the call,
//! return a job path and later emit `JobRemoved(id, job, unit, result)` with
//! the result configured for the unit (after an unrelated job's signal, as on
//! a busy system), or never when none is; `missing.service` does not exist.
//! Served with zbus on a thread of its own; the daemon dies with the value.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// One method call received by the stand-in manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub unit: String,
    pub mode: String,
}

pub struct FakeSystemd {
    pid: libc::pid_t,
    address: String,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Manager {
    calls: Arc<Mutex<Vec<Call>>>,
    results: HashMap<String, String>,
    next_id: u32,
}

impl Manager {
    fn queue(
        &mut self,
        method: &'static str,
        unit: String,
        mode: String,
        emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(Call {
                method,
                unit: unit.clone(),
                mode,
            });
        }
        if unit == "missing.service" {
            return Err(zbus::fdo::Error::Failed(format!("Unit {unit} not found.")));
        }
        self.next_id += 1;
        let id = self.next_id;
        let job = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}"))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        if let Some(result) = self.results.get(&unit).cloned() {
            let emitter = emitter.to_owned();
            let path = job.clone();
            tokio::spawn(async move {
                if let Ok(other) = ObjectPath::try_from("/org/freedesktop/systemd1/job/9999") {
                    let _ = Manager::job_removed(&emitter, 9999, other, "other.service", "failed")
                        .await;
                }
                let _ = Manager::job_removed(&emitter, id, path.as_ref(), &unit, &result).await;
            });
        }
        Ok(job)
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn try_restart_unit(
        &mut self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.queue("TryRestartUnit", name, mode, emitter)
    }

    async fn reload_or_try_restart_unit(
        &mut self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.queue("ReloadOrTryRestartUnit", name, mode, emitter)
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

impl FakeSystemd {
    /// Starts `dbus-daemon --session` on a socket in `dir` and serves the
    /// stand-in there; `None` (saying why) when dbus-daemon is missing.
    pub fn start(dir: &Path, results: &[(&str, &str)]) -> Option<FakeSystemd> {
        let listen = format!("unix:path={}", dir.join("bus").display());
        let out = match Command::new("dbus-daemon")
            .args([
                "--session",
                "--fork",
                "--nopidfile",
                "--print-address=1",
                "--print-pid=1",
            ])
            .arg(format!("--address={listen}"))
            .output()
        {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!("dbus-daemon: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => {
                eprintln!("SKIPPED: no dbus-daemon ({e}); install dbus to run the D-Bus tests");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let address = lines.next().expect("the bus address").to_owned();
        let pid = lines
            .next()
            .expect("the daemon's pid")
            .trim()
            .parse()
            .expect("a pid");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let manager = Manager {
            calls: calls.clone(),
            results: results
                .iter()
                .map(|(u, r)| (u.to_string(), r.to_string()))
                .collect(),
            next_id: 0,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = mpsc::channel::<Result<(), String>>();
        let bus = address.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let served = async {
                    zbus::connection::Builder::address(bus.as_str())?
                        .name("org.freedesktop.systemd1")?
                        .serve_at("/org/freedesktop/systemd1", manager)?
                        .build()
                        .await
                };
                match served.await {
                    Ok(connection) => {
                        let _ = ready.send(Ok(()));
                        let _ = stopped.await;
                        drop(connection);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                    }
                }
            });
        });
        let fake = FakeSystemd {
            pid,
            address,
            calls,
            stop: Some(stop),
            thread: Some(thread),
        };
        match is_ready.recv() {
            Ok(Ok(())) => Some(fake),
            Ok(Err(e)) => panic!("serve the stand-in systemd1: {e}"),
            Err(e) => panic!("the stand-in systemd1 thread died: {e}"),
        }
    }

    /// The bus address, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: kill has no memory preconditions; pid is the daemon we started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
    }
}
