// SPDX-License-Identifier: Apache-2.0
//! RCAR sessions and the `kbs-session-id` cookie (kbs-protocol.md §1.2, §1.4, §1.5;
//! Trustee `kbs/src/attestation/session.rs` and `backend.rs`).
//!
//! A session is created by `/auth` with an expiry fixed there (never extended),
//! becomes attested with a token on `/attest`, and is deleted when read after
//! its expiry.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::header::{HeaderMap, AUTHORIZATION, COOKIE};
use kbs_types::Request;
use ring::rand::{SecureRandom, SystemRandom};

pub const COOKIE_NAME: &str = "kbs-session-id";

/// Sessions are purged of expired entries when the map grows past this.
const PURGE_THRESHOLD: usize = 1024;

#[derive(Debug, Clone)]
pub struct Session {
    pub request: Request,
    pub nonce: String,
    pub expires: SystemTime,
    pub token: Option<String>,
}

impl Session {
    /// `Set-Cookie` value: only `Expires`, no Path or other attributes.
    pub fn cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE_NAME}={id}; Expires={}",
            httpdate::fmt_http_date(self.expires)
        )
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    pub fn insert(&mut self, id: String, session: Session) {
        if self.map.len() >= PURGE_THRESHOLD {
            let now = SystemTime::now();
            self.map.retain(|_, s| s.expires > now);
        }
        self.map.insert(id, session);
    }

    /// The live session `id`; an expired one is deleted (Trustee `SessionMap::get`).
    pub fn get(&mut self, id: &str) -> Option<&mut Session> {
        let expired = self.map.get(id)?.expires <= SystemTime::now();
        if expired {
            self.map.remove(id);
            return None;
        }
        self.map.get_mut(id)
    }

    /// Every session expires now; returns their tokens.
    pub fn expire_all(&mut self) -> Vec<String> {
        let tokens = self.map.values().filter_map(|s| s.token.clone()).collect();
        for session in self.map.values_mut() {
            session.expires = UNIX_EPOCH;
        }
        tokens
    }
}

/// A UUID v4 in simple form: 32 lowercase hex characters.
pub fn new_id(rng: &SystemRandom) -> Result<String> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)
        .map_err(|_| anyhow!("generate session id"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut id = String::with_capacity(32);
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    Ok(id)
}

/// Trustee `make_nonce`: 32 random bytes, base64 STANDARD with padding (44 chars).
pub fn new_nonce(rng: &SystemRandom) -> Result<String> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| anyhow!("generate nonce"))?;
    Ok(STANDARD.encode(bytes))
}

/// The `kbs-session-id` value from any `Cookie` header.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
}

/// The token of an `Authorization: Bearer <jwt>` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Semver core of a version: (major, minor, patch, pre-release), build metadata dropped.
fn parse_semver(text: &str) -> Option<(u64, u64, u64, &str)> {
    let (rest, build) = match text.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (text, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let identifiers_ok = |s: &str| {
        s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if pre.is_some_and(|p| !identifiers_ok(p)) || build.is_some_and(|b| !identifiers_ok(b)) {
        return None;
    }
    let number = |s: &str| -> Option<u64> {
        let leading_zero = s.len() > 1 && s.starts_with('0');
        if s.is_empty() || leading_zero || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let mut parts = core.split('.');
    let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        number(major)?,
        number(minor)?,
        number(patch)?,
        pre.unwrap_or(""),
    ))
}

/// Whether `text` is a valid semver version (for validating the configured one).
pub fn is_semver(text: &str) -> bool {
    parse_semver(text).is_some()
}

/// Trustee's `VersionReq "=<required>"` check; the error is the detail's cause.
pub fn check_version(required: &str, requested: &str) -> Result<(), String> {
    let ok = match (parse_semver(required), parse_semver(requested)) {
        (Some(want), Some(got)) => want == got,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "KBS Client Protocol Version Mismatch: expect ={required} while the request is {requested}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::{HeaderMap, HeaderValue, COOKIE};
    use ring::rand::SystemRandom;

    use super::{check_version, cookie_id, new_id, new_nonce};

    #[test]
    fn version_table() {
        let cases = [
            ("0.4.0", true),
            ("0.4.0+build.5", true),
            ("0.3.0", false),
            ("0.4.1", false),
            ("0.4.0-rc1", false),
            ("0.4", false),
            ("00.4.0", false),
            ("v0.4.0", false),
            (" 0.4.0", false),
            ("0.4.0+", false),
            ("", false),
        ];
        for (version, ok) in cases {
            assert_eq!(check_version("0.4.0", version).is_ok(), ok, "{version:?}");
        }
        assert_eq!(
            check_version("0.4.0", "0.3.0").unwrap_err(),
            "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0"
        );
    }

    #[test]
    fn ids_nonces_cookies() {
        let rng = SystemRandom::new();
        let id = new_id(&rng).expect("id");
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(new_nonce(&rng).expect("nonce").len(), 44);
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=b; kbs-session-id=abc ;c=d"),
        );
        assert_eq!(cookie_id(&headers).as_deref(), Some("abc"));
    }
}
