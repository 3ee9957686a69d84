// SPDX-License-Identifier: Apache-2.0
//! The RCAR handshake endpoints, `POST /kbs/v0/auth` and `POST /kbs/v0/attest`
//! (kbs-protocol.md §1.2–§1.7, §3; Trustee `kbs/src/attestation/backend.rs`
//! `__auth` / `__attest`).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::header::HeaderMap;
use kbs_types::{Attestation, Challenge, Request, Tee};
use ring::digest::{digest, SHA384};
use serde_json::{json, Value};

use crate::problem::Problem;
use crate::reply::Reply;
use crate::session::{self, Session};
use crate::state::State;
use crate::token::Appraisal;
use crate::verifier;

/// `/auth`: version check, new session, challenge. With `nonce_mismatch` the
/// challenge carries a different nonce than the session (a fault knob).
pub fn auth(state: &State, body: &[u8], nonce_mismatch: bool) -> Reply {
    let request: Request = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            state.log(&format!("auth: deserialize Request: {e}"));
            return Problem::auth("deserialize Request").reply();
        }
    };
    if let Err(cause) = session::check_version(&state.version, &request.version) {
        state.log(&format!("auth: {cause}"));
        return Problem::auth(&cause).reply();
    }
    match new_session(state, request, nonce_mismatch) {
        Ok(reply) => reply,
        Err(e) => {
            state.log(&format!("auth: {e:#}"));
            Problem::auth(&format!("{e:#}")).reply()
        }
    }
}

fn new_session(state: &State, request: Request, nonce_mismatch: bool) -> Result<Reply> {
    let id = session::new_id(&state.rng)?;
    let nonce = session::new_nonce(&state.rng)?;
    let sent = if nonce_mismatch {
        session::new_nonce(&state.rng)?
    } else {
        nonce.clone()
    };
    let session = Session {
        request,
        nonce,
        expires: std::time::SystemTime::now() + state.session_timeout,
        token: None,
    };
    let cookie = session.cookie(&id);
    state.sessions().insert(id, session);
    let challenge = Challenge {
        nonce: sent,
        extra_params: Value::String(String::new()),
    };
    Ok(Reply::json(serde_json::to_vec(&challenge)?).header("set-cookie", cookie))
}

/// `/attest`: every failure is the same opaque AttestationError; the cause is logged.
pub fn attest(state: &State, headers: &HeaderMap, body: &[u8]) -> Reply {
    match try_attest(state, headers, body) {
        Ok(reply) => reply,
        Err(e) => {
            state.log(&format!("attest: {e:#}"));
            Problem::attest().reply()
        }
    }
}

fn try_attest(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Reply> {
    let id = session::cookie_id(headers).ok_or_else(|| anyhow!("cookie not found"))?;
    let attestation: Attestation =
        serde_json::from_slice(body).context("deserialize Attestation")?;
    let mut sessions = state.sessions();
    let session = sessions
        .get(&id)
        .ok_or_else(|| anyhow!("session {id} not found or expired"))?;
    if let Some(token) = &session.token {
        return token_reply(token, session.cookie(&id));
    }
    if attestation.runtime_data.nonce != session.nonce {
        bail!("runtime-data nonce does not match the session nonce");
    }
    let tee = session.request.tee;
    if let Some(init_data) = &attestation.init_data {
        if init_data.format != "toml" {
            bail!("Unsupported initdata format {:?}", init_data.format);
        }
    }
    let additional = &attestation.tee_evidence.additional_evidence;
    if !additional.is_empty() {
        let devices: HashMap<Tee, Value> =
            serde_json::from_str(additional).context("parse additional evidence")?;
        if !devices.is_empty() {
            bail!("additional (device) evidence is not supported by refkbs");
        }
    }

    // §3.2: SHA-384 over JCS of the runtime data as the KBS re-serializes it.
    let runtime_data = json!({
        "additional-evidence": additional,
        "nonce": session.nonce,
        "tee-pubkey": attestation.runtime_data.tee_pubkey,
    });
    let canonical =
        serde_json_canonicalizer::to_vec(&runtime_data).context("canonicalize runtime data")?;
    let mut report_data = [0u8; 48];
    report_data.copy_from_slice(digest(&SHA384, &canonical).as_ref());

    let tee_claims = verifier::verify(
        tee,
        &attestation.tee_evidence.primary_evidence,
        &report_data,
        &state.roots,
    )
    .with_context(|| format!("verify {tee:?} evidence"))?;
    let encoded = STANDARD.encode(report_data);
    let appraisal = Appraisal {
        tee,
        tee_claims,
        report_data: &encoded,
        runtime_data_claims: runtime_data,
    };
    let token = state.signer.issue(&appraisal, state.token_lifetime)?;
    state.token_issued(&token);
    session.token = Some(token.clone());
    token_reply(&token, session.cookie(&id))
}

fn token_reply(token: &str, cookie: String) -> Result<Reply> {
    let body = serde_json::to_vec(&json!({ "token": token }))?;
    Ok(Reply::json(body).header("set-cookie", cookie))
}
