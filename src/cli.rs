// SPDX-License-Identifier: Apache-2.0
//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::evidence::{Platform, TeeOptions};
use crate::http::TransportConfig;
use crate::resource::ResourcePath;

/// Attestation agent for confidential VMs: proves to a Trustee KBS that it
/// runs in a genuine TEE and fetches the secrets the KBS releases for it.
#[derive(Parser)]
#[command(
    name = "cvm-attest",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Logs go to stderr; stdout only carries what a command prints on purpose.\n\
Exit codes: 0 done, 1 failure, 2 bad arguments, 3 the KBS refused, 4 the KBS unreachable or failing,\n\
5 no usable TEE (`cvm-attest probe` says why)."
)]
pub struct Cli {
    /// More detail on stderr: -v debug, -vv trace, -vvv also the libraries' (HTTP, TLS) debug output
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Logging")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Logging"
    )]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Attest once and fetch one or more resources in that one session
    #[command(after_help = "Examples:\n  \
cvm-attest get --kbs https://kbs.example --kbs-ca ca.pem default/luks/root -o /run/root.key\n  \
cvm-attest get --kbs https://kbs.example default/tls/cert default/tls/key -o /run/tls\n\n\
With one resource the secret goes to --output FILE, or to stdout when stdout is neither a\n\
terminal nor the journal (--output - forces stdout). With several, --output names a directory that receives\n\
DIR/<repo>/<type>/<tag> for each. Files are created with mode 0600, all or none.")]
    Get(GetArgs),
    /// Print the Attestation body the agent would send for a nonce (no KBS traffic)
    Evidence(EvidenceArgs),
    /// Show which TEE interfaces this guest offers, whether each works, and the platform chosen
    Probe(ProbeArgs),
    /// Decode a raw SNP report, TDX quote (v4/v5) or Azure HCL report, found by its contents
    Decode(DecodeArgs),
    /// Fetch and deliver every configured secret (what the boot units run)
    #[command(
        after_help = "Configuration: /etc/cvm-attest/config.toml, then config.d/*.toml in lexical order,\n\
then the kernel command line (cvm_attest.*, and rd.cvm_attest.* in the initramfs), then these flags."
    )]
    Run(RunArgs),
    /// Wipe the crypttab key files of configured volumes that are open now
    #[command(
        after_help = "systemd-cryptsetup reads /run/cryptsetup-keys.d/<volume>.key once, when it opens the\n\
volume. The initramfs unit runs this when it stops, before switch-root; `run` does the same\n\
for the volumes it finds open."
    )]
    Cleanup(ConfigArgs),
}

/// Where the configuration comes from (`run` and `cleanup`).
#[derive(Args)]
pub struct ConfigArgs {
    /// Configuration file (drop-ins are read from config.d beside it) [default: /etc/cvm-attest/config.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run as the initramfs unit (rd.cvm_attest.* keys apply); implied by /etc/initrd-release
    #[arg(long)]
    pub initrd: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: ConfigArgs,
    /// KBS base URL, tried in the order given; replaces the configured list
    #[arg(long, value_name = "URL")]
    pub kbs: Vec<String>,
    /// CA certificate(s) (PEM) the KBS certificate must chain to
    #[arg(long, value_name = "PEM")]
    pub kbs_ca: Option<PathBuf>,
    /// Allow a plain http:// KBS URL (tests only)
    #[arg(long)]
    pub insecure_http: bool,
    /// TEE whose evidence to present (default: configured, else detected)
    #[arg(long, value_enum)]
    pub tee: Option<Platform>,
    /// Deadline for the whole run, retries included
    #[arg(long, value_name = "SECS", value_parser = secs)]
    pub timeout: Option<Duration>,
}

#[derive(Args)]
pub struct DecodeArgs {
    /// The report, quote or HCL report (raw bytes)
    pub file: PathBuf,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Verify an SNP report's signature with this VCEK (DER or PEM)
    #[arg(long, value_name = "CERT")]
    pub vcek: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// TPM Command Transmission Interface [default: device:/dev/tpmrm0]
    #[arg(long, value_name = "TCTI", value_parser = tcti)]
    pub tcti: Option<String>,
}

#[derive(Args)]
pub struct KbsArgs {
    /// KBS base URL, e.g. https://kbs.example:8080
    #[arg(long, value_name = "URL")]
    pub kbs: String,
    /// CA certificate(s) (PEM) the KBS certificate must chain to; default: the system roots
    #[arg(long, value_name = "PEM")]
    pub kbs_ca: Option<PathBuf>,
    /// Allow a plain http:// KBS URL (tests only: the session cookie travels unprotected)
    #[arg(long)]
    pub insecure_http: bool,
    /// Deadline for the whole exchange, retries included
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = secs)]
    pub timeout: Duration,
    /// Limit for establishing one connection
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    pub connect_timeout: Duration,
    /// Limit for one request and its response
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    pub request_timeout: Duration,
}

impl KbsArgs {
    pub fn transport(&self) -> TransportConfig {
        TransportConfig {
            url: self.kbs.clone(),
            ca: self.kbs_ca.clone(),
            insecure_http: self.insecure_http,
            deadline: self.timeout,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        }
    }
}

/// Which TEE, and where TPM and IMDS evidence comes from.
#[derive(Args)]
pub struct TeeArgs {
    /// TEE whose evidence to present (default: detect); `tpm` and `sample` only when named
    #[arg(long, value_enum)]
    pub tee: Option<Platform>,
    /// TPM device, as a device TCTI [default: device:/dev/tpmrm0]
    #[arg(long, value_name = "TCTI", value_parser = tcti)]
    pub tcti: Option<String>,
    /// Persistent handle of the attestation key for --tee tpm [default: 0x81010002, or a new AK under the EK]
    #[arg(long, value_name = "HANDLE", value_parser = handle)]
    pub ak_handle: Option<u32>,
    /// Azure Instance Metadata Service base URL
    #[arg(long, value_name = "URL", default_value = crate::imds::DEFAULT_URL)]
    pub imds_url: String,
    /// Time the Azure paravisor gets to refresh the HCL report
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs)]
    pub hcl_timeout: Duration,
}

impl TeeArgs {
    pub fn options(&self, deadline: Duration) -> TeeOptions {
        TeeOptions {
            tcti: self.tcti.clone().unwrap_or_else(crate::tpm::default_tcti),
            ak_handle: self.ak_handle,
            imds: self.imds_url.clone(),
            imds_deadline: deadline,
            hcl_timeout: self.hcl_timeout,
        }
    }
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub kbs: KbsArgs,
    #[command(flatten)]
    pub tee: TeeArgs,
    /// Resources as repo/type/tag or kbs:///repo/type/tag
    #[arg(required = true, value_name = "RESOURCE")]
    pub resources: Vec<ResourcePath>,
    /// File for one resource, directory for several, `-` for stdout
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub tee: TeeArgs,
    /// Challenge nonce to bind, verbatim (default: 32 random bytes in base64, like the KBS)
    #[arg(long)]
    pub nonce: Option<String>,
    /// Deadline for IMDS requests, retries included
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs)]
    pub timeout: Duration,
}

fn handle(s: &str) -> Result<u32, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u32::from_str_radix(digits, 16)
        .map_err(|_| format!("'{s}' is not a hex handle like 0x81010002"))
}

fn tcti(s: &str) -> Result<String, String> {
    crate::tpm::device_path(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    // Below a tenth of a second nothing can finish.
    if !(v.is_finite() && (0.1..=86_400.0).contains(&v)) {
        return Err(format!(
            "'{s}' seconds is out of range (0.1 <= SECS <= 86400)"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::{secs, Cli};
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds() {
        assert_eq!(secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(secs("0").is_err());
        assert!(secs("0.0001").unwrap_err().contains("0.1 <= SECS"));
        assert_eq!(secs("0.1"), Ok(Duration::from_millis(100)));
        assert!(secs("-3").is_err());
        assert!(secs("ten").unwrap_err().contains("not a number"));
    }
}
