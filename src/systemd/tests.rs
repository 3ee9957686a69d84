// SPDX-License-Identifier: Apache-2.0
//! The notifier against a datagram socket in a scratch directory, and unit
//! actions against a stand-in `org.freedesktop.systemd1` served with zbus on
//! a private `dbus-daemon` (skipped, saying so, where dbus-daemon is missing).

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tee_emu::systemd1::{Call, FakeSystemd};

use super::units::act_on_units_at;
use super::Notifier;
use crate::sink::{Action, UnitAction};

/// A scratch directory removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cvm-attest-systemd-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn receiver(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify datagram");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn notifier_sends_status_extend_and_ready() {
    let dir = Scratch::new("notify");
    let path = dir.path().join("notify");
    let socket = receiver(&path);
    let notifier = Notifier::new(Some(path.into_os_string()));
    assert!(notifier.active());
    notifier.status("Waiting for the KBS\n(attempt 3)\r");
    notifier.extend_timeout(Duration::from_secs(90));
    notifier.extend_timeout(Duration::from_micros(1500));
    notifier.ready();
    assert_eq!(recv(&socket), "STATUS=Waiting for the KBS (attempt 3) ");
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=90000000");
    assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=1500");
    assert_eq!(recv(&socket), "READY=1");
}

#[test]
fn notifier_reaches_an_abstract_socket() {
    let name = format!("cvm-attest-test-notify-{}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let notifier = Notifier::new(Some(OsString::from(format!("@{name}"))));
    notifier.ready();
    assert_eq!(recv(&socket), "READY=1");
}

#[test]
fn notifier_is_silent_without_a_socket() {
    for socket in [None, Some(OsString::new())] {
        let notifier = Notifier::new(socket);
        assert!(!notifier.active());
        notifier.status("nobody listens");
        notifier.extend_timeout(Duration::from_secs(1));
        notifier.ready();
    }
}

#[test]
fn notifier_survives_a_missing_or_bad_socket() {
    let dir = Scratch::new("notify-missing");
    // Nobody bound it: every send fails, is logged once, and is ignored.
    let notifier = Notifier::new(Some(dir.path().join("absent").into_os_string()));
    assert!(notifier.active());
    notifier.status("lost");
    notifier.ready();
    // Neither a path nor an abstract name: inactive.
    let notifier = Notifier::new(Some(OsString::from("relative/notify")));
    assert!(!notifier.active());
    notifier.ready();
}

fn action(unit: &str, action: Action) -> UnitAction {
    UnitAction {
        unit: unit.to_owned(),
        action,
    }
}

fn call(method: &'static str, unit: &str) -> Call {
    Call {
        method,
        unit: unit.to_owned(),
        mode: "replace".to_owned(),
    }
}

#[tokio::test]
async fn unit_actions_reach_the_manager_and_wait_for_their_jobs() {
    let dir = Scratch::new("dbus-ok");
    let Some(bus) = FakeSystemd::start(
        dir.path(),
        &[
            ("a.service", "done"),
            ("b.service", "done"),
            ("c.socket", "done"),
        ],
    ) else {
        return;
    };
    let actions = [
        action("a.service", Action::Reload),
        action("b.service", Action::Restart),
        action("c.socket", Action::ReloadOrRestart),
    ];
    act_on_units_at(bus.address(), &actions, Duration::from_secs(20))
        .await
        .expect("every job done");
    assert_eq!(
        bus.calls(),
        [
            call("ReloadUnit", "a.service"),
            call("RestartUnit", "b.service"),
            call("ReloadOrRestartUnit", "c.socket")
        ]
    );
}

#[tokio::test]
async fn a_failed_job_is_an_error_naming_the_unit() {
    let dir = Scratch::new("dbus-failed");
    let Some(bus) = FakeSystemd::start(
        dir.path(),
        &[("bad.service", "failed"), ("good.service", "done")],
    ) else {
        return;
    };
    let actions = [
        action("bad.service", Action::Restart),
        action("good.service", Action::Reload),
    ];
    let e = act_on_units_at(bus.address(), &actions, Duration::from_secs(20))
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert_eq!(
        text,
        "restart bad.service: the job ended with result 'failed' (see journalctl -u bad.service)"
    );
    // The other unit was still acted on.
    assert_eq!(bus.calls().len(), 2);
}

#[tokio::test]
async fn every_failure_is_reported() {
    let dir = Scratch::new("dbus-failures");
    let Some(bus) = FakeSystemd::start(dir.path(), &[("skip.service", "skipped")]) else {
        return;
    };
    let actions = [
        action("missing.service", Action::Reload),
        action("skip.service", Action::ReloadOrRestart),
    ];
    let e = act_on_units_at(bus.address(), &actions, Duration::from_secs(20))
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.starts_with("2 unit actions failed: ask systemd to reload missing.service: "),
        "{text}"
    );
    assert!(text.contains("Unit missing.service not found."), "{text}");
    assert!(
        text.contains("reload or restart skip.service: the job ended with result 'skipped'"),
        "{text}"
    );
}

#[tokio::test]
async fn a_job_that_never_ends_times_out() {
    let dir = Scratch::new("dbus-hang");
    let Some(bus) = FakeSystemd::start(dir.path(), &[]) else {
        return;
    };
    let actions = [action("hang.service", Action::Restart)];
    let e = act_on_units_at(bus.address(), &actions, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "restart hang.service: systemd did not finish the job within 300 ms"
    );
}

#[tokio::test]
async fn a_missing_bus_is_a_clear_error() {
    let dir = Scratch::new("dbus-missing");
    let address = format!("unix:path={}", dir.path().join("no-bus").display());
    let actions = [action("a.service", Action::Restart)];
    let e = act_on_units_at(&address, &actions, Duration::from_secs(5))
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    let expected = format!(
        "no D-Bus system bus at {address}: units cannot be reloaded from here; \
         order them After=cvm-attest.service instead: I/O error: No such file or directory (os error 2)"
    );
    assert_eq!(text, expected);
    // Nothing to do needs no bus.
    act_on_units_at(&address, &[], Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn unit_names_that_cannot_be_units_are_refused_before_any_traffic() {
    let address = "unix:path=/nonexistent/cvm-attest-test-bus";
    for (name, shown) in [
        ("../etc/x.service", "../etc/x.service"),
        ("a\nb.service", "a\\nb.service"),
        ("", ""),
    ] {
        let actions = [
            action("ok.service", Action::Reload),
            action(name, Action::Reload),
        ];
        let e = act_on_units_at(address, &actions, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!("refuse to act on unit '{shown}': a unit name is not empty and has no '/' or control characters")
        );
    }
}
