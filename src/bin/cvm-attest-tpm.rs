// SPDX-License-Identifier: Apache-2.0
//! cvm-attest-tpm: the agent's TPM helper. Not meant to be run by hand.
//!
//! `cvm-attest-tpm [-q] [-v]... TCTI` opens the TPM behind the device TCTI,
//! answers [`Response::Ready`] (or the error), then serves one [`Request`]
//! per line of stdin with one [`Response`] per line of stdout until stdin
//! closes (protocol: `src/tpm/wire.rs`). Logs go to stderr, as the agent's.
//! It is the only binary that links tpm2-tss (and with it libcrypto), so
//! that the agent loads them only when it uses a TPM (`src/tpm.rs`).

#[path = "../tpm/esapi.rs"]
mod esapi;
#[path = "../logger.rs"]
mod logger;
#[path = "../tpm/wire.rs"]
mod wire;

use std::io::BufRead as _;
use std::process::ExitCode;

use wire::{Request, Response};

fn main() -> ExitCode {
    let (mut verbosity, mut quiet, mut tcti) = (0u8, false, None);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-q" => quiet = true,
            "-v" => verbosity = verbosity.saturating_add(1),
            _ if tcti.is_none() => tcti = Some(arg),
            _ => return usage(),
        }
    }
    let Some(tcti) = tcti else {
        return usage();
    };
    logger::init(verbosity, quiet);
    let mut out = std::io::stdout().lock();
    let mut tpm = match esapi::Tpm::open(&tcti) {
        Ok(tpm) => tpm,
        Err(e) => {
            let _ = send(&mut out, &Response::Error(one_line(&e)));
            return ExitCode::FAILURE;
        }
    };
    if send(&mut out, &Response::Ready).is_err() {
        return ExitCode::FAILURE;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else {
            return ExitCode::FAILURE;
        };
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => serve(&mut tpm, request),
            Err(e) => Response::Error(format!("the TPM helper got a malformed request ({e})")),
        };
        if send(&mut out, &response).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn serve(tpm: &mut esapi::Tpm, request: Request) -> Response {
    let result = match request {
        Request::Quote {
            source,
            qualifying,
            rsassa,
        } => tpm.quote(source, &qualifying, rsassa).map(Response::Quote),
        Request::NvDefined { index } => tpm.nv_defined(index).map(Response::Defined),
        Request::NvRead { index } => tpm.nv_read(index).map(Response::NvData),
        Request::NvWrite { index, data } => tpm.nv_write(index, &data).map(|()| Response::Written),
    };
    result.unwrap_or_else(|e| Response::Error(one_line(&e)))
}

/// An error chain on one line. tss-esapi's errors repeat their own text in
/// their source: a cause equal to the one before is left out, and one that
/// starts with it takes its place.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        match parts.last_mut() {
            Some(last) if *last == text => {}
            Some(last) if text.starts_with(last.as_str()) => *last = text,
            _ => parts.push(text),
        }
    }
    parts.join(": ")
}

fn send(out: &mut impl std::io::Write, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

fn usage() -> ExitCode {
    eprintln!("usage: cvm-attest-tpm [-q] [-v]... device:PATH (the agent's TPM helper; run cvm-attest instead)");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_that_repeats_is_said_once() {
        let e = anyhow::anyhow!("response code not recognized: value 0xa000a")
            .context("response code not recognized")
            .context("response code not recognized")
            .context("open the TPM");
        assert_eq!(
            super::one_line(&e),
            "open the TPM: response code not recognized: value 0xa000a"
        );
        let e = anyhow::anyhow!("b").context("a");
        assert_eq!(super::one_line(&e), "a: b");
    }
}
