// SPDX-License-Identifier: Apache-2.0
//! `refkbs`: the reference Trustee KBS as a standalone program, for the README
//! demo, benchmarks and boot tests. Test-only controls live under `/refkbs/`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use refkbs::{serve, tls_acceptor, Config, Policy, State, Tls};

/// Reference Trustee KBS (RCAR protocol 0.4.0) for cvm-attest tests.
#[derive(Parser)]
#[command(name = "refkbs")]
struct Args {
    /// Directory holding resources as <repo>/<type>/<tag> files.
    #[arg(long, value_name = "DIR")]
    resources: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Resource policy file (`allow|deny <tee|*> <repo>/<type>/<tag>` lines)
    /// [default: Trustee's default.rego, every TEE but sample]
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Release every resource to every TEE, sample included (Trustee's allow_all.rego)
    #[arg(long, conflicts_with = "policy")]
    allow_all: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Required client protocol version.
    #[arg(long = "version", value_name = "VERSION", default_value = "0.4.0")]
    protocol_version: String,
    /// Session lifetime in seconds, fixed at /auth.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    session_timeout: u64,
    /// Attestation token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    token_lifetime: u64,
    /// How long past its expiry a token is still accepted (Trustee: 60).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    token_leeway: u64,
    /// Write the URL to this file once listening.
    #[arg(long, value_name = "FILE")]
    url_file: Option<PathBuf>,
    /// Do not log the causes of failed requests to stderr.
    #[arg(long)]
    quiet: bool,
    /// Trusted AMD root key (PEM or DER) for `snp` evidence; a PEM bundle ASK
    /// then ARK also trusts the ASK, which evidence without one needs
    /// (`az-snp-vtpm` always, `snp` from a host that publishes only the VCEK).
    #[arg(long, value_name = "CERT")]
    snp_ark: Option<PathBuf>,
    /// Worker threads; 0 serves everything on one thread
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("refkbs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let mut config = Config::new(args.resources);
    config.listen = args.listen;
    if let Some(path) = &args.policy {
        config.policy = Policy::from_file(path)?;
    }
    if args.allow_all {
        config.policy = Policy::allow_all();
    }
    if let (Some(cert_chain), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(Tls { cert_chain, key });
    }
    config.version = args.protocol_version;
    config.session_timeout = Duration::from_secs(args.session_timeout);
    config.token_lifetime = Duration::from_secs(args.token_lifetime);
    config.token_leeway = Duration::from_secs(args.token_leeway);
    config.quiet = args.quiet;
    config.snp_ark = args.snp_ark;

    let state = Arc::new(State::new(&config)?);
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    // Like actix (Trustee's server): by default one worker per core.
    let runtime = match args.workers {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("build tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr()?);
        if let Some(path) = &args.url_file {
            // Write then rename, so a script polling for the file never sees half a URL.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, format!("{url}\n"))
                .and_then(|()| std::fs::rename(&partial, path))
                .with_context(|| format!("write URL file {}", path.display()))?;
        }
        let mut stdout = std::io::stdout();
        writeln!(stdout, "refkbs listening on {url}")?;
        stdout.flush()?;
        serve(listener, state, acceptor, stop_signal()).await
    })
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
