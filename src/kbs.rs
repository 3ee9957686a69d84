// SPDX-License-Identifier: Apache-2.0
//! The RCAR session with a Trustee KBS, protocol 0.4.0 (kbs-protocol §1).
//!
//! `POST /kbs/v0/auth` (Request → Challenge + `kbs-session-id` cookie), then
//! `POST /kbs/v0/attest` (Attestation → token), then one
//! `GET /kbs/v0/resource/<repo>/<type>/<tag>` per resource, all concurrently
//! inside the one attested session. Wire types are kbs-types 0.18, except the
//! resource response, whose `protected` member must stay the received string
//! (see `jwe.rs`). A fresh handshake is made, a bounded number of times, only
//! when the KBS says the session or token is gone; a policy denial, a missing
//! resource or a refused key fail at once.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Error, Result};
use futures_util::future::{join, join_all};
use kbs_types::{Attestation, Challenge, CompositeEvidence, Request, RuntimeData, TeePubKey};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::binding::Binding;
use crate::evidence::{Platform, TeeOptions};
use crate::http::{Reply, Transport};
use crate::jwe::JweResponse;
use crate::problem::{describe_body, KbsError, Problem};
use crate::resource::ResourcePath;
use crate::teekey::TeeKey;

/// The only protocol version the Trustee KBS accepts (`=0.4.0`).
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// Fresh sessions made when the KBS says ours is gone.
const MAX_REHANDSHAKES: u32 = 2;
/// Whole handshakes tried, with backoff between them, when the KBS rejects an
/// attestation or fails for now (kbs-protocol.md §6; guest-components: 5).
const ATTEST_TRIES: u32 = 5;
/// Turns of the runtime given to the auth request before the key's public
/// point is computed: on loopback three are enough to connect and write it;
/// over a network the arithmetic then overlaps the connection's round trip.
const SEND_TURNS: usize = 3;

/// One fetched secret.
pub struct Fetched {
    pub path: ResourcePath,
    pub data: Zeroizing<Vec<u8>>,
}

/// An attested session: the cookie is its only credential on the wire.
struct Session {
    cookie: Zeroizing<String>,
}

/// `{"token": …}`: only its presence is checked; the cookie carries the
/// session, and the token itself is never copied out of the reply buffer.
#[derive(Deserialize)]
struct TokenReply {
    #[allow(dead_code)]
    token: serde::de::IgnoredAny,
}

/// Where in the protocol a KBS refusal happened.
#[derive(Clone, Copy)]
enum Step<'a> {
    Auth,
    Attest,
    Resource(&'a ResourcePath),
}

/// The Request sent to `/kbs/v0/auth`.
pub fn auth_request(platform: Platform) -> Request {
    Request {
        version: PROTOCOL_VERSION.to_owned(),
        tee: platform.kbs_tee(),
        // Only SHA-384 is implemented; the KBS picks it for every TEE but SE.
        extra_params: serde_json::json!({ "supported-hash-algorithms": ["sha384"] }),
    }
}

/// The Attestation sent to `/kbs/v0/attest` for a challenge nonce.
pub async fn attestation(
    platform: Platform,
    options: &TeeOptions,
    tee_pubkey: TeePubKey,
    nonce: &str,
) -> Result<Attestation> {
    let additional_evidence = String::new();
    let binding = Binding::compute(nonce, &tee_pubkey, &additional_evidence)?;
    Ok(Attestation {
        init_data: None,
        runtime_data: RuntimeData {
            nonce: nonce.to_owned(),
            tee_pubkey,
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: platform.evidence(&binding, options).await?,
            additional_evidence,
        },
    })
}

pub struct Client<'a> {
    transport: &'a Transport,
    platform: Platform,
    options: &'a TeeOptions,
    key: TeeKey,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> Client<'a> {
    /// A client with a fresh TEE key for this run.
    pub fn new(
        transport: &'a Transport,
        platform: Platform,
        options: &'a TeeOptions,
    ) -> Result<Self> {
        Ok(Client {
            transport,
            platform,
            options,
            key: TeeKey::generate()?,
        })
    }

    /// Attests once and fetches every resource; all or nothing.
    pub async fn fetch_all(&self, paths: &[ResourcePath]) -> Result<Vec<Fetched>> {
        let required = vec![true; paths.len()];
        // With every resource required, any failure is already the Err.
        Ok(self
            .fetch_each(paths, &required)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Attests once and fetches every resource concurrently. A failure of a
    /// `required` resource fails the whole call at once (the others are
    /// logged); an optional one is returned in its slot.
    pub async fn fetch_each(
        &self,
        paths: &[ResourcePath],
        required: &[bool],
    ) -> Result<Vec<Result<Fetched>>> {
        let started = Instant::now();
        let mut session = self.attested_session().await?;
        let mut results: Vec<Option<Result<Fetched>>> = paths.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..paths.len()).collect();
        for round in 0..=MAX_REHANDSHAKES {
            let outcomes = join_all(pending.iter().map(|&i| self.fetch(&session, &paths[i]))).await;
            let (mut again, mut failures) = (Vec::new(), Vec::new());
            let mut gone = None;
            for (&i, outcome) in pending.iter().zip(outcomes) {
                match outcome {
                    Err(e)
                        if e.downcast_ref::<KbsError>()
                            .is_some_and(KbsError::rehandshake) =>
                    {
                        again.push(i);
                        gone = Some(e);
                    }
                    Err(e) if required[i] => failures.push(e),
                    other => results[i] = Some(other),
                }
            }
            if let Some(first) = report_failures(failures) {
                return Err(first);
            }
            let Some(gone) = gone else { break };
            // A token refused again by the KBS that issued it: its verifier
            // is misconfigured, and one fresh session was enough (§6).
            let token_again = round >= 1
                && matches!(
                    gone.downcast_ref::<KbsError>(),
                    Some(KbsError::TokenRejected)
                );
            if round == MAX_REHANDSHAKES || token_again {
                let gone = gone.context(format!("still refused after {round} fresh session(s)"));
                if again.iter().any(|&i| required[i]) {
                    return Err(gone);
                }
                for &i in &again {
                    results[i] = Some(Err(anyhow!("{gone:#}")));
                }
                break;
            }
            let transient = gone
                .downcast_ref::<KbsError>()
                .is_some_and(KbsError::retry_later);
            let what = format!(
                "{} resource(s) need a fresh session ({gone:#})",
                again.len()
            );
            if transient {
                // The KBS failed for now: back off before asking again.
                if !self.transport.pause(round, &what).await {
                    return Err(gone);
                }
            } else {
                log::warn!("{what}: attesting again");
            }
            session = self.attested_session().await?;
            pending = again;
        }
        let results: Vec<Result<Fetched>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("not fetched"))))
            .collect();
        log::info!(
            "fetched {} resource(s) in one attested session in {:.1} ms",
            results.iter().filter(|r| r.is_ok()).count(),
            ms(started.elapsed())
        );
        Ok(results)
    }

    /// Runs auth + attest, again after a backoff when the KBS rejects the
    /// attestation or fails for now (a session that expired between the two
    /// looks the same), up to `ATTEST_TRIES` handshakes within the deadline.
    async fn attested_session(&self) -> Result<Session> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.handshake().await {
                Err(e)
                    if tries < ATTEST_TRIES
                        && e.downcast_ref::<KbsError>()
                            .is_some_and(KbsError::retry_later)
                        && self
                            .transport
                            .pause(tries - 1, &format!("{e:#}; a fresh handshake"))
                            .await => {}
                other => return other,
            }
        }
    }

    async fn handshake(&self) -> Result<Session> {
        let tee = self.platform.name();
        let t = Instant::now();
        let request = serde_json::to_vec(&auth_request(self.platform))
            .context("serialize the auth request")?;
        let auth = self.transport.send(
            "authenticate",
            Method::POST,
            "/kbs/v0/auth",
            Some(&request),
            None,
        );
        // The key's public point, 0.2 ms of P-256 arithmetic, is computed
        // while the auth request is on its way: after a few turns of the
        // runtime, in which the connection is made and the request written.
        let public = async {
            for _ in 0..SEND_TURNS {
                tokio::task::yield_now().await;
            }
            self.key.public_jwk()
        };
        let (reply, tee_pubkey) = join(auth, public).await;
        let reply = self.expect_ok(reply?, Step::Auth)?;
        let challenge: Challenge =
            serde_json::from_slice(&reply.body).map_err(|_| malformed("challenge", &reply))?;
        check_hash_selection(&challenge)?;
        let cookie = reply
            .session_cookie
            .ok_or_else(|| anyhow!("the KBS challenge came without a kbs-session-id cookie"))?;
        log::info!(
            "auth: {} challenged TEE {tee} ({:.1} ms)",
            self.transport.base(),
            ms(t.elapsed())
        );

        let t = Instant::now();
        let body = attestation(self.platform, self.options, tee_pubkey, &challenge.nonce).await?;
        let body = serde_json::to_vec(&body).context("serialize the attestation")?;
        log::info!(
            "evidence: {tee} evidence bound to the challenge ({:.1} ms, {} bytes)",
            ms(t.elapsed()),
            body.len()
        );

        let t = Instant::now();
        let reply = self
            .transport
            .send(
                "attest",
                Method::POST,
                "/kbs/v0/attest",
                Some(&body),
                Some(&cookie),
            )
            .await?;
        let reply = self.expect_ok(reply, Step::Attest)?;
        serde_json::from_slice::<TokenReply>(&reply.body)
            .map_err(|_| malformed("attestation result", &reply))?;
        log::info!(
            "attest: the KBS accepted the {tee} evidence ({:.1} ms)",
            ms(t.elapsed())
        );
        Ok(Session {
            cookie: reply.session_cookie.unwrap_or(cookie),
        })
    }

    async fn fetch(&self, session: &Session, path: &ResourcePath) -> Result<Fetched> {
        let t = Instant::now();
        let url_path = format!("/kbs/v0/resource/{}", path.url_path());
        let reply = self
            .transport
            .send(
                "fetch a resource",
                Method::GET,
                &url_path,
                None,
                Some(&session.cookie),
            )
            .await?;
        let reply = self.expect_ok(reply, Step::Resource(path))?;
        let jwe: JweResponse = serde_json::from_slice(&reply.body)
            .map_err(|_| malformed(&format!("response for resource {path}"), &reply))?;
        let data = self
            .key
            .decrypt(&jwe)
            .with_context(|| format!("decrypt {path}"))?;
        log::info!(
            "resource {path}: {} bytes ({:.1} ms)",
            data.len(),
            ms(t.elapsed())
        );
        Ok(Fetched {
            path: path.clone(),
            data,
        })
    }

    /// Passes a 200 through; turns anything else into what the KBS meant.
    fn expect_ok(&self, reply: Reply, step: Step<'_>) -> Result<Reply> {
        if reply.status == StatusCode::OK {
            return Ok(reply);
        }
        Err(self.refusal(&reply, step).into())
    }

    fn refusal(&self, reply: &Reply, step: Step<'_>) -> KbsError {
        let tee = self.platform.name().to_owned();
        let what = match step {
            Step::Auth => "auth",
            Step::Attest => "attest",
            Step::Resource(_) => "resource",
        };
        let Some(p) = Problem::parse(&reply.body) else {
            return KbsError::Unexpected {
                status: reply.status.as_u16(),
                what,
                body: describe_body(&reply.body),
            };
        };
        match (p.kind.as_str(), step) {
            ("AttestationError", Step::Auth) if p.detail.contains("Version Mismatch") => {
                KbsError::VersionMismatch { detail: p.detail }
            }
            ("AttestationError", Step::Auth) => KbsError::AuthRejected {
                step: "auth",
                detail: p.detail,
            },
            ("AttestationError", _) => KbsError::AttestRejected { tee },
            ("TokenNotFound", _) => KbsError::SessionGone,
            ("TokenVerifierError", _) => KbsError::TokenRejected,
            ("PolicyDeny", Step::Resource(path)) => KbsError::PolicyDeny {
                resource: path.to_string(),
                tee,
            },
            ("PluginInternalError", Step::Resource(path)) => KbsError::ResourceMissing {
                resource: path.to_string(),
            },
            ("JweError", _) => KbsError::KeyRefused { detail: p.detail },
            ("PluginNotFound" | "InvalidRequestPath", _) => KbsError::NoEndpoint {
                url: self.transport.base().to_string(),
                what,
                kind: p.kind,
            },
            _ => KbsError::ServerFault {
                kind: p.kind,
                detail: p.detail,
            },
        }
    }
}

fn malformed(what: &str, reply: &Reply) -> KbsError {
    KbsError::Malformed {
        what: what.to_owned(),
        body: describe_body(&reply.body),
    }
}

/// The KBS names a hash only for SE; anything but SHA-384 is not ours.
fn check_hash_selection(challenge: &Challenge) -> Result<()> {
    match challenge
        .extra_params
        .get("selected-hash-algorithm")
        .and_then(|v| v.as_str())
    {
        None | Some("sha384") => Ok(()),
        Some(other) => bail!(
            "the KBS selected hash {other} for the binding; cvm-attest binds with sha384 only"
        ),
    }
}

/// Logs every failure but the first, which is returned.
fn report_failures(failures: Vec<Error>) -> Option<Error> {
    let count = failures.len();
    let mut iter = failures.into_iter();
    let first = iter.next()?;
    for other in iter {
        log::error!("{other:#}");
    }
    Some(if count > 1 {
        first.context(format!(
            "{count} resources failed (the others are logged above)"
        ))
    } else {
        first
    })
}

#[cfg(test)]
mod tests {
    use super::check_hash_selection;
    use kbs_types::Challenge;

    #[test]
    fn hash_selection() {
        for (extra, ok) in [
            (r#""""#, true),
            (r#"{"selected-hash-algorithm":"sha384"}"#, true),
            (r#"{"selected-hash-algorithm":"sha512"}"#, false),
        ] {
            let c: Challenge =
                serde_json::from_str(&format!(r#"{{"nonce":"n","extra-params":{extra}}}"#))
                    .unwrap();
            assert_eq!(check_hash_selection(&c).is_ok(), ok, "{extra}");
        }
    }
}
