// SPDX-License-Identifier: Apache-2.0
//! `decode` on the recorded vectors (tests/data), as an operator runs it.

use crate::util::{agent, assert_exit, assert_fails_with, assert_not_logged, data, TempDir};

fn decode(args: &[&str]) -> (std::process::Output, String) {
    let mut all = vec!["decode"];
    all.extend_from_slice(args);
    let out = agent(&all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn every_vector_decodes() {
    for (file, kind, needle) in [
        (
            "snp/report.bin",
            "SEV-SNP attestation report",
            "VMPL                    0",
        ),
        ("tdx/quote-v5.bin", "TDX quote", "version                 5"),
        (
            "az-tdx-vtpm/td-quote.bin",
            "TDX quote",
            "version                 4",
        ),
        ("az-snp-vtpm/hcl-report.bin", "Azure HCL report", "HCLAkPub"),
        (
            "az-tdx-vtpm/hcl-report.bin",
            "Azure HCL report",
            "Embedded TDREPORT",
        ),
    ] {
        let path = data(file);
        let (out, text) = decode(&[path.to_str().unwrap()]);
        assert_exit(&out, 0);
        assert!(text.starts_with(kind), "{file}: {text}");
        assert!(text.contains(needle), "{file} lacks {needle:?}: {text}");
        let (out, json) = decode(&[path.to_str().unwrap(), "--json"]);
        assert_exit(&out, 0);
        let _: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{file}: --json: {e}"));
    }
}

#[test]
fn vcek_verifies_the_report_and_rejects_a_one_bit_change() {
    let (report, vcek) = (data("snp/report.bin"), data("snp/vcek.der"));
    let (out, text) = decode(&[report.to_str().unwrap(), "--vcek", vcek.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(text.contains("verified with the VCEK"), "{text}");

    let dir = TempDir::new("decode-flip");
    let mut bytes = std::fs::read(&report).unwrap();
    bytes[0x50] ^= 0x01; // first byte of REPORT_DATA
    let flipped = dir.path().join("flipped.bin");
    std::fs::write(&flipped, bytes).unwrap();
    let (out, text) = decode(&[flipped.to_str().unwrap(), "--vcek", vcek.to_str().unwrap()]);
    assert_fails_with(&out, 1, "verify the SNP report signature in");
    assert!(
        text.contains("DOES NOT VERIFY"),
        "the decode is still shown: {text}"
    );
}

#[test]
fn bad_input_is_named() {
    let dir = TempDir::new("decode-bad");
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, vec![7u8; 1000]).unwrap();
    let (out, _) = decode(&[junk.to_str().unwrap()]);
    assert_fails_with(&out, 1, "is neither an SNP report");
    let (out, _) = decode(&["/nonexistent/report.bin"]);
    assert_fails_with(&out, 1, "read /nonexistent/report.bin");
    let quote = data("tdx/quote-v5.bin");
    let vcek = data("snp/vcek.der");
    let (out, _) = decode(&[quote.to_str().unwrap(), "--vcek", vcek.to_str().unwrap()]);
    assert_fails_with(
        &out,
        1,
        "a TDX quote is signed by the quoting enclave, not by a VCEK",
    );
    // The AMD root key given where the VCEK belongs.
    let (report, ark) = (data("snp/report.bin"), data("snp-test-pki/ark.pem"));
    let (out, _) = decode(&[report.to_str().unwrap(), "--vcek", ark.to_str().unwrap()]);
    assert_fails_with(&out, 1, "the certificate's key is not an ECDSA P-384 key");
    assert_not_logged(&out, "signature::Error");
}

/// A stream or a huge wrong file is read up to a cap, never to the end.
#[test]
fn an_endless_file_is_refused_at_the_cap() {
    let (out, text) = decode(&["/dev/zero"]);
    assert_fails_with(&out, 1, "read /dev/zero: it holds more than 1024 KiB");
    assert!(text.is_empty());
    let report = data("snp/report.bin");
    let (out, _) = decode(&[report.to_str().unwrap(), "--vcek", "/dev/zero"]);
    assert_fails_with(
        &out,
        1,
        "read the VCEK /dev/zero: it holds more than 1024 KiB",
    );
}
