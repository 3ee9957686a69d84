// SPDX-License-Identifier: Apache-2.0
//! Resource policy: a tiny stand-in for Trustee's OPA resource policy
//! (kbs-protocol.md §1.8 step 3, §7.2).
//!
//! Ordered rules, first match wins. A rule names an effect, a TEE (or `*`) and a
//! `repo/type/tag` pattern whose segments are literals or `*`. When a policy has
//! rules and none matches, access is denied (Trustee's `default allow = false`);
//! a policy without rules allows everything (Trustee's `allow_all.rego`).
//! [`Policy::trustee_default`] is Trustee's `default.rego`: every TEE but
//! `sample` (kbs-protocol.md §5).
//!
//! Text format (`--policy FILE`): one rule per line, `allow <tee|*> <repo>/<type>/<tag>`
//! or `deny ...`; `#` starts a comment; blank lines are ignored.

use std::path::Path;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context as _, Result};
use kbs_types::Tee;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One policy rule; `None` fields are wildcards (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub effect: Effect,
    pub tee: Option<Tee>,
    pub path: [Option<String>; 3],
}

impl Rule {
    /// `Rule::new(Effect::Allow, "sample", "default/*/*")`.
    pub fn new(effect: Effect, tee: &str, path: &str) -> Result<Rule> {
        let tee = match tee {
            "*" => None,
            name => Some(
                serde_json::from_value::<Tee>(serde_json::Value::String(name.to_string()))
                    .map_err(|_| anyhow!("unknown TEE {name:?}"))?,
            ),
        };
        let segments: Vec<&str> = path.split('/').collect();
        let [repo, kind, tag] = segments.as_slice() else {
            bail!("resource pattern {path:?} is not <repo>/<type>/<tag>");
        };
        let segment = |s: &str| -> Result<Option<String>> {
            match s {
                "*" => Ok(None),
                "" => bail!("empty segment in resource pattern {path:?}"),
                literal => Ok(Some(literal.to_string())),
            }
        };
        Ok(Rule {
            effect,
            tee,
            path: [segment(repo)?, segment(kind)?, segment(tag)?],
        })
    }

    pub fn allow(tee: &str, path: &str) -> Result<Rule> {
        Rule::new(Effect::Allow, tee, path)
    }

    pub fn deny(tee: &str, path: &str) -> Result<Rule> {
        Rule::new(Effect::Deny, tee, path)
    }

    fn matches(&self, tee: Tee, path: &[&str]) -> bool {
        let tee_matches = self.tee.is_none() || self.tee == Some(tee);
        tee_matches
            && path.len() == 3
            && self
                .path
                .iter()
                .zip(path)
                .all(|(pattern, seg)| pattern.is_none() || pattern.as_deref() == Some(*seg))
    }
}

impl FromStr for Rule {
    type Err = anyhow::Error;

    /// Parses `allow <tee|*> <repo>/<type>/<tag>` or `deny ...`.
    fn from_str(line: &str) -> Result<Rule> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [effect, tee, path] = words.as_slice() else {
            bail!("expected `allow|deny <tee|*> <repo>/<type>/<tag>`, got {line:?}");
        };
        let effect = match *effect {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => bail!("unknown effect {other:?} (expected allow or deny)"),
        };
        Rule::new(effect, tee, path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// No rules: every attested TEE may read every resource.
    pub fn allow_all() -> Policy {
        Policy { rules: Vec::new() }
    }

    /// Trustee's default resource policy: any resource, to any TEE whose
    /// evidence is not `sample`.
    pub fn trustee_default() -> Policy {
        Policy::from_rules(vec![
            Rule::deny("sample", "*/*/*").expect("a valid rule"),
            Rule::allow("*", "*/*/*").expect("a valid rule"),
        ])
    }

    pub fn from_rules(rules: Vec<Rule>) -> Policy {
        Policy { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Parses the text format; errors name `origin` and the 1-based line.
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let rule = line
                .parse::<Rule>()
                .with_context(|| format!("parse policy {origin} line {}", index + 1))?;
            rules.push(rule);
        }
        Ok(Policy { rules })
    }

    pub fn from_file(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read policy {}", path.display()))?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Whether `tee` may read the resource at `path` (the split resource path).
    pub fn allows(&self, tee: Tee, path: &[&str]) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        self.rules
            .iter()
            .find(|rule| rule.matches(tee, path))
            .is_some_and(|rule| rule.effect == Effect::Allow)
    }
}

#[cfg(test)]
mod tests {
    use kbs_types::Tee;

    use super::{Policy, Rule};

    #[test]
    fn matching_table() {
        let policy = Policy::parse(
            "# comment\n\
             deny  *      default/key/secret   # trailing comment\n\
             allow sample default/*/*\n\
             \n\
             allow snp    other/luks/root\n",
            "test",
        )
        .expect("parse");
        let cases: &[(Tee, &str, bool)] = &[
            (Tee::Sample, "default/key/test", true),
            (Tee::Sample, "default/key/secret", false),
            (Tee::Snp, "default/key/test", false),
            (Tee::Snp, "other/luks/root", true),
            (Tee::Sample, "other/luks/root", false),
            (Tee::Tdx, "other/luks/root", false),
            (Tee::Sample, "default/key", false),
            (Tee::Sample, "default/key/a/b", false),
        ];
        for (tee, path, want) in cases {
            let segs: Vec<&str> = path.split('/').collect();
            assert_eq!(policy.allows(*tee, &segs), *want, "{tee:?} {path}");
        }
        assert!(Policy::allow_all().allows(Tee::Tdx, &["a", "b", "c"]));
        let rules = vec![Rule::allow("*", "a/*/c").expect("rule")];
        let policy = Policy::from_rules(rules);
        assert!(policy.allows(Tee::Tdx, &["a", "b", "c"]));
        assert!(!policy.allows(Tee::Tdx, &["a", "b", "d"]));
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let cases = [
            ("allow sample default/key/x\npermit * a/b/c\n", "line 2"),
            ("allow nosuchtee a/b/c", "line 1"),
            ("\n\nallow * a/b", "line 3"),
            ("allow * a//c", "line 1"),
            ("allow *", "line 1"),
        ];
        for (text, line) in cases {
            let err = Policy::parse(text, "/etc/p.txt").expect_err(text);
            let msg = format!("{err:#}");
            assert!(msg.contains("/etc/p.txt"), "{msg}");
            assert!(msg.contains(line), "{msg}");
        }
    }
}
