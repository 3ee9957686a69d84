// SPDX-License-Identifier: Apache-2.0
//! cvm-attest-units: the agent's units helper. Not meant to be run by hand.
//!
//! `cvm-attest-units [-q] [-v]... TIMEOUT_MS ACTION:UNIT...` asks systemd,
//! over the system bus, to reload or restart each unit and waits for every
//! job, all within TIMEOUT_MS (`src/systemd/manager.rs`). It exits 0 when
//! every job is done; otherwise it prints the error on one line of stdout,
//! for the agent to report, and exits 1. Logs go to stderr, as the agent's.
//! It is the only binary that links zbus (`src/systemd/units.rs` runs it).

#[path = "../systemd/action.rs"]
mod action;
#[path = "../logger.rs"]
mod logger;
#[path = "../systemd/manager.rs"]
mod manager;
#[cfg(test)]
#[path = "../systemd/manager_tests.rs"]
mod manager_tests;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use action::UnitAction;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let (mut verbosity, mut quiet) = (0u8, false);
    while let Some(flag) = args.next_if(|a| a == "-q" || a == "-v") {
        match flag.as_str() {
            "-q" => quiet = true,
            _ => verbosity = verbosity.saturating_add(1),
        }
    }
    let Some(timeout) = args.next().and_then(|ms| ms.parse().ok()) else {
        return usage();
    };
    if args.peek().is_none() {
        return usage();
    }
    logger::init(verbosity, quiet);
    let actions: Vec<String> = args.collect();
    match act(&actions, Duration::from_millis(timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn act(args: &[String], timeout: Duration) -> Result<()> {
    let actions = args
        .iter()
        .map(|arg| UnitAction::from_arg(arg))
        .collect::<Result<Vec<_>>>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(manager::act_on_units(&actions, timeout))
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cvm-attest-units [-q] [-v]... TIMEOUT_MS ACTION:UNIT... \
         (the agent's units helper; run cvm-attest instead)"
    );
    ExitCode::from(2)
}
