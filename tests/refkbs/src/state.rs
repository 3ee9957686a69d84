// SPDX-License-Identifier: Apache-2.0
//! Shared server state: configuration, sessions, issued tokens, the fault
//! queue, request recordings and statistics.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{bail, Result};
use ring::rand::SystemRandom;
use serde::Serialize;

use crate::fault::{Endpoint, Fault, FaultKind, FaultQueue};
use crate::policy::Policy;
use crate::session::{self, Sessions};
use crate::token::Signer;
use crate::verifier::Roots;
use crate::Config;

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Header names lowercase, in arrival order (repeated names grouped).
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// Requests per endpoint and time spent handling them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub auth: u64,
    pub attest: u64,
    pub resource: u64,
    pub other: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// From request received to response handed to hyper, summed.
    #[serde(rename = "busy_us", serialize_with = "ser_micros")]
    pub busy: Duration,
}

fn ser_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

#[derive(Default)]
struct Tokens {
    issued: Vec<String>,
    revoked: HashSet<String>,
}

pub struct State {
    pub(crate) resources: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) version: String,
    pub(crate) session_timeout: Duration,
    pub(crate) token_lifetime: Duration,
    pub(crate) token_leeway: Duration,
    quiet: bool,
    pub(crate) rng: SystemRandom,
    pub(crate) signer: Signer,
    pub(crate) roots: Roots,
    sessions: Mutex<Sessions>,
    tokens: Mutex<Tokens>,
    faults: Mutex<FaultQueue>,
    records: Mutex<Vec<Recorded>>,
    stats: Mutex<Stats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(config: &Config) -> Result<State> {
        if !session::is_semver(&config.version) {
            bail!("protocol version {:?} is not x.y.z semver", config.version);
        }
        Ok(State {
            resources: config.resources.clone(),
            policy: config.policy.clone(),
            version: config.version.clone(),
            session_timeout: config.session_timeout,
            token_lifetime: config.token_lifetime,
            token_leeway: config.token_leeway,
            quiet: config.quiet,
            rng: SystemRandom::new(),
            signer: Signer::new()?,
            roots: Roots::load(config)?,
            sessions: Mutex::default(),
            tokens: Mutex::default(),
            faults: Mutex::default(),
            records: Mutex::default(),
            stats: Mutex::default(),
        })
    }

    /// Diagnostics to stderr (the real cause behind opaque KBS errors).
    pub fn log(&self, message: &str) {
        if !self.quiet {
            eprintln!("refkbs: {message}");
        }
    }

    pub(crate) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    pub(crate) fn token_issued(&self, token: &str) {
        lock(&self.tokens).issued.push(token.to_string());
    }

    pub(crate) fn token_revoked(&self, token: &str) -> bool {
        lock(&self.tokens).revoked.contains(token)
    }

    pub fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    pub(crate) fn take_fault(&self, endpoint: Option<Endpoint>) -> Option<FaultKind> {
        lock(&self.faults).take(endpoint)
    }

    /// Every session, and every token issued so far, expires now.
    pub fn expire_sessions(&self) {
        let in_sessions = self.sessions().expire_all();
        let mut tokens = lock(&self.tokens);
        let issued = std::mem::take(&mut tokens.issued);
        tokens.revoked.extend(issued);
        tokens.revoked.extend(in_sessions);
    }

    pub(crate) fn record(&self, request: Recorded) {
        lock(&self.records).push(request);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.records).clone()
    }

    pub(crate) fn count(&self, endpoint: Option<Endpoint>, busy: Duration) {
        let mut stats = lock(&self.stats);
        match endpoint {
            Some(Endpoint::Auth) => stats.auth += 1,
            Some(Endpoint::Attest) => stats.attest += 1,
            Some(Endpoint::Resource) => stats.resource += 1,
            Some(Endpoint::Any) | None => stats.other += 1,
        }
        stats.busy += busy;
    }

    pub(crate) fn count_connection(&self) {
        lock(&self.stats).connections += 1;
    }

    pub fn stats(&self) -> Stats {
        *lock(&self.stats)
    }

    /// Zeroes the statistics.
    pub fn reset_stats(&self) {
        *lock(&self.stats) = Stats::default();
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.records).clear();
    }
}
