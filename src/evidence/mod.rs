// SPDX-License-Identifier: Apache-2.0
//! Platforms: where evidence comes from. A closed enum, one file each.
//!
//! Each platform turns the binding (computed once, in `binding.rs`) into the
//! `primary_evidence` JSON its Trustee verifier takes (kbs-protocol §4).
//! Selection is explicit: `--tee` names the platform, and the `sample` test
//! TEE is only ever used when named; the agent never falls back to it.

mod sample;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::binding::Binding;

/// A TEE this agent can produce evidence for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// Trustee's `sample` test TEE: no hardware, no signature; for test KBSes only.
    Sample,
}

impl Platform {
    /// The platform named on the command line, or the one detected.
    pub fn select(chosen: Option<Platform>) -> Result<Platform> {
        match chosen {
            Some(p) => Ok(p),
            None => bail!(
                "no TEE selected: this build collects no hardware evidence yet (SEV-SNP, TDX and vTPM come next); \
                 pass --tee sample to attest with Trustee's test TEE against a KBS whose policy allows it"
            ),
        }
    }

    /// The `tee` value of the KBS Request.
    pub fn kbs_tee(self) -> kbs_types::Tee {
        match self {
            Platform::Sample => kbs_types::Tee::Sample,
        }
    }

    /// The name operators see (the KBS's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Sample => "sample",
        }
    }

    /// Collects evidence bound to `binding`.
    pub fn evidence(self, binding: &Binding) -> Result<Value> {
        let value = match self {
            Platform::Sample => serde_json::to_value(sample::evidence(binding)),
        };
        value.with_context(|| format!("serialize the {} evidence", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn nothing_is_chosen_silently() {
        let err = Platform::select(None).unwrap_err().to_string();
        assert!(err.contains("pass --tee sample"), "{err}");
        assert_eq!(
            Platform::select(Some(Platform::Sample)).unwrap(),
            Platform::Sample
        );
    }
}
