// SPDX-License-Identifier: Apache-2.0
//! The commands an operator runs by hand: `get` and `evidence`.

use std::io::Write;

use anyhow::{Context, Result};
use base64::{engine::general_purpose::STANDARD, Engine};
use ring::rand::{SecureRandom, SystemRandom};

use crate::cli::{EvidenceArgs, GetArgs, ProbeArgs};
use crate::evidence::Platform;
use crate::exit::{self, Shown, Usage};
use crate::http::Transport;
use crate::kbs::{self, Client};
use crate::output::Output;
use crate::probe;
use crate::resource::ResourcePath;
use crate::teekey::TeeKey;

/// `get`: plan the output, attest once, fetch everything, write it.
pub async fn get(args: GetArgs) -> Result<()> {
    let listed = args.resources.len();
    let mut resources: Vec<ResourcePath> = Vec::with_capacity(args.resources.len());
    for r in args.resources {
        if resources.contains(&r) {
            log::warn!("{r} is listed twice; fetching it once");
        } else {
            resources.push(r);
        }
    }
    let output = Output::plan(args.output.as_deref(), &resources, listed).map_err(Usage)?;
    let options = args.tee.options(args.kbs.timeout);
    let platform = Platform::select(args.tee.tee, &options)?;
    let transport = Transport::new(&args.kbs.transport()).map_err(Usage)?;
    let client = Client::new(&transport, platform, &options)?;
    let fetched = client.fetch_all(&resources).await?;
    output.deliver(&fetched)
}

/// `evidence`: the Attestation body for a nonce, as it would be sent.
pub async fn evidence(args: EvidenceArgs) -> Result<()> {
    let options = args.tee.options(args.timeout);
    let platform = Platform::select(args.tee.tee, &options)?;
    let nonce = match args.nonce {
        Some(n) => n,
        None => {
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("read random bytes for the nonce"))?;
            STANDARD.encode(bytes)
        }
    };
    let key = TeeKey::generate()?;
    let body = kbs::attestation(platform, &options, key.public_jwk(), &nonce).await?;
    let json = serde_json::to_string(&body).context("serialize the attestation")?;
    print_out(&format!("{json}\n"))
}

/// `probe`: the interfaces and the platform; fails when there is none.
pub fn probe(args: ProbeArgs) -> Result<()> {
    let probe = probe::run(&args.tcti.unwrap_or_else(crate::tpm::default_tcti));
    if args.json {
        print_out(&(serde_json::to_string_pretty(&probe).context("serialize the probe")? + "\n"))?;
    } else {
        print_out(&probe.render())?;
    }
    match probe.platform {
        Some(_) => Ok(()),
        None => Err(Shown(exit::NO_TEE).into()),
    }
}

/// Writes a command's output; a reader that went away (`| head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("write to stdout"),
    }
}
