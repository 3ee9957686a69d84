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
    use kbs_types::TeePubKey;

    #[test]
    fn spec_vector_report_data() {
        let key = TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWcoGA".into(),
            y: "0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs".into(),
        };
        let b = Binding::compute("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &key, "").unwrap();
        assert_eq!(
            serde_json::to_string(&evidence(&b)).unwrap(),
            r#"{"svn":"1","report_data":"VGQ4LAFpv6zXtTgBRr7ZWYV+2V9WvThjgV9PKwBgtdibX77WMU3ELrTgA5o4x6mn"}"#
        );
    }
}
