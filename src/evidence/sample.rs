// SPDX-License-Identifier: Apache-2.0
//! Trustee's `sample` TEE (kbs-protocol §4.1, §5): `{"svn":"1","report_data":
//! base64(digest)}`. No hardware and no signature, but the KBS does check
//! that `report_data` decodes to exactly the 48-byte binding digest.

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::Serialize;

use crate::binding::Binding;

#[derive(Serialize, Debug)]
pub struct SampleEvidence {
    svn: String,
    report_data: String,
}

pub fn evidence(binding: &Binding) -> SampleEvidence {
    SampleEvidence {
        svn: "1".to_owned(),
        report_data: STANDARD.encode(binding.digest()),
    }
}

#[cfg(test)]
mod tests {
    use super::evidence;
    use crate::binding::Binding;
    use crate::testvec::{jwk, NONCE, SAMPLE_REPORT_DATA};

    #[test]
    fn spec_vector_report_data() {
        let b = Binding::compute(NONCE, &jwk(), "").unwrap();
        assert_eq!(
            serde_json::to_string(&evidence(&b)).unwrap(),
            format!(r#"{{"svn":"1","report_data":"{SAMPLE_REPORT_DATA}"}}"#)
        );
    }
}
