// SPDX-License-Identifier: Apache-2.0
//! HTTPS: a rustls server config from PEM files (ring provider, TLS 1.2/1.3,
//! ALPN h2 and http/1.1).

use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::Tls;

/// Loads the certificate chain and key named by `tls`.
pub fn acceptor(tls: &Tls) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(&tls.cert_chain)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("read certificate chain {}: {e}", tls.cert_chain.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "certificate chain {} holds no certificate",
            tls.cert_chain.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| anyhow!("read private key {}: {e}", tls.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .context("select TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("load TLS key {}", tls.key.display()))?;
    // Like actix-web (Trustee's server) with its default http2 feature.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
