// SPDX-License-Identifier: Apache-2.0
//! Hardware evidence through the FUSE emulators of configfs-tsm and
//! `/dev/sev-guest` (tests/tee-emu), end to end against the reference KBS,
//! which checks the binding, the SNP signature and chain, and the TDX quote
//! signature. The agent's unmodified code paths run, moved under a test root
//! with `CVM_ATTEST_ROOT`. Needs root and /dev/fuse: without them each test
//! prints `SKIPPED …` and returns (CI has both).

use std::path::Path;
use std::process::Output;

use base64::{engine::general_purpose::STANDARD, Engine};
use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use tee_emu::{can_run, Provider, SevGuestEmulator, TsmEmulator};

use crate::util::{
    agent_cmd, assert_exit, assert_fails_with, assert_logged, data, stderr, wrapped, TempDir, World,
};

fn world(name: &str) -> World {
    World::new(name, 2, |c| c.snp_ark = Some(data("snp-test-pki/ark.pem")))
}

/// `cvm-attest get` under `root`.
fn get_in(w: &World, root: &Path, extra: &[&str]) -> Output {
    let url = w.kbs.url();
    let mut args = vec!["get", "--kbs", &url, "--insecure-http", "--timeout", "20"];
    args.extend_from_slice(extra);
    agent_cmd(&args)
        .env("CVM_ATTEST_ROOT", root)
        .output()
        .unwrap()
}

fn attest_body(w: &World) -> serde_json::Value {
    let r = w
        .kbs
        .requests()
        .into_iter()
        .find(|r| r.path == "/kbs/v0/attest")
        .expect("an attest request");
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn snp_through_configfs_tsm_end_to_end() {
    if !can_run("snp_through_configfs_tsm_end_to_end") {
        return;
    }
    let root = TempDir::new("snp-tsm");
    let tsm = TsmEmulator::mount(root.path(), Provider::Sev).unwrap();
    let w = world("snp-tsm");
    let out = get_in(&w, root.path(), &["--tee", "snp", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let s = w.kbs.stats();
    assert_eq!(
        (s.auth, s.attest, s.resource),
        (1, 1, 1),
        "the KBS verified the SNP evidence"
    );
    let ev = &attest_body(&w)["tee-evidence"]["primary_evidence"];
    assert_eq!(ev["attestation_report"]["version"], 3);
    let types: Vec<&str> = ev["cert_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cert_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["VCEK", "ASK", "ARK"]);
    assert!(
        tsm.knobs().entries().is_empty(),
        "the agent removed its configfs-tsm entry"
    );
}

/// A firmware update the host's certificate table missed: its VCEK is for
/// an older TCB than the report's. The KBS would reject it; with no
/// certificates it fetches the right VCEK from AMD KDS, which the offline
/// reference KBS cannot (so this attestation fails here, as it should).
#[test]
fn a_stale_vcek_from_the_host_is_left_out() {
    if !can_run("a_stale_vcek_from_the_host_is_left_out") {
        return;
    }
    let root = TempDir::new("snp-stale-vcek");
    let tsm = TsmEmulator::mount(root.path(), Provider::Sev).unwrap();
    tsm.knobs().update(|f| f.reported_snp_spl = Some(24));
    let w = world("snp-stale-vcek");
    let out = get_in(&w, root.path(), &["--tee", "snp", "default/key/k0"]);
    assert_logged(
        &out,
        "the VCEK from configfs-tsm is not this report's (it is for snpSPL 23, the report's \
             reported TCB has 24): sending no certificates",
    );
    let ev = &attest_body(&w)["tee-evidence"]["primary_evidence"];
    assert_eq!(ev["cert_chain"], serde_json::Value::Null);
    assert_eq!(ev["attestation_report"]["reported_tcb"]["snp"], 24);
    assert_fails_with(&out, 3, "the KBS rejected the snp evidence");
}

#[test]
fn snp_is_detected_without_tee() {
    if !can_run("snp_is_detected_without_tee") {
        return;
    }
    let root = TempDir::new("snp-detect");
    let _tsm = TsmEmulator::mount(root.path(), Provider::Sev).unwrap();
    let w = world("snp-detect");
    let out = get_in(&w, root.path(), &["default/key/k1"]);
    assert_exit(&out, 0);
    assert_logged(&out, "platform: snp (configfs-tsm provider sev_guest)");
    let probe = agent_cmd(&["probe"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    assert_exit(&probe, 0);
    assert!(
        String::from_utf8_lossy(&probe.stdout).contains("usable  "),
        "{:?}",
        probe
    );
}

#[test]
fn evidence_verifies_offline_and_binds_the_nonce() {
    if !can_run("evidence_verifies_offline_and_binds_the_nonce") {
        return;
    }
    let root = TempDir::new("snp-evidence");
    let _tsm = TsmEmulator::mount(root.path(), Provider::Sev).unwrap();
    let nonce = "MA4MNmwI5AMyYOZw7D1X2+geOluG/aCz//kGU8ygfoE=";
    let out = agent_cmd(&["evidence", "--tee", "snp", "--nonce", nonce])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let body: kbs_types::Attestation = serde_json::from_slice(&out.stdout).unwrap();
    let ev = &body.tee_evidence.primary_evidence;
    // Re-encode the report exactly as the verifier does and check the signature.
    let report: AttestationReport =
        serde_json::from_value(ev["attestation_report"].clone()).unwrap();
    let mut raw = Vec::new();
    report.write_bytes(&mut raw).unwrap();
    assert_eq!(raw.len(), 1184);
    let vcek: Vec<u8> = serde_json::from_value(ev["cert_chain"][0]["data"].clone()).unwrap();
    let vcek = Certificate::from_der(&vcek).unwrap();
    (&vcek, &AttestationReport::from_bytes(&raw).unwrap())
        .verify()
        .expect("signature over the re-encoded report");
    // REPORT_DATA = SHA-384(JCS(runtime data)) ‖ 16 zero bytes.
    let claims = serde_json::json!({"additional-evidence": "", "nonce": nonce, "tee-pubkey": body.runtime_data.tee_pubkey});
    let digest = ring::digest::digest(
        &ring::digest::SHA384,
        &serde_json_canonicalizer::to_vec(&claims).unwrap(),
    );
    assert_eq!(&report.report_data[..48], digest.as_ref());
    assert_eq!(report.report_data[48..], [0u8; 16]);
    assert_eq!(report.vmpl, 0);
}

#[test]
fn snp_through_dev_sev_guest_grows_the_certificate_buffer() {
    if !can_run("snp_through_dev_sev_guest_grows_the_certificate_buffer") {
        return;
    }
    let root = TempDir::new("snp-dev");
    let dev = SevGuestEmulator::mount(root.path()).unwrap();
    let w = world("snp-dev");
    let out = get_in(&w, root.path(), &["--tee", "snp", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert_eq!(w.kbs.stats().attest, 1);
    assert!(
        dev.knobs().faults().requests >= 2,
        "a first request with a too-small certificate buffer, then one that fits"
    );
    assert_eq!(
        attest_body(&w)["tee-evidence"]["primary_evidence"]["cert_chain"][0]["cert_type"],
        "VCEK"
    );
}

/// A host that publishes only the VCEK: the agent sends what it has, and a
/// KBS that holds the ASK (Trustee embeds AMD's) accepts it; one that does
/// not refuses it.
#[test]
fn snp_with_only_the_vcek_from_the_host() {
    if !can_run("snp_with_only_the_vcek_from_the_host") {
        return;
    }
    let root = TempDir::new("snp-vcek-only");
    let dev = SevGuestEmulator::mount(root.path()).unwrap();
    dev.knobs()
        .update(|f| f.certs = tee_emu::snp::HostCerts::VcekOnly);
    let w = World::new("snp-vcek-only", 2, |c| {
        c.snp_ark = Some(data("snp-test-pki/ask-ark.pem"))
    });
    let out = get_in(&w, root.path(), &["--tee", "snp", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let chain = &attest_body(&w)["tee-evidence"]["primary_evidence"]["cert_chain"];
    let types: Vec<_> = chain
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["cert_type"])
        .collect();
    assert_eq!(types, ["VCEK"]);

    let ark_only = world("snp-vcek-only-no-ask");
    let out = get_in(&ark_only, root.path(), &["--tee", "snp", "default/key/k0"]);
    assert_fails_with(&out, 3, "the KBS rejected the snp evidence");
}

#[test]
fn tdx_through_configfs_tsm_with_the_event_log() {
    if !can_run("tdx_through_configfs_tsm_with_the_event_log") {
        return;
    }
    let root = TempDir::new("tdx-tsm");
    let tsm = TsmEmulator::mount(root.path(), Provider::Tdx).unwrap();
    let ccel = root.path().join("sys/firmware/acpi/tables/data");
    std::fs::create_dir_all(&ccel).unwrap();
    std::fs::copy(data("tdx/ccel.bin"), ccel.join("CCEL")).unwrap();
    // The TD measured what its log says: the quote's RTMRs are the replay
    // (the reference KBS's own, written apart from the agent's).
    let rtmrs = refkbs::ccel_replay(&std::fs::read(data("tdx/ccel.bin")).unwrap()).unwrap();
    tsm.knobs().update(|f| f.rtmrs = Some(rtmrs));
    let w = world("tdx-tsm");
    let out = get_in(&w, root.path(), &["--tee", "tdx", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let ev = &attest_body(&w)["tee-evidence"]["primary_evidence"];
    let quote = STANDARD.decode(ev["quote"].as_str().unwrap()).unwrap();
    assert_eq!(u16::from_le_bytes([quote[0], quote[1]]), 4);
    let log = STANDARD
        .decode(ev["cc_eventlog"].as_str().unwrap())
        .unwrap();
    assert!(log.len() < 1 << 20, "trimmed from the 1 MiB region");
    assert!(log.ends_with(&[0xFF; 8]));
    assert!(tsm.knobs().entries().is_empty());

    // RTMRs that the log does not reproduce (here the template's zeros):
    // the KBS would fail the attestation, so the log is left out.
    tsm.knobs().update(|f| f.rtmrs = None);
    w.kbs.clear_requests();
    let out = get_in(&w, root.path(), &["--tee", "tdx", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_logged(
        &out,
        "does not match the quote: it does not reproduce the quote's RTMR0",
    );
    assert_eq!(
        attest_body(&w)["tee-evidence"]["primary_evidence"]["cc_eventlog"],
        serde_json::Value::Null
    );
}

#[test]
fn a_ccel_that_does_not_parse_is_left_out() {
    if !can_run("a_ccel_that_does_not_parse_is_left_out") {
        return;
    }
    let root = TempDir::new("tdx-badlog");
    let _tsm = TsmEmulator::mount(root.path(), Provider::Tdx).unwrap();
    let ccel = root.path().join("sys/firmware/acpi/tables/data");
    std::fs::create_dir_all(&ccel).unwrap();
    let mut bad = std::fs::read(data("tdx/ccel.bin")).unwrap();
    bad[40..44].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes()); // the Spec ID event's size field
    std::fs::write(ccel.join("CCEL"), bad).unwrap();
    let w = world("tdx-badlog");
    let out = get_in(&w, root.path(), &["--tee", "tdx", "default/key/k0"]);
    assert_exit(&out, 0);
    assert_logged(&out, "does not parse");
    assert_eq!(
        attest_body(&w)["tee-evidence"]["primary_evidence"]["cc_eventlog"],
        serde_json::Value::Null
    );
}

/// A TEE named with --tee whose interfaces this guest lacks is found before
/// any traffic: exit 5, the reason, and where to look.
#[test]
fn a_named_tee_without_its_interfaces_fails_before_any_traffic() {
    let root = TempDir::new("named-absent");
    let w = world("named-absent");
    for (tee, why) in [
        ("snp", "dev/sev-guest: no SEV-SNP guest driver"),
        ("tdx", "TDX quotes come only through configfs-tsm"),
        ("az-snp-vtpm", "this VM has no (v)TPM"),
    ] {
        let out = get_in(&w, root.path(), &["--tee", tee, "default/key/k0"]);
        assert_fails_with(&out, 5, &format!("TEE {tee} was named, but this guest"));
        assert_logged(&out, why);
        assert_logged(&out, "run `cvm-attest probe` for details");
    }
    assert_eq!(w.kbs.stats().auth, 0, "nothing was sent");
}

/// Each bad input: the knob, the command, the code, the message.
#[test]
fn bad_inputs_fail_clearly() {
    if !can_run("bad_inputs_fail_clearly") {
        return;
    }
    let evidence = |root: &std::path::Path| {
        agent_cmd(&["evidence", "--tee", "snp", "--nonce", "n"])
            .env("CVM_ATTEST_ROOT", root)
            .output()
            .unwrap()
    };
    // A truncated report from configfs-tsm.
    let root = TempDir::new("bad-trunc");
    let tsm = TsmEmulator::mount(root.path(), Provider::Sev).unwrap();
    tsm.knobs().update(|f| f.outblob_len = Some(1000));
    let out = evidence(root.path());
    assert_fails_with(&out, 1, "parse the 1000-byte SNP report from configfs-tsm");
    // The wrong provider for the named TEE.
    tsm.knobs().update(|f| {
        f.outblob_len = None;
        f.provider = Some(Provider::Tdx)
    });
    let out = evidence(root.path());
    assert_fails_with(
        &out,
        5,
        "TEE snp was named, but this guest cannot give its evidence: configfs-tsm has provider \
         'tdx_guest', not sev_guest",
    );
    // A concurrent writer: once is retried, always is an error.
    tsm.knobs().update(|f| {
        f.provider = Some(Provider::Sev);
        f.race = 1
    });
    let out = evidence(root.path());
    assert_exit(&out, 0);
    assert_logged(&out, "changed under us");
    tsm.knobs().update(|f| f.race = 10);
    let out = evidence(root.path());
    assert_fails_with(&out, 1, "another process wrote to the configfs-tsm report");
    // A busy TEE: retried with a fresh entry after a pause, then an error.
    tsm.knobs().update(|f| {
        f.race = 0;
        f.busy = 2
    });
    let out = evidence(root.path());
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out).matches("the TEE is busy").count(),
        2,
        "{}",
        stderr(&out)
    );
    tsm.knobs().update(|f| f.busy = 100);
    let out = evidence(root.path());
    assert_fails_with(&out, 1, "the TEE is busy producing another report");
    // An entry left by a killed run that had the same PID: the agent (the
    // shell's PID, through exec) takes the next name and leaves it alone.
    tsm.knobs().update(|f| f.busy = 0);
    let report = root.path().join("sys/kernel/config/tsm/report");
    let mut agent = agent_cmd(&["-v", "evidence", "--tee", "snp", "--nonce", "n"]);
    agent
        .env("CVM_ATTEST_ROOT", root.path())
        .env("REPORT", &report);
    // `wrapped` puts "--" before the agent: shift it off.
    let squat = r#"mkdir "$REPORT/cvm-attest-$$-0" && shift && exec "$@""#;
    let out = wrapped(&["sh", "-c", squat, "sh"], &agent)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let left = tsm.knobs().entries();
    assert!(
        left.len() == 1 && left[0].starts_with("cvm-attest-") && left[0].ends_with("-0"),
        "{left:?}"
    );
    assert_logged(&out, &format!("{} exists: trying the next name", left[0]));
    std::fs::remove_dir(report.join(&left[0])).unwrap();
    // No permission to create an entry: found before any traffic (no TEE
    // usable, exit 5).
    tsm.knobs().update(|f| f.deny = true);
    let out = evidence(root.path());
    assert_fails_with(&out, 5, "permission denied creating a report");
    assert!(
        tsm.knobs().entries().is_empty(),
        "no entry is left behind on any path"
    );
    drop(tsm);

    // The ioctl device: busy, then fine; always busy; firmware error; no permission.
    let root = TempDir::new("bad-dev");
    let dev = SevGuestEmulator::mount(root.path()).unwrap();
    dev.knobs().update(|f| f.busy = 2);
    let out = evidence(root.path());
    assert_exit(&out, 0);
    assert_eq!(
        stderr(&out)
            .matches("is busy serving another request")
            .count(),
        2,
        "{}",
        stderr(&out)
    );
    dev.knobs().update(|f| f.busy = 100);
    let out = evidence(root.path());
    assert_fails_with(&out, 1, "is busy serving another request");
    dev.knobs().update(|f| {
        f.busy = 0;
        f.eio = 1;
        f.fw_error = tee_emu::SEV_RET_INVALID_PARAM
    });
    let out = evidence(root.path());
    assert_fails_with(
        &out,
        1,
        "the SNP firmware refused the report request: INVALID_PARAM (0x16)",
    );
    dev.knobs().update(|f| {
        f.eio = 0;
        f.deny_open = true
    });
    let out = evidence(root.path());
    assert_fails_with(&out, 5, "permission denied opening");
    assert_logged(&out, "run as root");
}
