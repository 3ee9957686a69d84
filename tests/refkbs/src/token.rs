// SPDX-License-Identifier: Apache-2.0
//! Attestation tokens: EAR-shaped ES256 JWTs (kbs-protocol.md §1.7, Trustee
//! `attestation-service/src/ear_token/broker.rs`), signed with an ephemeral
//! per-process P-256 key whose JWK rides in the header, as with Trustee's
//! default broker; verified again on resource requests (§1.8 step 2).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::{Tee, TeePubKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};

const ANNOTATED_EVIDENCE: &str = "ear.veraison.annotated-evidence";
const NON_TEE_CLAIMS: &[&str] = &[
    "report_data",
    "runtime_data_claims",
    "init_data",
    "init_data_claims",
];

/// What a verified token tells the resource endpoint.
#[derive(Debug, Clone)]
pub struct Grant {
    pub tee: Tee,
    pub tee_pubkey: TeePubKey,
}

/// Everything the attestation step puts into a token.
pub struct Appraisal<'a> {
    pub tee: Tee,
    pub tee_claims: Value,
    pub report_data: &'a str,
    pub runtime_data_claims: Value,
}

pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    header: String,
}

impl Signer {
    pub fn new() -> Result<Signer> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("generate token signing key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow!("load token signing key"))?;
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        let point = key.public_key().as_ref();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "jwk": {
                "alg": "ES256",
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            },
        });
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Signer { key, rng, header })
    }

    /// Issues a token valid for `lifetime` from now.
    pub fn issue(&self, appraisal: &Appraisal<'_>, lifetime: Duration) -> Result<String> {
        self.issue_at(appraisal, unix_now() + lifetime.as_secs())
    }

    /// A token whose `exp` is `exp` (seconds since the epoch).
    fn issue_at(&self, appraisal: &Appraisal<'_>, exp: u64) -> Result<String> {
        let iat = unix_now();
        let mut evidence = json!({
            "report_data": appraisal.report_data,
            "runtime_data_claims": appraisal.runtime_data_claims,
        });
        evidence[tee_name(appraisal.tee)] = appraisal.tee_claims.clone();
        let claims = json!({
            "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
            "iat": iat,
            "ear.verifier-id": {
                "developer": "https://confidentialcontainers.org",
                "build": "refkbs 0.1.0",
            },
            "submods": {
                "cpu0": {
                    "ear.status": "affirming",
                    "ear.appraisal-policy-id": "default",
                    ANNOTATED_EVIDENCE: evidence,
                },
            },
            "exp": exp,
            "iss": "CoCo-Attestation-Service",
        });
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| anyhow!("sign token"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Checks signature (our key only) and `exp`, then extracts TEE and TEE
    /// key. Like jsonwebtoken in Trustee, a token is refused only once `exp`
    /// is more than `leeway` past.
    pub fn verify(&self, token: &str, leeway: Duration) -> Result<Grant> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("token is not a compact JWS");
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .context("decode token signature")?;
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key());
        public
            .verify(
                format!("{header}.{payload}").as_bytes(),
                signature.as_slice(),
            )
            .map_err(|_| anyhow!("token signature does not verify with the refkbs key"))?;
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(payload)
                .context("decode token claims")?,
        )
        .context("parse token claims")?;
        let exp = claims["exp"]
            .as_u64()
            .ok_or_else(|| anyhow!("token has no exp"))?;
        if exp.saturating_add(leeway.as_secs()) < unix_now() {
            bail!("token expired at {exp}");
        }
        let evidence = &claims["submods"]["cpu0"][ANNOTATED_EVIDENCE];
        let tee_pubkey =
            serde_json::from_value(evidence["runtime_data_claims"]["tee-pubkey"].clone())
                .context("token has no runtime_data_claims.tee-pubkey")?;
        let tee = evidence
            .as_object()
            .into_iter()
            .flat_map(|map| map.keys())
            .filter(|key| !NON_TEE_CLAIMS.contains(&key.as_str()))
            .find_map(|key| serde_json::from_value(Value::String(key.clone())).ok())
            .ok_or_else(|| anyhow!("token names no TEE"))?;
        Ok(Grant { tee, tee_pubkey })
    }
}

/// The serde (wire) name of a TEE, e.g. `az-snp-vtpm`.
pub fn tee_name(tee: Tee) -> String {
    match serde_json::to_value(tee) {
        Ok(Value::String(name)) => name,
        _ => format!("{tee:?}").to_lowercase(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kbs_types::Tee;
    use serde_json::json;

    use super::{tee_name, unix_now, Appraisal, Signer};

    #[test]
    fn issue_and_verify() {
        let signer = Signer::new().expect("signer");
        let appraisal = Appraisal {
            tee: Tee::AzSnpVtpm,
            tee_claims: json!({"svn": "1"}),
            report_data: "x",
            runtime_data_claims: json!({"nonce": "n", "additional-evidence": "",
                "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "a", "y": "b"}}),
        };
        let token = signer
            .issue(&appraisal, Duration::from_secs(60))
            .expect("issue");
        let grant = signer.verify(&token, Duration::ZERO).expect("verify");
        assert_eq!(grant.tee, Tee::AzSnpVtpm);
        assert!(Signer::new()
            .expect("other")
            .verify(&token, Duration::ZERO)
            .is_err());
        // Issued already past its `exp` (a lifetime of -2 s): refused, unless
        // within the leeway.
        let expired = signer.issue_at(&appraisal, unix_now() - 2).expect("issue");
        assert!(signer.verify(&expired, Duration::ZERO).is_err());
        assert!(signer.verify(&expired, Duration::from_secs(60)).is_ok());
        assert_eq!(tee_name(Tee::AzSnpVtpm), "az-snp-vtpm");
    }
}
