// SPDX-License-Identifier: Apache-2.0
//! `GET /kbs/v0/resource/<repo>/<type>/<tag>` (kbs-protocol.md §1.8): token,
//! token verification, policy, path check, file read, JWE — in Trustee's order
//! (`kbs/src/api_server.rs` `api`, `plugins/implementations/resource`).

use hyper::header::HeaderMap;

use crate::jwe;
use crate::problem::Problem;
use crate::reply::Reply;
use crate::session;
use crate::state::State;

/// Serves the resource at `path` (the request path after `resource/`, no query).
pub fn get(state: &State, headers: &HeaderMap, path: &str) -> Reply {
    match try_get(state, headers, path) {
        Ok(reply) => reply,
        Err(problem) => problem.reply(),
    }
}

fn try_get(state: &State, headers: &HeaderMap, path: &str) -> Result<Reply, Problem> {
    let token = session_token(state, headers)
        .or_else(|| session::bearer(headers))
        .ok_or(Problem::TokenNotFound)?;
    let grant = match state.signer.verify(&token, state.token_leeway) {
        Ok(_) if state.token_revoked(&token) => {
            state.log("resource: token expired by expire_sessions");
            return Err(Problem::TokenVerifier);
        }
        Ok(grant) => grant,
        Err(e) => {
            state.log(&format!("resource: verify token: {e:#}"));
            return Err(Problem::TokenVerifier);
        }
    };
    let segments: Vec<&str> = path.split('/').collect();
    if !state.policy.allows(grant.tee, &segments) {
        state.log(&format!(
            "resource: policy denies {path} to {:?}",
            grant.tee
        ));
        return Err(Problem::PolicyDeny);
    }
    // ResourceDesc: `^[A-Za-z0-9_-][A-Za-z0-9_.-]*` for each of repo/type/tag.
    if segments.len() != 3 || !segments.iter().all(|s| valid_segment(s)) {
        state.log(&format!("resource: invalid resource path {path:?}"));
        return Err(Problem::PluginInternal);
    }
    let file = state.resources.join(path);
    let plaintext = std::fs::read(&file).map_err(|e| {
        state.log(&format!(
            "resource not found: {path} ({}: {e})",
            file.display()
        ));
        Problem::PluginInternal
    })?;
    let body = jwe::encrypt(&grant.tee_pubkey, &plaintext).map_err(|e| {
        state.log(&format!("resource: JWE: {e:#}"));
        Problem::Jwe
    })?;
    Ok(Reply::json(body))
}

/// The token of the cookie's session if it is attested and unexpired.
fn session_token(state: &State, headers: &HeaderMap) -> Option<String> {
    let id = session::cookie_id(headers)?;
    state.sessions().get(&id)?.token.clone()
}

fn valid_segment(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    bytes.next().is_some_and(word) && bytes.all(|b| word(b) || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::valid_segment;

    #[test]
    fn segments() {
        for ok in ["default", "key", "a.b", "_x", "-", "A-9_.z"] {
            assert!(valid_segment(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a b", "a%2F", "ä"] {
            assert!(!valid_segment(bad), "{bad}");
        }
    }
}
