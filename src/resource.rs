// SPDX-License-Identifier: Apache-2.0
//! Resource paths: `repo/type/tag` or `kbs:///repo/type/tag`.
//!
//! The KBS resource plugin accepts exactly three segments, each matching
//! `^[A-Za-z0-9_-][A-Za-z0-9_.-]*$` (trustee `ResourceDesc::try_from`); any
//! other path comes back as an opaque 401, so it is refused here, before any
//! attestation, with the rule spelled out.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourcePath {
    pub repo: String,
    pub kind: String,
    pub tag: String,
}

impl ResourcePath {
    /// The path under `/kbs/v0/resource/`.
    pub fn url_path(&self) -> String {
        format!("{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.kind, self.tag)
    }
}

fn valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl FromStr for ResourcePath {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let path = if let Some(rest) = input.strip_prefix("kbs://") {
            rest.strip_prefix('/').ok_or_else(|| {
                format!("'{input}': a kbs:// resource URI names no host; write kbs:///repo/type/tag (three slashes)")
            })?
        } else if input.contains("://") {
            return Err(format!(
                "'{input}': only repo/type/tag and kbs:///repo/type/tag are accepted"
            ));
        } else {
            input
        };
        if path.starts_with('/') || path.ends_with('/') {
            let bare = path.trim_matches('/');
            return Err(format!(
                "'{input}' has a leading or trailing '/'; write {bare} or kbs:///{bare}"
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() != 3 {
            return Err(format!(
                "'{input}' has {} path segments; a KBS resource is repo/type/tag (e.g. default/luks/root)",
                segments.len()
            ));
        }
        if let Some(bad) = segments.iter().find(|s| !valid_segment(s)) {
            return Err(format!(
                "'{input}': segment '{bad}' is not accepted by the KBS (letters, digits, '_', '-', '.'; not starting with '.')"
            ));
        }
        Ok(ResourcePath {
            repo: segments[0].to_owned(),
            kind: segments[1].to_owned(),
            tag: segments[2].to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ResourcePath;

    #[test]
    fn accepted_forms() {
        for (input, shown) in [
            ("default/luks/root", "default/luks/root"),
            ("kbs:///default/luks/root", "default/luks/root"),
            ("my-repo/tls_cert/server.pem", "my-repo/tls_cert/server.pem"),
            ("_/-/a.b", "_/-/a.b"),
        ] {
            let p: ResourcePath = input.parse().unwrap();
            assert_eq!(p.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn refused_forms_say_why() {
        for (input, why) in [
            ("default/luks", "has 2 path segments"),
            ("default/luks/root/extra", "has 4 path segments"),
            (
                "/default/luks/root",
                "has a leading or trailing '/'; write default/luks/root or kbs:///default/luks/root",
            ),
            ("default/luks/root/", "has a leading or trailing '/'"),
            ("kbs:////default/luks/root", "has a leading or trailing '/'"),
            ("default//root", "segment ''"),
            ("default/luks/.hidden", "segment '.hidden'"),
            ("default/lu ks/root", "segment 'lu ks'"),
            ("default/luks/r%C3%A9", "segment 'r%C3%A9'"),
            ("kbs://host/default/luks/root", "names no host"),
            ("https://kbs/default/luks/root", "only repo/type/tag"),
        ] {
            let err = input.parse::<ResourcePath>().unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
        }
    }
}
