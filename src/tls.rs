// SPDX-License-Identifier: Apache-2.0
//! What a TLS failure with the KBS means, in an operator's words: the
//! rustls error found in reqwest's chain, mapped to what to check.

/// A TLS failure in an operator's words, with what to check, then rustls's.
pub fn cause(tls: &rustls::Error, pinned_ca: bool) -> String {
    use rustls::{CertificateError as Cert, Error, InvalidMessage};
    let what = match tls {
        Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "the server does not speak TLS: check the scheme and the port of the KBS URL".to_owned()
        }
        // rustls's own text shows the names in Debug form: not repeated.
        Error::InvalidCertificate(Cert::NotValidForNameContext { presented, .. }) => {
            let names: Vec<&str> = presented.iter().map(|n| san(n)).collect();
            return format!(
                "its certificate is valid only for {}, not for the host in the KBS URL: write \
                 the name the certificate holds, or reissue it",
                if names.is_empty() {
                    "no name".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        Error::InvalidCertificate(Cert::NotValidForName) => {
            "its certificate is not valid for the host in the KBS URL: write the name the \
             certificate holds, or reissue it"
                .to_owned()
        }
        Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "its certificate is outside its validity period: renew it, or check this VM's clock"
            .to_owned(),
        _ if pinned_ca => "check that the KBS certificate chains to the pinned CA \
                           (--kbs-ca, kbs.ca, cvm_attest.kbs_ca)"
            .to_owned(),
        _ => "check the KBS certificate against the system CAs, or pin the KBS CA \
              (--kbs-ca, kbs.ca, cvm_attest.kbs_ca)"
            .to_owned(),
    };
    format!("{what} ({tls})")
}

/// A subjectAltName as rustls presents it (`DnsName("kbs")`,
/// `IpAddress(10.0.0.1)`), bare.
fn san(presented: &str) -> &str {
    let dns = presented
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"));
    let ip = || {
        presented
            .strip_prefix("IpAddress(")
            .and_then(|n| n.strip_suffix(')'))
    };
    dns.or_else(ip).unwrap_or(presented)
}

/// The rustls error in a chain. io::Error wrappers (nested twice by the
/// connector) hide their payload from `source()`, so look inside them.
pub fn find<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = find(inner) {
            return Some(tls);
        }
    }
    err.source().and_then(find)
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_alt_names_read_bare() {
        assert_eq!(super::san("DnsName(\"kbs.example\")"), "kbs.example");
        assert_eq!(super::san("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(super::san("something else"), "something else");
    }
}
