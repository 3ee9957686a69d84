// SPDX-License-Identifier: Apache-2.0
//! Tests of the `tpm`, `az-snp-vtpm` and `az-tdx-vtpm` verifiers: evidence
//! made with tee-emu (software AK, HCL builder, test VCEK, TDX quotes; and a
//! real swtpm behind the paravisor emulation when swtpm is installed), the
//! negative cases, and the recorded Trustee vectors checked piece by piece.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use kbs_types::Tee;
use serde_json::{json, Value};
use tee_emu::hcl::{self, HclKind};
use tee_emu::quote::{hex, SoftAk, TpmQuote};
use tee_emu::{snp, swtpm, tdx};

use super::hcl::{Hcl, HclType};
use super::tpm::{check_quote, pcrs, tpmt_signature, Quote, RsaKey};
use super::{unhex, verify, Roots};

const DIGEST: [u8; 48] = [0x4d; 48];

fn roots(bundle: &str) -> Roots {
    let mut config = crate::Config::new("/nonexistent");
    config.snp_ark = Some(snp::pki_dir().join(bundle));
    Roots::load(&config).unwrap()
}

fn test_pcrs() -> [[u8; 32]; 24] {
    let mut pcrs = [[0u8; 32]; 24];
    pcrs[8] = [8; 32];
    pcrs[17] = [0xff; 32];
    pcrs
}

fn tpm_evidence(ak: &SoftAk, q: &TpmQuote) -> Value {
    json!({
        "ak_public": ak.info().der_base64(),
        "tpm_quote": {
            "signature": STANDARD.encode(&q.signature),
            "message": STANDARD.encode(&q.message),
            "pcrs": q.pcrs_hex(),
        },
    })
}

fn err(tee: Tee, ev: &Value, roots: &Roots) -> String {
    format!("{:#}", verify(tee, ev, &DIGEST, roots).unwrap_err())
}

#[test]
fn tpm_accepts_a_soft_quote_and_rejects_tampering() {
    let ak = SoftAk::test_key().unwrap();
    let q = ak.quote(&DIGEST[..32], &test_pcrs()).unwrap();
    let good = tpm_evidence(&ak, &q);
    let claims = verify(Tee::Tpm, &good, &DIGEST, &Roots::default()).unwrap();
    assert_eq!(claims["tpm"]["pcr08"], "08".repeat(32));
    assert_eq!(claims["report_data"], "4d".repeat(32));
    let no = Roots::default();

    let full = tpm_evidence(&ak, &ak.quote(&DIGEST, &test_pcrs()).unwrap());
    assert!(err(Tee::Tpm, &full, &no).contains("first 32 bytes"));
    let mut pcr = good.clone();
    pcr["tpm_quote"]["pcrs"][3] = json!("11".repeat(32));
    assert!(err(Tee::Tpm, &pcr, &no).contains("PCR digest"));
    let mut sig = q.clone();
    sig.signature[10] ^= 1;
    assert!(err(Tee::Tpm, &tpm_evidence(&ak, &sig), &no).contains("signature does not verify"));
    let mut pss = q.clone();
    pss.signature[1] = 0x16;
    assert!(err(Tee::Tpm, &tpm_evidence(&ak, &pss), &no).contains("RSASSA"));
    let mut short = good.clone();
    short["tpm_quote"]["pcrs"].as_array_mut().unwrap().pop();
    assert!(err(Tee::Tpm, &short, &no).contains("23 PCR values"));
}

#[test]
fn tpm_recorded_vector_signature_and_pcr_digest() {
    let ev: Value = serde_json::from_str(include_str!("../../../data/tpm/evidence.json")).unwrap();
    let der = STANDARD.decode(ev["ak_public"].as_str().unwrap()).unwrap();
    let key = RsaKey::from_spki(&der).unwrap();
    let q = &ev["tpm_quote"];
    let values: Vec<String> = serde_json::from_value(q["pcrs"].clone()).unwrap();
    let sig = STANDARD.decode(q["signature"].as_str().unwrap()).unwrap();
    let quote = Quote {
        message: STANDARD.decode(q["message"].as_str().unwrap()).unwrap(),
        signature: tpmt_signature(&sig).unwrap(),
        pcrs: pcrs(&values).unwrap(),
    };
    // The older 64-byte nonce form: signature, structure and PCR digest hold.
    let extra = check_quote(&key, &quote).unwrap();
    assert_eq!(extra.len(), 64);
    // Hence the full verifier refuses it only for the nonce.
    assert!(err(Tee::Tpm, &ev, &Roots::default()).contains("extraData"));
}

/// az-*-vtpm evidence for `user_data` in the HCL and `nonce` in the quote.
fn az_evidence(kind: HclKind, user_data: &[u8], nonce: &[u8]) -> (Value, Vec<u8>) {
    let ak = SoftAk::test_key().unwrap();
    let report = hcl::build(kind, &ak.info(), user_data).unwrap();
    let q = ak.quote(nonce, &test_pcrs()).unwrap();
    let mut ev = json!({
        "version": 2,
        "tpm_quote": {
            "signature": hex(q.raw_signature().unwrap()),
            "message": hex(&q.message),
            "pcrs": q.pcrs_hex(),
        },
        "hcl_report": URL_SAFE.encode(&report),
    });
    match kind {
        HclKind::Snp => ev["vcek"] = json!(URL_SAFE.encode(snp::VCEK_DER)),
        HclKind::Tdx => {
            let var = &report[0x4d4..];
            let quote = tdx::quote(&hcl::report_data(var)).unwrap();
            ev["td_quote"] = json!(URL_SAFE.encode(quote));
        }
    }
    (ev, report)
}

#[test]
fn az_snp_vtpm_accepts_emulated_evidence() {
    let trusted = roots("ask-ark.pem");
    let (good, _) = az_evidence(HclKind::Snp, &DIGEST, &DIGEST);
    let claims = verify(Tee::AzSnpVtpm, &good, &DIGEST, &trusted).unwrap();
    assert_eq!(claims["snp"]["vmpl"], 0);
    assert_eq!(claims["tpm"]["pcr17"], "ff".repeat(32));
    assert_eq!(claims["report_data"], "4d".repeat(48));
    // Unpadded base64url is accepted too.
    let mut unpadded = good.clone();
    let text = good["hcl_report"].as_str().unwrap().trim_end_matches('=');
    unpadded["hcl_report"] = json!(text);
    assert!(verify(Tee::AzSnpVtpm, &unpadded, &DIGEST, &trusted).is_ok());
}

#[test]
fn az_snp_vtpm_rejects_bad_evidence() {
    let trusted = roots("ask-ark.pem");
    let check = |ev: &Value| err(Tee::AzSnpVtpm, ev, &trusted);
    let (good, report) = az_evidence(HclKind::Snp, &DIGEST, &DIGEST);

    let (nonce, _) = az_evidence(HclKind::Snp, &DIGEST, &[1; 48]);
    assert!(check(&nonce).contains("extraData"));
    let mut pcr = good.clone();
    pcr["tpm_quote"]["pcrs"][0] = json!("01".repeat(32));
    assert!(check(&pcr).contains("PCR digest"));
    let mut sig = good.clone();
    sig["tpm_quote"]["signature"] = json!("00".repeat(256));
    assert!(check(&sig).contains("signature does not verify"));
    // One byte of the var-data changed (the VM id): the report no longer binds it.
    let mut tampered = report.clone();
    let at = tampered.windows(4).position(|w| w == b"5E5C").unwrap();
    tampered[at] = b'6';
    let mut var = good.clone();
    var["hcl_report"] = json!(URL_SAFE.encode(&tampered));
    assert!(check(&var).contains("SHA-256(var-data)"));
    let (user, _) = az_evidence(HclKind::Snp, &[2; 48], &DIGEST);
    assert!(check(&user).contains("user-data"));
    let mut v1 = user.clone();
    v1["version"] = json!(1);
    assert!(verify(Tee::AzSnpVtpm, &v1, &DIGEST, &trusted).is_ok());

    let untrusted = err(Tee::AzSnpVtpm, &good, &roots("other-ark.pem"));
    assert!(untrusted.contains("ASK"), "{untrusted}");
    let mut other = roots("other-ark.pem");
    other.snp_ask = trusted.snp_ask.clone();
    let untrusted = err(Tee::AzSnpVtpm, &good, &other);
    assert!(untrusted.contains("ARK -> ASK -> VEK"), "{untrusted}");
    let mut foreign = good.clone();
    foreign["vcek"] = json!(URL_SAFE.encode(include_bytes!("../../../data/snp/vcek.der")));
    assert!(check(&foreign).contains("ARK -> ASK -> VEK"));
    assert!(check(&json!({"version": 2})).contains("parse az-snp-vtpm"));
    let (tdx_ev, _) = az_evidence(HclKind::Tdx, &DIGEST, &DIGEST);
    assert!(check(&tdx_ev).contains("not Snp"));
}

#[test]
fn az_tdx_vtpm_checks_the_td_quote() {
    let no = Roots::default();
    let (good, _) = az_evidence(HclKind::Tdx, &DIGEST, &DIGEST);
    let claims = verify(Tee::AzTdxVtpm, &good, &DIGEST, &no).unwrap();
    assert_eq!(claims["tdx"]["version"], 4);

    let mut other = good.clone();
    other["td_quote"] = json!(URL_SAFE.encode(tdx::quote(&[7; 64]).unwrap()));
    assert!(err(Tee::AzTdxVtpm, &other, &no).contains("REPORTDATA"));
    let mut quote = URL_SAFE.decode(good["td_quote"].as_str().unwrap()).unwrap();
    quote[48 + 136] ^= 1;
    let mut tampered = good.clone();
    tampered["td_quote"] = json!(URL_SAFE.encode(quote));
    assert!(err(Tee::AzTdxVtpm, &tampered, &no).contains("signature"));
    let (user, _) = az_evidence(HclKind::Tdx, &[3; 48], &DIGEST);
    assert!(err(Tee::AzTdxVtpm, &user, &no).contains("user-data"));
    let (nonce, _) = az_evidence(HclKind::Tdx, &DIGEST, &DIGEST[..32]);
    assert!(err(Tee::AzTdxVtpm, &nonce, &no).contains("extraData"));
}

#[test]
fn recorded_hcl_report_parses() {
    let h = Hcl::parse(include_bytes!("../../../data/az-snp-vtpm/hcl-report.bin")).unwrap();
    assert_eq!(h.kind(), HclType::Snp);
    assert_eq!(h.var_data().len(), 1110);
    assert_eq!(h.ak().unwrap().n.len(), 256);
    h.check_hw_binding().unwrap();
    h.check_user_data(&[0; 48]).unwrap();
    assert!(h.check_user_data(&DIGEST).is_err());
}

#[test]
fn recorded_az_snp_vtpm_evidence_pieces() {
    let ev: Value =
        serde_json::from_str(include_str!("../../../data/az-snp-vtpm/evidence-v2.json")).unwrap();
    let raw = URL_SAFE.decode(ev["hcl_report"].as_str().unwrap()).unwrap();
    let h = Hcl::parse(&raw).unwrap();
    let q = &ev["tpm_quote"];
    let values: Vec<String> = serde_json::from_value(q["pcrs"].clone()).unwrap();
    let quote = Quote {
        message: unhex(q["message"].as_str().unwrap()).unwrap(),
        signature: unhex(q["signature"].as_str().unwrap()).unwrap(),
        pcrs: pcrs(&values).unwrap(),
    };
    // The quote verifies with HCLAkPub; its nonce is the HCL user-data (uppercase hex).
    let extra = check_quote(&h.ak().unwrap(), &quote).unwrap();
    let nonce: [u8; 48] = extra.as_slice().try_into().unwrap();
    h.check_user_data(&nonce).unwrap();
    h.check_hw_binding().unwrap();
    // The whole verifier gets past every vTPM step and stops at the real AMD VCEK.
    let e = format!(
        "{:#}",
        verify(Tee::AzSnpVtpm, &ev, &nonce, &roots("ask-ark.pem")).unwrap_err()
    );
    assert!(e.contains("ARK -> ASK -> VEK"), "{e}");
    let chain = include_str!("../../../data/az-snp-vtpm/vcek-chain.pem");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 3);
}

#[test]
fn swtpm_behind_the_paravisor_yields_accepted_evidence() {
    if !swtpm::available() {
        println!("SKIPPED swtpm_behind_the_paravisor_yields_accepted_evidence: needs swtpm");
        return;
    }
    let dir = std::env::temp_dir().join(format!("refkbs-vtpm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tpm = swtpm::Swtpm::start(&dir).unwrap();
    let ak = tpm.create_ek_ak(Some(hcl::AZURE_AK_HANDLE)).unwrap();
    let para = tee_emu::Paravisor::start(&tpm, HclKind::Snp, &ak).unwrap();
    // The guest's side through the paravisor: define and write NV 0x01400002, read 0x01400001.
    let tools = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(&dir)
            .env("TPM2TOOLS_TCTI", para.tcti())
            .env("TSS2_LOG", "all+none")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("digest.bin"), DIGEST).unwrap();
    tools(&[
        "tpm2_nvdefine",
        "0x01400002",
        "-C",
        "o",
        "-s",
        "48",
        "-a",
        "ownerread|ownerwrite",
    ]);
    tools(&["tpm2_nvwrite", "0x01400002", "-C", "o", "-i", "digest.bin"]);
    tools(&["tpm2_nvread", "0x01400001", "-C", "o", "-o", "hcl.bin"]);
    let report = std::fs::read(dir.join("hcl.bin")).unwrap();
    tpm.extend_pcr(8, [0x33; 32]).unwrap();
    let q = tpm.quote(&ak, &DIGEST).unwrap();
    drop(para);
    let ev = json!({
        "version": 2,
        "tpm_quote": {
            "signature": hex(q.raw_signature().unwrap()),
            "message": hex(&q.message),
            "pcrs": q.pcrs_hex(),
        },
        "hcl_report": URL_SAFE.encode(&report),
        "vcek": URL_SAFE.encode(snp::VCEK_DER),
    });
    let claims = verify(Tee::AzSnpVtpm, &ev, &DIGEST, &roots("ask-ark.pem")).unwrap();
    assert_ne!(claims["tpm"]["pcr08"], "00".repeat(32));
    // The same swtpm quote as generic `tpm` evidence (32-byte nonce).
    let q32 = tpm.quote(&ak, &DIGEST[..32]).unwrap();
    let tpm_ev = json!({
        "ak_public": ak.der_base64(),
        "tpm_quote": {
            "signature": STANDARD.encode(&q32.signature),
            "message": STANDARD.encode(&q32.message),
            "pcrs": q32.pcrs_hex(),
        },
    });
    assert!(verify(Tee::Tpm, &tpm_ev, &DIGEST, &Roots::default()).is_ok());
    drop(tpm);
    let _ = std::fs::remove_dir_all(&dir);
}
