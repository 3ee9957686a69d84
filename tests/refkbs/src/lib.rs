// SPDX-License-Identifier: Apache-2.0
//! refkbs: a small, faithful re-implementation of the server side of the
//! Trustee KBS RCAR protocol 0.4.0 (see `/work/shared/docs/kbs-protocol.md`
//! and trustee `kbs/docs/kbs_attestation_protocol.md`), for cvm-attest's
//! integration tests, demo and benchmarks.
//!
//! In-process use: [`RefKbs::start`] runs the server on its own thread with
//! its own tokio runtime; dropping the handle stops it. The standalone
//! `refkbs` binary uses [`serve`] directly.

mod fault;
mod handshake;
mod jwe;
mod policy;
mod problem;
mod reply;
mod resource;
mod server;
mod session;
mod state;
mod tls;
mod token;
mod verifier;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::oneshot;

pub use fault::{Endpoint, Fault, FaultKind};
pub use policy::{Effect, Policy, Rule};
pub use problem::Problem;
pub use server::{serve, BODY_LIMIT};
pub use state::{Recorded, State, Stats};
pub use tls::acceptor as tls_acceptor;
pub use verifier::ccel::replay as ccel_replay;

/// Server configuration; [`Config::new`] gives Trustee's defaults, whose
/// resource policy refuses `sample` evidence (tests that use it set
/// [`Policy::allow_all`], as Trustee's own tests load `allow_all.rego`).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Resources live at `<resources>/<repo>/<type>/<tag>`, read on each GET.
    pub resources: PathBuf,
    pub policy: Policy,
    pub tls: Option<Tls>,
    /// Required client protocol version (semver `=version`).
    pub version: String,
    pub session_timeout: Duration,
    pub token_lifetime: Duration,
    /// How long past its `exp` a token is still accepted: jsonwebtoken's
    /// default leeway, 60 s, which Trustee's token verifier keeps.
    pub token_leeway: Duration,
    /// Silence the diagnostics on stderr.
    pub quiet: bool,
    /// The AMD root key (PEM or DER) SNP evidence must chain to; without it
    /// `snp` evidence is rejected. Tests use `tests/data/snp-test-pki/ark.pem`.
    /// A PEM bundle (ASK, then ARK, as `snp-test-pki/ask-ark.pem`) also gives
    /// the trusted ASK, without which `az-snp-vtpm` evidence is rejected.
    pub snp_ark: Option<PathBuf>,
}

impl Config {
    pub fn new(resources: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            resources: resources.into(),
            policy: Policy::trustee_default(),
            tls: None,
            version: "0.4.0".to_string(),
            session_timeout: Duration::from_secs(5 * 60),
            token_lifetime: Duration::from_secs(5 * 60),
            token_leeway: Duration::from_secs(60),
            quiet: false,
            snp_ark: None,
        }
    }
}

/// HTTPS server identity (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_chain: PathBuf,
    /// PKCS#8, SEC1 or PKCS#1 (RSA) private key.
    pub key: PathBuf,
}

/// A running reference KBS.
pub struct RefKbs {
    addr: SocketAddr,
    https: bool,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RefKbs {
    /// Binds `config.listen` and starts serving on a background thread.
    pub fn start(config: Config) -> Result<RefKbs> {
        let state = Arc::new(State::new(&config)?);
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let https = acceptor.is_some();
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("bind {}", config.listen))?;
        listener
            .set_nonblocking(true)
            .context("make listener non-blocking")?;
        let addr = listener.local_addr().context("read listener address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build tokio runtime")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("refkbs".to_string())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).context("register listener")?;
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    serve(listener, server_state, acceptor, shutdown).await
                });
                if let Err(e) = result {
                    eprintln!("refkbs: {e:#}");
                }
            })
            .context("spawn refkbs thread")?;
        Ok(RefKbs {
            addr,
            https,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn push_fault(&self, fault: Fault) {
        self.state.push_fault(fault);
    }

    /// Every existing session and every token issued so far expire now.
    pub fn expire_sessions(&self) {
        self.state.expire_sessions();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests()
    }

    pub fn clear_requests(&self) {
        self.state.clear_requests();
    }

    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }
}

impl Drop for RefKbs {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
