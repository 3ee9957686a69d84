// SPDX-License-Identifier: Apache-2.0
//! Unit actions against a stand-in `org.freedesktop.systemd1` served with
//! zbus on a private `dbus-daemon` (skipped, saying so, where dbus-daemon is
//! missing). Part of the units helper's tests (`src/bin/cvm-attest-units.rs`).

use std::time::Duration;

use tee_emu::scratch::Scratch;
use tee_emu::systemd1::{Call, FakeSystemd};

use crate::action::{Action, UnitAction};
use crate::manager::act_on_units_at;

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
            call("ReloadOrTryRestartUnit", "a.service"),
            call("TryRestartUnit", "b.service"),
            call("ReloadOrTryRestartUnit", "c.socket")
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
        text.contains("reload-or-restart skip.service: the job ended with result 'skipped'"),
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
