// SPDX-License-Identifier: Apache-2.0
//! vTPM evidence against a real software TPM (swtpm on loopback): the generic
//! `tpm` quote checked by tpm2-tools' independent `tpm2_checkquote`, and
//! Azure's `az-snp-vtpm`/`az-tdx-vtpm` through a paravisor stand-in (a TPM
//! command proxy that refreshes the HCL report when the guest writes its
//! report data) and a fake IMDS, end to end against the reference KBS.
//! The agent reaches each TPM as it does in a VM, through tpm2-tss's device
//! TCTI on a `/dev/tpmrm0` (a FUSE file in front of the TPM's port).
//! Without swtpm or FUSE each test prints `SKIPPED …` and returns (CI runs
//! them as root with swtpm installed).

use std::path::Path;
use std::process::{Command, Output};

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use serde_json::Value;
use tee_emu::{swtpm, FakeImds, HclKind, Paravisor, Swtpm, TpmDevice};

use crate::util::{
    agent_cmd, assert_exit, assert_fails_with, assert_logged, data, stderr, TempDir, World,
};

const AZURE_AK: u32 = 0x8100_0003;
const NONCE: &str = "PI0aozgydOubNNe3Vjb0Q9n3+MvpRwe8UuGffNiyBcA=";

/// swtpm and tpm2-tools, and FUSE for the `/dev/tpmrm0` the agent opens.
fn ready(name: &str) -> bool {
    let ok = swtpm::available() && tee_emu::fuse_usable();
    if !ok {
        eprintln!("SKIPPED {name}: needs swtpm, tpm2-tools, root and /dev/fuse");
    }
    ok
}

fn evidence(args: &[&str]) -> Output {
    let mut all = vec!["evidence", "--nonce", NONCE];
    all.extend_from_slice(args);
    agent_cmd(&all).output().unwrap()
}

fn primary(out: &Output) -> (Value, kbs_types::Attestation) {
    let body: kbs_types::Attestation = serde_json::from_slice(&out.stdout).expect("an Attestation");
    (body.tee_evidence.primary_evidence.clone(), body)
}

/// SHA-384 over the canonical runtime data: what the TEE must bind.
fn digest(body: &kbs_types::Attestation) -> Vec<u8> {
    let claims = serde_json::json!({"additional-evidence": "", "nonce": body.runtime_data.nonce, "tee-pubkey": body.runtime_data.tee_pubkey});
    ring::digest::digest(
        &ring::digest::SHA384,
        &serde_json_canonicalizer::to_vec(&claims).unwrap(),
    )
    .as_ref()
    .to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// extraData of a marshalled TPMS_ATTEST: magic, type, TPM2B name, TPM2B extraData.
fn extra_data(attest: &[u8]) -> Vec<u8> {
    let name_len = u16::from_be_bytes([attest[6], attest[7]]) as usize;
    let at = 8 + name_len;
    let len = u16::from_be_bytes([attest[at], attest[at + 1]]) as usize;
    attest[at + 2..at + 2 + len].to_vec()
}

/// tpm2_checkquote: signature by the AK and qualifying data.
fn checkquote(dir: &Path, ak_der: &[u8], message: &[u8], signature: &[u8], qualifying: &[u8]) {
    let (der, pem, msg, sig) = (
        dir.join("ak.der"),
        dir.join("ak.pem"),
        dir.join("quote.msg"),
        dir.join("quote.sig"),
    );
    std::fs::write(&der, ak_der).unwrap();
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let st = Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("tpm2_checkquote")
        .arg("-u")
        .arg(&pem)
        .arg("-m")
        .arg(&msg)
        .arg("-s")
        .arg(&sig)
        .args(["-q", &hex(qualifying), "-g", "sha256"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tpm_quote_verifies_with_tpm2_checkquote() {
    if !ready("tpm_quote_verifies_with_tpm2_checkquote") {
        return;
    }
    let dir = TempDir::new("tpm-quote");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(0x8101_0002)).unwrap();
    tpm.extend_pcr(7, [7u8; 32]).unwrap();
    let dev = tpm.device().unwrap();
    let tcti = dev.tcti();
    let out = evidence(&["--tee", "tpm", "--tcti", &tcti]);
    assert_exit(&out, 0);
    let (ev, body) = primary(&out);
    let d = digest(&body);
    let ak_der = STANDARD.decode(ev["ak_public"].as_str().unwrap()).unwrap();
    assert_eq!(ak_der, ak.der, "the persisted AK signed");
    let message = STANDARD
        .decode(ev["tpm_quote"]["message"].as_str().unwrap())
        .unwrap();
    let signature = STANDARD
        .decode(ev["tpm_quote"]["signature"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        extra_data(&message),
        d[..32],
        "qualifying data = the first 32 bytes of the binding"
    );
    checkquote(dir.path(), &ak_der, &message, &signature, &d[..32]);
    // The PCR values sent are the ones quoted: pcrDigest closes TPMS_QUOTE_INFO.
    let pcrs: Vec<u8> = ev["tpm_quote"]["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| unhex(p.as_str().unwrap()))
        .collect();
    assert_eq!(pcrs.len(), 24 * 32);
    assert_eq!(
        message[message.len() - 32..],
        *ring::digest::digest(&ring::digest::SHA256, &pcrs).as_ref()
    );
    assert_ne!(pcrs[7 * 32..8 * 32], [0u8; 32], "PCR 7 was extended");
}

#[test]
fn tpm_without_a_persisted_ak_makes_one_and_the_kbs_accepts_it() {
    if !ready("tpm_without_a_persisted_ak_makes_one_and_the_kbs_accepts_it") {
        return;
    }
    let dir = TempDir::new("tpm-kbs");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let w = World::new("tpm-kbs", 1, |_| {});
    let dev = tpm.device().unwrap();
    let (url, tcti) = (w.kbs.url(), dev.tcti());
    let out = agent_cmd(&[
        "get",
        "--kbs",
        &url,
        "--insecure-http",
        "--tee",
        "tpm",
        "--tcti",
        &tcti,
        "default/key/k0",
    ])
    .output()
    .unwrap();
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    assert_logged(&out, "creating one under the endorsement key");
    assert_logged(&out, "a KBS policy that checks trusted_aks cannot know it");
    assert_eq!(
        w.kbs.stats().attest,
        1,
        "the KBS verified signature, PCR digest and nonce"
    );
    // An AK named explicitly must exist.
    let out = evidence(&["--tee", "tpm", "--tcti", &tcti, "--ak-handle", "0x81010009"]);
    assert_fails_with(
        &out,
        1,
        "no attestation key at persistent handle 0x81010009",
    );
    // probe: no HCL report index on this TPM, so a plain TPM, usable.
    let out = agent_cmd(&["probe", "--json", "--tcti", &tcti])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (state, detail) = crate::probe::state(&v, "TPM");
    assert_eq!(state, "usable", "{detail}");
    assert!(detail.contains("a plain TPM"), "{detail}");
}

/// An Azure-shaped vTPM: AK at 0x81000003 and the paravisor in front.
/// Fields drop in order: the paravisor's FUSE device is unmounted and swtpm
/// stopped before the directory that holds them is removed.
struct Azure {
    para: Paravisor,
    imds: FakeImds,
    _tpm: Swtpm,
    _dir: TempDir,
}

fn azure(name: &str, kind: HclKind) -> Azure {
    let dir = TempDir::new(name);
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(AZURE_AK)).unwrap();
    let para = Paravisor::start(&tpm, kind, &ak).unwrap();
    let imds = FakeImds::start(kind).unwrap();
    Azure {
        _dir: dir,
        _tpm: tpm,
        para,
        imds,
    }
}

fn kbs_world(name: &str) -> World {
    World::new(name, 1, |c| {
        c.snp_ark = Some(data("snp-test-pki/ask-ark.pem"))
    })
}

fn az_get(w: &World, az: &Azure, tee: Option<&str>) -> Output {
    let (url, tcti, imds) = (w.kbs.url(), az.para.tcti(), az.imds.url());
    let mut args = vec![
        "-v",
        "get",
        "--kbs",
        &url,
        "--insecure-http",
        "--tcti",
        &tcti,
        "--imds-url",
        &imds,
        "default/key/k0",
    ];
    if let Some(t) = tee {
        args.extend(["--tee", t]);
    }
    // An empty root: detection must find the HCL report through --tcti alone.
    let root = TempDir::new("az-root");
    agent_cmd(&args)
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap()
}

#[test]
fn az_snp_vtpm_end_to_end_and_detected() {
    if !ready("az_snp_vtpm_end_to_end_and_detected") {
        return;
    }
    let az = azure("az-snp", HclKind::Snp);
    let w = kbs_world("az-snp");
    let out = az_get(&w, &az, None);
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let log = stderr(&out);
    assert!(
        log.contains("platform: az-snp-vtpm (Azure HCL report (SNP) in the vTPM)"),
        "{log}"
    );
    assert!(log.contains("HCL report refreshed after"), "{log}");
    assert_eq!(az.para.refreshes(), 1);
    assert_eq!(
        w.kbs.stats().attest,
        1,
        "the KBS verified quote, HCL binding, VCEK chain and report"
    );
    let thim = az.imds.requests();
    assert_eq!(thim.len(), 1);
    assert_eq!(
        (thim[0].method.as_str(), thim[0].path.as_str()),
        ("GET", "/metadata/THIM/amd/certification")
    );
    assert_eq!(thim[0].header("metadata"), Some("true"));
}

#[test]
fn az_snp_evidence_matches_the_recorded_v2_shape() {
    if !ready("az_snp_evidence_matches_the_recorded_v2_shape") {
        return;
    }
    let az = azure("az-shape", HclKind::Snp);
    let (tcti, imds) = (az.para.tcti(), az.imds.url());
    let out = evidence(&["--tee", "az-snp-vtpm", "--tcti", &tcti, "--imds-url", &imds]);
    assert_exit(&out, 0);
    let (ours, body) = primary(&out);
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(data("az-snp-vtpm/evidence-v2.json")).unwrap(),
    )
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&recorded));
    assert_eq!(keys(&ours["tpm_quote"]), keys(&recorded["tpm_quote"]));
    assert_eq!(ours["version"], 2);
    // Encodings: hex quote members, 24 × 64-hex PCRs, base64url with padding.
    for member in ["signature", "message"] {
        let s = ours["tpm_quote"][member].as_str().unwrap();
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()), "{member} is hex");
    }
    assert_eq!(
        ours["tpm_quote"]["signature"].as_str().unwrap().len(),
        recorded["tpm_quote"]["signature"].as_str().unwrap().len()
    );
    let pcrs = ours["tpm_quote"]["pcrs"].as_array().unwrap();
    assert_eq!(pcrs.len(), 24);
    assert!(pcrs.iter().all(|p| p.as_str().unwrap().len() == 64));
    for member in ["hcl_report", "vcek"] {
        let s = ours[member].as_str().unwrap();
        assert!(
            s.len() % 4 == 0 && !s.contains('+') && !s.contains('/'),
            "{member} is base64url with padding"
        );
        URL_SAFE.decode(s).unwrap();
    }
    assert_eq!(
        URL_SAFE.decode(ours["vcek"].as_str().unwrap()).unwrap(),
        std::fs::read(data("snp-test-pki/vcek.der")).unwrap()
    );
    // The quote's nonce is the whole 48-byte binding digest.
    let message = unhex(ours["tpm_quote"]["message"].as_str().unwrap());
    assert_eq!(extra_data(&message), digest(&body));
}

#[test]
fn az_tdx_vtpm_end_to_end_with_a_td_quote_from_imds() {
    if !ready("az_tdx_vtpm_end_to_end_with_a_td_quote_from_imds") {
        return;
    }
    let az = azure("az-tdx", HclKind::Tdx);
    let w = kbs_world("az-tdx");
    let out = az_get(&w, &az, Some("az-tdx-vtpm"));
    assert_exit(&out, 0);
    assert_eq!(out.stdout, w.secret("default/key/k0"));
    let reqs = az.imds.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/acc/tdquote")
    );
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/json"),
        "exactly, or IMDS answers 415"
    );
    assert_eq!(reqs[0].header("metadata"), Some("true"));
    assert_eq!(w.kbs.stats().attest, 1);
    // The TDX shape: the recorded evidence's members, td_quote in base64url with padding.
    let r = w
        .kbs
        .requests()
        .into_iter()
        .find(|r| r.path == "/kbs/v0/attest")
        .unwrap();
    let ours = &serde_json::from_str::<Value>(&r.body).unwrap()["tee-evidence"]["primary_evidence"];
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(data("az-tdx-vtpm/evidence-v1.json")).unwrap(),
    )
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ours), keys(&recorded));
    assert_eq!(keys(&ours["tpm_quote"]), keys(&recorded["tpm_quote"]));
    assert_eq!(ours["version"], 2);
    let quote = URL_SAFE.decode(ours["td_quote"].as_str().unwrap()).unwrap();
    assert_eq!(u16::from_le_bytes([quote[0], quote[1]]), 4, "a v4 TD quote");
}

#[test]
fn the_hcl_report_is_polled_until_the_paravisor_refreshes_it() {
    if !ready("the_hcl_report_is_polled_until_the_paravisor_refreshes_it") {
        return;
    }
    let az = azure("az-poll", HclKind::Snp);
    az.para.delay_reads(3);
    let (tcti, imds) = (az.para.tcti(), az.imds.url());
    let out = evidence(&[
        "-v",
        "--tee",
        "az-snp-vtpm",
        "--tcti",
        &tcti,
        "--imds-url",
        &imds,
    ]);
    assert_exit(&out, 0);
    assert_logged(&out, "HCL report refreshed after");
    // A paravisor that never refreshes: a clear timeout, no stale evidence.
    az.para.never();
    let out = evidence(&[
        "--tee",
        "az-snp-vtpm",
        "--tcti",
        &tcti,
        "--imds-url",
        &imds,
        "--hcl-timeout",
        "1",
    ]);
    assert_fails_with(
        &out,
        1,
        "the paravisor did not put our report data into the HCL report within 1s",
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_vtpm_and_imds_inputs_fail_clearly() {
    if !ready("bad_vtpm_and_imds_inputs_fail_clearly") {
        return;
    }
    // No TPM at all (device TCTI under an empty root), TCTIs the agent does not
    // open, and a device whose TPM is gone.
    let root = TempDir::new("no-tpm");
    let out = agent_cmd(&["evidence", "--nonce", "n", "--tee", "tpm"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    assert_fails_with(&out, 5, "this VM has no (v)TPM");
    for tcti in [
        "bogus:x",
        "swtpm:host=127.0.0.1,port=2321",
        "device",
        "device:tpmrm0",
    ] {
        // A bad argument (2), refused before the TPM is touched.
        let out = evidence(&["--tee", "tpm", "--tcti", tcti]);
        assert_fails_with(&out, 2, &format!("TCTI '{tcti}' is not supported"));
        assert_logged(&out, "device:/dev/tpmrm0");
    }
    let gone = TempDir::new("tpm-gone");
    let dev = TpmDevice::mount(&gone.path().join("dev"), crate::util::closed_port()).unwrap();
    let tcti = dev.tcti();
    let out = evidence(&["--tee", "tpm", "--tcti", &tcti]);
    assert_fails_with(&out, 1, &format!("open the TPM through TCTI '{tcti}'"));
    drop(dev);

    // A TPM without the Azure NV index, then with a truncated or mis-signed HCL report.
    let dir = TempDir::new("bad-hcl");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(AZURE_AK)).unwrap();
    let dev = tpm.device().unwrap();
    let tcti = dev.tcti();
    let out = evidence(&["--tee", "az-snp-vtpm", "--tcti", &tcti]);
    assert_fails_with(&out, 1, "read NV index 0x01400001");
    let good = tee_emu::hcl::build(HclKind::Snp, &ak, &[0u8; 64]).unwrap();
    tpm.nv_define_write(0x0140_0001, &good[..1000]).unwrap();
    let out = evidence(&["--tee", "az-snp-vtpm", "--tcti", &tcti]);
    assert_fails_with(&out, 1, "parse the HCL report from NV 0x01400001");
    let mut wrong = good.clone();
    wrong[..4].copy_from_slice(b"XCLA");
    tpm.nv_undefine(0x0140_0001).unwrap();
    tpm.nv_define_write(0x0140_0001, &wrong).unwrap();
    let out = evidence(&["--tee", "az-snp-vtpm", "--tcti", &tcti]);
    assert_fails_with(&out, 1, "parse the HCL report from NV 0x01400001");
    assert!(
        stderr(&out).contains("HCLA"),
        "the message names the expected signature: {}",
        stderr(&out)
    );
    drop(tpm);

    // IMDS: 500s until the deadline, a hung request, garbage.
    let az = azure("bad-imds", HclKind::Snp);
    let (tcti, imds) = (az.para.tcti(), az.imds.url());
    let within_a_second = || {
        evidence(&[
            "--tee",
            "az-snp-vtpm",
            "--tcti",
            &tcti,
            "--imds-url",
            &imds,
            "--timeout",
            "1",
        ])
    };
    az.imds.fail_next(1000, 500);
    let out = within_a_second();
    assert_fails_with(&out, 1, "could not fetch the VCEK from IMDS");
    assert_logged(&out, "HTTP 500");
    az.imds.fail_next(0, 500);
    az.imds.delay_next(1, std::time::Duration::from_secs(5));
    let out = within_a_second();
    assert_fails_with(&out, 1, "could not fetch the VCEK from IMDS");
    az.imds.garble_next(1);
    let out = evidence(&["--tee", "az-snp-vtpm", "--tcti", &tcti, "--imds-url", &imds]);
    assert_fails_with(
        &out,
        1,
        "IMDS sent a malformed reply to GET /metadata/THIM/amd/certification",
    );
}

/// The TPM helper (`CVM_ATTEST_TPM_HELPER` points the debug agent at a
/// stand-in): missing, failing at once, crashing in the middle of a request,
/// and never answering. Each is an error naming the helper and how it ended,
/// never the agent's death or a hang.
#[test]
fn a_missing_crashing_or_silent_tpm_helper_is_a_clear_error() {
    let dir = TempDir::new("tpm-helper");
    let device = dir.path().join("tpmrm0");
    std::fs::write(&device, b"").unwrap();
    let tcti = format!("device:{}", device.display());
    let with_helper = |helper: &Path| {
        agent_cmd(&[
            "evidence", "--nonce", NONCE, "--tee", "tpm", "--tcti", &tcti,
        ])
        .env("CVM_ATTEST_TPM_HELPER", helper)
        .env("CVM_ATTEST_TEST_TPM_TIMEOUT_MS", "500")
        .current_dir(dir.path())
        .output()
        .unwrap()
    };
    let absent = dir.path().join("no-such-helper");
    let out = with_helper(&absent);
    assert_fails_with(&out, 1, &format!("run the TPM helper {}", absent.display()));

    let out = with_helper(Path::new("/bin/false"));
    assert_fails_with(
        &out,
        1,
        "the TPM helper /bin/false closed its output; it ended (exit status: 1)",
    );

    let out = with_helper(&data("tpm-helper/crash.sh"));
    assert_fails_with(
        &out,
        1,
        "crash.sh closed its output; it ended (signal: 11 (SIGSEGV)",
    );
    assert!(out.stdout.is_empty());

    let out = with_helper(&data("tpm-helper/hang.sh"));
    assert_fails_with(
        &out,
        1,
        "hang.sh did not answer within 0.5 s; it ended (killed: signal: 9 (SIGKILL))",
    );
}
