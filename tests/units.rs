// SPDX-License-Identifier: Apache-2.0
//! The systemd units in `systemd/`: `systemd-analyze verify` finds nothing
//! (syntax, ordering cycles, the ExecStart= binary), `systemd-analyze
//! security --offline=true` rates both at 2.0 or better, both share one
//! hardening block, and every ExecStart= is a command line the binary accepts.
//!
//! Offline, systemd 252's `verify` insists that the ExecStart= binary exists,
//! so each unit is copied to the test directory with `/usr/bin/cvm-attest`
//! replaced by the built binary (`--root=` would need a whole tree, units
//! included). It loads the dependencies from the host's unit directories,
//! which is what finds ordering cycles through cryptsetup.target and
//! sysinit.target; it exits 0 even then, so any output fails the test. Do
//! not set SYSTEMD_IN_INITRD=1: verify then misses the cycle that default
//! dependencies make in the initrd unit. Without systemd-analyze the tests
//! print SKIPPED (CI installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{agent, stderr, TempDir};

/// The two units that run the agent, and share one hardening block.
const UNITS: [&str; 2] = ["cvm-attest.service", "cvm-attest-initrd.service"];
/// Every unit we ship.
const ALL_UNITS: [&str; 3] = [UNITS[0], UNITS[1], "cvm-attest-cleanup.service"];
const INSTALLED_BINARY: &str = "/usr/bin/cvm-attest";

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `systemd-analyze` with `args`, or `None` (after printing SKIPPED) when it
/// is not installed.
fn analyze(args: &[&str], file: &Path) -> Option<Output> {
    match Command::new("systemd-analyze")
        .args(args)
        .arg(file)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: systemd-analyze is not installed");
            None
        }
        Err(e) => panic!("run systemd-analyze: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit copied into `dir` with Exec*= pointing at the built binary.
fn staged(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = unit_text(name).replace(
        &format!("={INSTALLED_BINARY} "),
        &format!("={} ", env!("CARGO_BIN_EXE_cvm-attest")),
    );
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn units_verify_cleanly() {
    let dir = TempDir::new("units-verify");
    for name in ALL_UNITS {
        let unit = staged(dir.path(), name, |t| t);
        let Some(out) = analyze(&["verify", "--man=no"], &unit) else {
            return;
        };
        let output = text(&out);
        assert!(
            out.status.success() && output.trim().is_empty(),
            "systemd-analyze verify {name}:\n{output}"
        );
    }
}

/// Guards the check above: verify does report the cycle that default
/// dependencies make before cryptsetup-pre.target.
#[test]
fn verify_reports_an_ordering_cycle() {
    let dir = TempDir::new("units-cycle");
    let unit = staged(dir.path(), "cvm-attest-initrd.service", |t| {
        t.replace("DefaultDependencies=no", "DefaultDependencies=yes")
    });
    let Some(out) = analyze(&["verify", "--man=no"], &unit) else {
        return;
    };
    let output = text(&out);
    assert!(
        output.contains("Found ordering cycle"),
        "systemd-analyze verify:\n{output}"
    );
}

#[test]
fn units_are_hardened_to_2_0() {
    let dir = TempDir::new("units-security");
    for name in ALL_UNITS {
        let unit = staged(dir.path(), name, |t| t);
        // --threshold is in tenths: a non-zero exit above 2.0.
        let Some(out) = analyze(&["security", "--offline=true", "--threshold=20"], &unit) else {
            return;
        };
        let output = text(&out);
        let level = output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("→ Overall exposure level for {name}: ")))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no overall exposure level for {name}:\n{output}"));
        assert!(
            out.status.success() && level <= 2.0,
            "{name} exposure {level}:\n{output}"
        );
    }
}

/// The directives after the "# Hardening" line, without comments.
fn hardening(name: &str) -> Vec<String> {
    let text = unit_text(name);
    let start = text
        .find("\n# Hardening")
        .unwrap_or_else(|| panic!("{name} has no hardening block"));
    let end = text.find("\n[Install]").unwrap_or(text.len());
    text[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn both_units_share_one_hardening_block() {
    assert_eq!(hardening(UNITS[0]), hardening(UNITS[1]));
}

/// The agent's own setrlimit is refused by the units' filter, and the
/// cleanup unit reads key files too.
#[test]
fn every_unit_forbids_core_files() {
    for name in ALL_UNITS {
        assert!(
            unit_text(name).lines().any(|l| l.trim() == "LimitCORE=0"),
            "{name} allows core files"
        );
    }
}

/// The initramfs unit also wipes, when it stops, the key files of the
/// volumes opened meanwhile (`cleanup`); the cleanup unit does the same on
/// the real root.
#[test]
fn exec_lines_are_commands_the_binary_accepts() {
    for (name, expected) in [
        (UNITS[0], &["ExecStart=run"][..]),
        (
            UNITS[1],
            &["ExecStart=run --initrd", "ExecStop=cleanup --initrd"][..],
        ),
        (ALL_UNITS[2], &["ExecStart=cleanup"][..]),
    ] {
        let text = unit_text(name);
        let mut found = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("Exec")) {
            let (key, command) = line.split_once('=').unwrap();
            let mut words = command.split_whitespace();
            assert_eq!(words.next(), Some(INSTALLED_BINARY), "{name}: {line}");
            let mut args: Vec<&str> = words.collect();
            found.push(format!("{key}={}", args.join(" ")));
            args.push("--help");
            let out = agent(&args);
            assert!(
                out.status.success(),
                "{name}: cvm-attest {}:\n{}",
                args.join(" "),
                stderr(&out)
            );
        }
        assert_eq!(found, expected, "{name}");
    }
}

/// Both units load the TEE guest drivers before systemd resolves their
/// DeviceAllow= and ReadWritePaths=, through modprobe@.service instances
/// that our drop-ins skip on other hardware.
#[test]
fn the_tee_drivers_are_loaded_before_the_sandbox_is_set_up() {
    let instances = ["modprobe@sev_guest.service", "modprobe@tdx_guest.service"];
    for name in UNITS {
        let text = unit_text(name);
        for key in ["Wants=", "After="] {
            let named: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix(key))
                .flat_map(str::split_whitespace)
                .collect();
            for instance in instances {
                assert!(named.contains(&instance), "{name}: no {key}{instance}");
            }
        }
    }
    for (instance, condition) in [
        (
            instances[0],
            "ConditionPathExists=/sys/devices/platform/sev-guest",
        ),
        (
            instances[1],
            "ConditionPathExists=/sys/firmware/acpi/tables/CCEL",
        ),
    ] {
        let text = unit_text(&format!("{instance}.d/cvm-attest.conf"));
        let settings: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(settings, ["[Unit]", condition], "{instance}");
    }
}

/// The cleanup unit runs after every local and network volume is open, on
/// every boot, without being enabled: a drop-in of cryptsetup.target pulls
/// it in, and it has nothing to install.
#[test]
fn the_cleanup_unit_is_pulled_in_after_the_volumes() {
    let dropin = unit_text("cryptsetup.target.d/cvm-attest.conf");
    let settings: Vec<&str> = dropin
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(settings, ["[Unit]", "Wants=cvm-attest-cleanup.service"]);
    let unit = unit_text(ALL_UNITS[2]);
    let after: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("After="))
        .flat_map(str::split_whitespace)
        .collect();
    for target in ["cryptsetup.target", "remote-cryptsetup.target"] {
        assert!(after.contains(&target), "no After={target}");
    }
    assert!(!unit.contains("[Install]"));
    assert!(unit.contains("\nConditionPathExists=!/etc/initrd-release\n"));
}
