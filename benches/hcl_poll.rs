// SPDX-License-Identifier: Apache-2.0
//! How long Azure vTPM evidence takes when the agent polls the HCL report
//! until the paravisor has put our report data in it, against upstream's
//! fixed 3-second sleep (azure-cvm-tooling `get_report_with_report_data`).
//! Runs against swtpm with the paravisor stand-in and the fake IMDS from
//! tests/tee-emu; prints figures, asserts nothing. `cargo bench --bench hcl_poll`.

use std::process::Command;
use std::time::Instant;

use tee_emu::{swtpm, FakeImds, HclKind, Paravisor, Swtpm};

const RUNS: usize = 10;

fn main() {
    if !swtpm::available() || !tee_emu::fuse_usable() {
        eprintln!("SKIPPED hcl_poll: needs swtpm, root and /dev/fuse");
        return;
    }
    let dir = std::env::temp_dir().join(format!("cvm-attest-bench-hcl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let tpm = Swtpm::start(&dir).expect("start swtpm");
    let ak = tpm
        .create_ek_ak(Some(0x8100_0003))
        .expect("provision the AK");
    let para = Paravisor::start(&tpm, HclKind::Snp, &ak).expect("start the paravisor stand-in");
    let imds = FakeImds::start(HclKind::Snp).expect("start the fake IMDS");
    let (tcti, url) = (para.tcti(), imds.url());
    for (label, delayed_reads) in [
        ("paravisor refreshes at once", 0),
        ("paravisor lags 3 reads", 3),
    ] {
        let (mut walls, mut refresh) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            para.delay_reads(delayed_reads);
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_cvm-attest"))
                .args([
                    "-v",
                    "evidence",
                    "--nonce",
                    "bench",
                    "--tee",
                    "az-snp-vtpm",
                    "--tcti",
                    &tcti,
                    "--imds-url",
                    &url,
                ])
                .output()
                .expect("run cvm-attest");
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let log = String::from_utf8_lossy(&out.stderr);
            if let Some(ms) = log
                .split("HCL report refreshed after ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
            {
                refresh.push(ms.parse::<f64>().unwrap_or(f64::NAN));
            }
        }
        walls.sort_by(|a, b| a.total_cmp(b));
        refresh.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{label:<28} evidence in {:>7.1} ms (median of {RUNS}), HCL report current after {:>5.1} ms; upstream sleeps 3000 ms before its first read",
            walls[RUNS / 2],
            refresh.get(refresh.len() / 2).copied().unwrap_or(f64::NAN)
        );
    }
    drop((para, imds, tpm));
    let _ = std::fs::remove_dir_all(&dir);
}
