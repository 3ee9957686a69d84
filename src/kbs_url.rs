// SPDX-License-Identifier: Apache-2.0
//! The KBS URL, checked before anything is sent: credentials refused
//! without echoing them, a scheme, https unless plain http is allowed, a
//! host, and the base URL only.

use anyhow::{bail, Result};
use reqwest::Url;

/// Parses a URL; host names must be ASCII (no IDNA tables in the binary).
pub fn parse_url(what: &str, raw: &str) -> Result<Url> {
    Url::parse(raw).map_err(|e| {
        let hint = if raw.is_ascii() {
            ""
        } else {
            " (it is not ASCII: write an international host name in its ASCII (xn--) form)"
        };
        anyhow::anyhow!("parse {what} URL '{raw}': {e}{hint}")
    })
}

/// The host part of `raw` when it may carry `user[:password]@`: any `@`
/// counts, since a password may hold a `/`, `?` or `#` that would end the
/// authority early (and then be quoted by another message). A KBS base URL
/// has no other use for one.
fn credentials_host(raw: &str) -> Option<&str> {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let (_, after) = rest.rsplit_once('@')?;
    after.split(['/', '?', '#']).next()
}

/// Checks the KBS URL before anything is sent.
pub fn parse(raw: &str, insecure_http: bool) -> Result<Url> {
    // First, and never echoed: every other message quotes the URL, which
    // would carry the password into logs and STATUS=.
    if let Some(host) = credentials_host(raw) {
        let host = if host.is_empty() { "its host" } else { host };
        bail!(
            "the KBS URL for {host} names a user or password: the KBS takes no credentials in its URL; remove the 'user:password@' part"
        );
    }
    if raw.trim().is_empty() {
        bail!("the KBS URL is empty: give it, e.g. https://kbs.example:8080");
    }
    if raw.contains(char::is_whitespace) {
        bail!("KBS URL '{raw}' contains white space: remove it");
    }
    if !raw.contains("://") {
        bail!("KBS URL '{raw}' has no scheme: write https://{raw}");
    }
    let url = parse_url("KBS", raw)?;
    match url.scheme() {
        "https" => {}
        "http" if insecure_http => {
            log::warn!("using plain http to {url}: the session cookie and token travel unprotected (resources stay JWE-encrypted)");
        }
        "http" => {
            bail!("KBS URL '{raw}' is plain http: use https, or pass --insecure-http to allow it")
        }
        other => bail!("KBS URL '{raw}' has scheme '{other}': use https://"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("KBS URL '{raw}' names no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("KBS URL '{raw}' has a query or fragment: give the KBS base URL only");
    }
    if url.path().trim_end_matches('/').ends_with("/kbs/v0") {
        bail!("KBS URL '{raw}' ends in /kbs/v0: give the KBS base URL, without /kbs/v0");
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn url_checks() {
        assert!(parse("https://kbs.example:8080", false).is_ok());
        assert!(parse("https://kbs.example/prefix/", false).is_ok());
        assert!(parse("http://127.0.0.1:8080", true).is_ok());
        assert!(parse("https://xn--kbs-exmple-r5a.test", false).is_ok());
        for (raw, why) in [
            (
                "127.0.0.1:8080",
                "has no scheme: write https://127.0.0.1:8080",
            ),
            ("kbs.example", "has no scheme"),
            ("http://127.0.0.1:8080", "pass --insecure-http"),
            ("ftp://kbs.example", "scheme 'ftp'"),
            ("https://kbs.example/kbs/v0", "without /kbs/v0"),
            ("https://kbs.example/?a=b", "query or fragment"),
            (
                "https://user:pw@kbs.example",
                "for kbs.example names a user or password",
            ),
            (
                "https://token@kbs.example",
                "remove the 'user:password@' part",
            ),
            // Before the checks that quote the URL.
            (
                "user:pw@kbs.example",
                "for kbs.example names a user or password",
            ),
            (
                "https://u:pw@kbs.exämple/",
                "for kbs.exämple names a user or password",
            ),
            ("https://u:pw@/", "for its host names a user or password"),
            ("", "the KBS URL is empty"),
            ("https://kbs .example", "contains white space"),
            (
                "https://u:p/w@kbs.example:8080/x",
                "for kbs.example:8080 names a user or password",
            ),
            (
                "https://u:123?pw@kbs.example",
                "for kbs.example names a user or password",
            ),
            (
                "https://u:p#pw@kbs.example",
                "for kbs.example names a user or password",
            ),
            ("https://", "parse KBS URL"),
            (
                "https://kbs.exämple",
                "write an international host name in its ASCII (xn--) form",
            ),
        ] {
            let err = format!("{:#}", parse(raw, false).unwrap_err());
            assert!(err.contains(why), "{raw}: {err}");
            assert!(
                !err.contains("pw@") && !err.contains("token@") && !err.contains("p/w"),
                "{err}"
            );
        }
    }
}
