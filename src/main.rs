// SPDX-License-Identifier: Apache-2.0
//! cvm-attest: an in-guest attestation agent for confidential VMs.
//!
//! It proves to a Trustee Key Broker Service (RCAR protocol 0.4.0) that it
//! runs in a genuine TEE, and fetches the secrets the KBS then releases.
//! Flow: platform → TEE key → auth → evidence bound to the challenge →
//! attest → every resource in the one session → output.
// glibc calls `main` below directly: see start.rs for what is left out.
#![cfg_attr(not(test), no_main)]

mod binding;
mod cli;
mod cmdline;
mod commands;
mod config;
mod coredump;
mod eventlog;
mod evidence;
mod exit;
mod helper;
mod http;
mod imds;
mod input;
mod jwe;
mod kbs;
mod kbs_url;
mod logger;
mod output;
mod probe;
mod problem;
mod report;
mod resource;
mod retry;
mod root;
mod run;
mod sevguest;
mod sink;
#[cfg(not(test))]
mod start;
mod systemd;
mod teekey;
#[cfg(test)]
mod testvec;
mod tls;
mod tpm;
mod tsm;

use clap::Parser;

use crate::cli::{Cli, Command};

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start::begin();
    let code = agent();
    start::end();
    code.into()
}

/// The agent, from the command line to its exit code.
#[cfg_attr(test, allow(dead_code))]
fn agent() -> u8 {
    let cli = Cli::parse();
    logger::init(cli.verbose, cli.quiet);
    coredump::disable();
    // One thread: the agent waits on the network, it does not compute.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Get(args) => commands::get(args).await,
            Command::Evidence(args) => commands::evidence(args).await,
            Command::Probe(args) => commands::probe(args),
            Command::Run(args) => run::run(args).await,
            Command::Cleanup(args) => run::cleanup(&args),
            Command::Decode(args) => {
                report::decode_file(&args.file, args.json, args.vcek.as_deref())
            }
        }
    });
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            if !e.is::<exit::Shown>() {
                log::error!("{e:#}");
            }
            exit::code(&e)
        }
    }
}
