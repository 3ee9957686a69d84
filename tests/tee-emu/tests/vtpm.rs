// SPDX-License-Identifier: Apache-2.0
//! The vTPM pieces against a real swtpm: provisioning (quote checked by
//! `tpm2_checkquote`, NV round trip), the paravisor's HCL refresh with its
//! knobs, and the fake IMDS. Tests print `SKIPPED <name>: needs swtpm` and
//! pass when swtpm or tpm2-tools are missing.

// Shared with the FUSE tests; this file needs only `Scratch`.
#[allow(dead_code)]
mod util;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use serde_json::Value;
use tee_emu::hcl::{self, HclKind, AZURE_AK_HANDLE, NV_HCL_REPORT, NV_USER_DATA};
use tee_emu::{swtpm, tdx, FakeImds, Paravisor, Swtpm};
use util::Scratch;

fn swtpm_or_skip(name: &str) -> bool {
    let ok = swtpm::available();
    if !ok {
        println!("SKIPPED {name}: needs swtpm");
    }
    ok
}

#[test]
fn quote_verifies_with_tpm2_checkquote() {
    if !swtpm_or_skip("quote_verifies_with_tpm2_checkquote") {
        return;
    }
    let dir = Scratch::new("quote");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(AZURE_AK_HANDLE)).unwrap();
    assert_eq!(ak.modulus.len(), 256);
    tpm.extend_pcr(8, [0x42; 32]).unwrap();
    let pcrs = tpm.pcr_values().unwrap();
    assert_ne!(pcrs[8], [0; 32]);
    assert_eq!(pcrs[0], [0; 32]);
    let nonce = [0x5a; 48];
    let q = tpm.quote(&ak, &nonce).unwrap();
    assert_eq!(q.pcrs, pcrs);
    std::fs::write(dir.path().join("ak.pem"), &ak.pem).unwrap();
    let nonce_hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    tpm.tool(
        "tpm2_checkquote",
        &[
            "-u",
            "ak.pem",
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-g",
            "sha256",
            "-q",
            &nonce_hex,
        ],
    )
    .unwrap();
    // Our PEM is the key: ring verifies the raw signature with its modulus.
    let key = ring::signature::RsaPublicKeyComponents {
        n: &ak.modulus[..],
        e: &[1u8, 0, 1][..],
    };
    key.verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &q.message,
        q.raw_signature().unwrap(),
    )
    .unwrap();
    assert!(q.message.ends_with(&tee_emu::quote::pcr_digest(&pcrs)));
    // A transient AK quotes through its context file.
    let transient = tpm.create_ek_ak(None).unwrap();
    assert_ne!(transient.modulus, ak.modulus);
    tpm.quote(&transient, &[1; 32]).unwrap();
}

#[test]
fn nv_round_trip() {
    if !swtpm_or_skip("nv_round_trip") {
        return;
    }
    let dir = Scratch::new("nv");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let data: Vec<u8> = (0..2048u32).map(|i| (i * 7) as u8).collect();
    tpm.nv_define_write(0x0150_0000, &data).unwrap();
    assert_eq!(tpm.nv_read(0x0150_0000).unwrap(), data);
    assert!(tpm.nv_define_write(0x0150_0001, &[0; 2049]).is_err());
}

/// The var-data JSON of an NV image of an HCL report.
fn var_data(report: &[u8]) -> (Vec<u8>, Value) {
    let n = u32::from_le_bytes(report[0x4d0..0x4d4].try_into().unwrap()) as usize;
    let var = report[0x4d4..0x4d4 + n].to_vec();
    let json = serde_json::from_slice(&var).unwrap();
    (var, json)
}

fn user_data(report: &[u8]) -> String {
    var_data(report).1["user-data"]
        .as_str()
        .unwrap()
        .to_string()
}

/// tpm2-tools through the paravisor, as the agent would talk to it.
fn write_user_data(tpm: &Swtpm, para: &Paravisor, data: &[u8]) {
    let file = tpm.dir().join("user.bin");
    std::fs::write(&file, data).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
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
    let index = format!("{NV_USER_DATA:#010x}");
    let size = data.len().to_string();
    let _ = std::process::Command::new("tpm2_nvundefine")
        .args([&index, "-C", "o"])
        .env("TPM2TOOLS_TCTI", para.tcti())
        .env("TSS2_LOG", "all+none")
        .output();
    run(&[
        "tpm2_nvdefine",
        &index,
        "-C",
        "o",
        "-s",
        &size,
        "-a",
        "ownerread|ownerwrite",
    ]);
    run(&[
        "tpm2_nvwrite",
        &index,
        "-C",
        "o",
        "-i",
        file.to_str().unwrap(),
    ]);
}

fn read_report(tpm: &Swtpm, para: &Paravisor) -> Vec<u8> {
    let out = tpm.dir().join("hcl.out");
    let status = std::process::Command::new("tpm2_nvread")
        .args([
            &format!("{NV_HCL_REPORT:#010x}"),
            "-C",
            "o",
            "-o",
            out.to_str().unwrap(),
        ])
        .env("TPM2TOOLS_TCTI", para.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap();
    assert!(status.status.success());
    std::fs::read(out).unwrap()
}

#[test]
fn paravisor_refreshes_the_hcl_report() {
    if !swtpm_or_skip("paravisor_refreshes_the_hcl_report") {
        return;
    }
    let dir = Scratch::new("paravisor");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(AZURE_AK_HANDLE)).unwrap();
    let para = Paravisor::start(&tpm, HclKind::Snp, &ak).unwrap();
    let zeros = "0".repeat(128);
    let before = read_report(&tpm, &para);
    assert_eq!(before.len(), 2048);
    assert_eq!(user_data(&before), zeros);

    let digest48 = [0xc3u8; 48];
    write_user_data(&tpm, &para, &digest48);
    let after = read_report(&tpm, &para);
    let expected = format!("{}{}", "C3".repeat(48), "0".repeat(32));
    assert_eq!(user_data(&after), expected);
    assert_eq!(para.user_data().unwrap(), digest48);
    assert_eq!(para.refreshes(), 1);
    let (var, json) = var_data(&after);
    assert_eq!(json["keys"][0]["n"], ak.jwk_n());
    // The SNP report binds the new var-data.
    let report =
        sev::firmware::guest::AttestationReport::from_bytes(&after[0x20..0x20 + 1184]).unwrap();
    assert_eq!(report.report_data[..32], *digest(&SHA256, &var).as_ref());

    // Two report reads still see the old report, the third the new one.
    para.delay_reads(2);
    write_user_data(&tpm, &para, &[0x11; 48]);
    assert_eq!(user_data(&read_report(&tpm, &para)), expected);
    assert_eq!(user_data(&read_report(&tpm, &para)), expected);
    assert!(user_data(&read_report(&tpm, &para)).starts_with(&"11".repeat(48)));

    para.never();
    write_user_data(&tpm, &para, &[0x22; 48]);
    for _ in 0..3 {
        assert!(user_data(&read_report(&tpm, &para)).starts_with(&"11".repeat(48)));
    }
    assert_eq!(para.refreshes(), 2);
    assert!(para.errors().is_empty(), "{:?}", para.errors());
}

#[test]
fn paravisor_tdx_report() {
    if !swtpm_or_skip("paravisor_tdx_report") {
        return;
    }
    let dir = Scratch::new("paravisor-tdx");
    let tpm = Swtpm::start(dir.path()).unwrap();
    let ak = tpm.create_ek_ak(Some(AZURE_AK_HANDLE)).unwrap();
    let para = Paravisor::start(&tpm, HclKind::Tdx, &ak).unwrap();
    write_user_data(&tpm, &para, &[0x77; 48]);
    let report = read_report(&tpm, &para);
    assert_eq!(report[0x4c0 + 8], 4);
    let (var, _) = var_data(&report);
    assert_eq!(
        report[0x20 + 128..0x20 + 160],
        *digest(&SHA256, &var).as_ref()
    );
    // TDX reports are deterministic: the NV image is the built report, zero-padded.
    let built = hcl::build(HclKind::Tdx, &ak, &[0x77; 48]).unwrap();
    assert_eq!(report[..built.len()], built[..]);
    assert!(report[built.len()..].iter().all(|b| *b == 0));
}

/// One HTTP/1.1 exchange: (status, body).
fn http(url: &str, request: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn post(url: &str, content_type: &str, body: &str) -> (u16, String) {
    http(
        url,
        &format!(
            "POST /acc/tdquote HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn imds_endpoints_and_knobs() {
    let imds = FakeImds::start(HclKind::Tdx).unwrap();
    let url = imds.url();
    let get = "GET /metadata/THIM/amd/certification HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n";
    let (status, body) = http(&url, get);
    assert_eq!(status, 200);
    let certs: Value = serde_json::from_str(&body).unwrap();
    assert!(certs["vcekCert"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        certs["certificateChain"]
            .as_str()
            .unwrap()
            .matches("BEGIN")
            .count(),
        2
    );
    let (status, _) = http(
        &url,
        "GET /metadata/THIM/amd/certification HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status, 400);

    let mut data = [0u8; 64];
    data[..32].copy_from_slice(&[9; 32]);
    let report = hcl::tdreport(&data);
    let body = format!("{{\"report\":\"{}\"}}", URL_SAFE_NO_PAD.encode(&report));
    let (status, reply) = post(&url, "application/json", &body);
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    let quote = URL_SAFE_NO_PAD
        .decode(reply["quote"].as_str().unwrap())
        .unwrap();
    tdx::verify_signature(&quote).unwrap();
    assert_eq!(
        quote[tdx::REPORT_DATA_OFFSET..tdx::REPORT_DATA_OFFSET + 64],
        data
    );
    assert_eq!(post(&url, "application/json; charset=utf-8", &body).0, 415);

    imds.fail_next(1, 500);
    assert_eq!(http(&url, get).0, 500);
    imds.garble_next(1);
    let (status, body) = http(&url, get);
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());
    imds.delay_next(1, Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(http(&url, get).0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(http(&url, get).0, 200);

    let log = imds.requests();
    assert_eq!(log.len(), 8);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].header("Metadata"), Some("true"));
    assert_eq!(log[2].path, "/acc/tdquote");
    assert_eq!(
        log[3].header("content-type"),
        Some("application/json; charset=utf-8")
    );
}
