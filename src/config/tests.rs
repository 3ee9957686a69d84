// SPDX-License-Identifier: Apache-2.0
//! Table tests of `load`: layers, precedence, and every refusal with its
//! file, line and key path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::accounts::Accounts;
use super::{load, Config, ConfigError, Overrides, Sources};
use crate::evidence::Platform;
use crate::sink::{Action, KeyKind, Secret, Sink, UnitAction};

/// A scratch `/etc/cvm-attest` under the temp dir, removed on drop.
struct Etc(PathBuf);

impl Etc {
    fn new(test: &str) -> Etc {
        let dir =
            std::env::temp_dir().join(format!("cvm-attest-config-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("config.d")).unwrap();
        Etc(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("config.toml")
    }

    fn write(&self, name: &str, text: &str) -> &Etc {
        std::fs::write(self.0.join(name), text).unwrap();
        self
    }

    fn load_with(
        &self,
        cmdline: &str,
        initrd: bool,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file = self.file();
        let dropins = self.0.join("config.d");
        let sources = Sources {
            file: &file,
            file_given: false,
            dropins: &dropins,
            cmdline,
            initrd,
            secrets_only: false,
        };
        load(&sources, overrides)
    }

    fn load(&self, cmdline: &str) -> Result<Config, ConfigError> {
        self.load_with(cmdline, false, &Overrides::default())
    }
}

impl Drop for Etc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn urls(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn secret(name: &str, resource: &str, sinks: Vec<Sink>) -> Secret {
    Secret {
        name: name.into(),
        resource: resource.parse().unwrap(),
        required: true,
        sinks,
        units: Vec::new(),
    }
}

fn file_sink(path: &str) -> Sink {
    Sink::File {
        path: path.into(),
        mode: 0o400,
        uid: None,
        gid: None,
    }
}

#[test]
fn defaults_without_a_file() {
    let etc = Etc::new("defaults");
    let config = etc.load("ro cvm_attest.kbs=https://kbs.example").unwrap();
    let expected = Config {
        kbs: urls(&["https://kbs.example"]),
        ..Config::defaults()
    };
    assert_eq!(config, expected);
    assert!(config.enabled);
    assert_eq!(config.timeout, Duration::from_secs(300));
    assert_eq!(config.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.secrets_dir, Path::new("/run/cvm-attest"));
    assert_eq!(config.keyring, "cvm-attest");

    // Nothing names a KBS: say where to.
    let err = etc.load("ro").unwrap_err().to_string();
    assert!(
        err.starts_with("no KBS URL is configured: set kbs.url in "),
        "{err}"
    );
    assert!(err.contains(&etc.file().display().to_string()), "{err}");
}

const FULL: &str = r#"enable = true
[kbs]
url = ["https://kbs-a.example:8080", "https://kbs-b.example:8080"]
ca = "/etc/cvm-attest/kbs-ca.pem"
insecure-http = false
timeout = 300
connect-timeout = 10
request-timeout = 30
[tee]
type = "snp"
tcti = "device:/dev/tpmrm0"
ak-handle = "0x81010002"
imds-url = "http://169.254.169.254"
hcl-timeout = 10
[delivery]
secrets-dir = "/run/cvm-attest"
keyring = "cvm-attest"

[[secret]]
name = "root-luks"
resource = "default/luks/root"
required = true
reload = ["nginx.service"]
restart = ["sshd.service"]
reload-or-restart = []
  [[secret.file]]
  path = "luks/root.key"
  mode = "0400"
  owner = "root"
  group = "root"
  [[secret.credential]]
  name = "tls.key"
  [[secret.cryptsetup]]
  volume = "root"
  [[secret.keyring]]
  type = "logon"
  description = "cvm:root"
  keyring = "cvm-attest"
  permissions = "0x3f010000"
  timeout = 600

[[secret]]
name = "tls@web"
resource = "kbs:///default/tls/cert"
required = false
  [[secret.file]]
  path = "/run/nginx/tls.pem"
  mode = 0o440
  owner = 0
  group = "0"
  [[secret.credential]]
  [[secret.keyring]]
  type = "user"
  description = "tls"
"#;

#[test]
fn the_full_example() {
    let etc = Etc::new("full");
    etc.write("config.toml", FULL);
    let config = etc.load("").unwrap();
    let expected = Config {
        enabled: true,
        disabled_by: None,
        kbs: urls(&["https://kbs-a.example:8080", "https://kbs-b.example:8080"]),
        kbs_ca: Some("/etc/cvm-attest/kbs-ca.pem".into()),
        insecure_http: false,
        tee: Some(Platform::Snp),
        tcti: Some("device:/dev/tpmrm0".into()),
        ak_handle: Some(0x8101_0002),
        imds_url: Some("http://169.254.169.254".into()),
        hcl_timeout: Some(Duration::from_secs(10)),
        timeout: Duration::from_secs(300),
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(30),
        secrets_dir: "/run/cvm-attest".into(),
        keyring: "cvm-attest".into(),
        secrets: vec![
            Secret {
                units: vec![
                    UnitAction {
                        unit: "nginx.service".into(),
                        action: Action::Reload,
                    },
                    UnitAction {
                        unit: "sshd.service".into(),
                        action: Action::Restart,
                    },
                ],
                ..secret(
                    "root-luks",
                    "default/luks/root",
                    vec![
                        Sink::File {
                            path: "/run/cvm-attest/luks/root.key".into(),
                            mode: 0o400,
                            uid: Some(0),
                            gid: Some(0),
                        },
                        Sink::Credential {
                            name: "tls.key".into(),
                        },
                        Sink::Cryptsetup {
                            volume: "root".into(),
                        },
                        Sink::Keyring {
                            kind: KeyKind::Logon,
                            description: "cvm:root".into(),
                            keyring: "cvm-attest".into(),
                            perm: 0x3f01_0000,
                            timeout: Some(Duration::from_secs(600)),
                        },
                    ],
                )
            },
            Secret {
                required: false,
                ..secret(
                    "tls@web",
                    "default/tls/cert",
                    vec![
                        Sink::File {
                            path: "/run/nginx/tls.pem".into(),
                            mode: 0o440,
                            uid: Some(0),
                            gid: Some(0),
                        },
                        Sink::Credential {
                            name: "tls@web".into(),
                        },
                        Sink::Keyring {
                            kind: KeyKind::User,
                            description: "tls".into(),
                            keyring: "cvm-attest".into(),
                            perm: 0x3f01_0000,
                            timeout: None,
                        },
                    ],
                )
            },
        ],
    };
    assert_eq!(config, expected);
}

#[test]
fn dropins_override_scalars_and_replace_secrets() {
    let etc = Etc::new("dropins");
    etc.write(
        "config.toml",
        "[kbs]\nurl = [\"https://a\", \"https://b\"]\ntimeout = 100\n\
         [delivery]\nkeyring = \"base\"\n\
         [[secret]]\nname = \"one\"\nresource = \"r/t/one\"\n[[secret.file]]\npath = \"one.key\"\n\
         [[secret]]\nname = \"two\"\nresource = \"r/t/two\"\n[[secret.file]]\npath = \"two.key\"\n",
    )
    // Lexical order: 10 before 20; not-.toml files are not read.
    .write(
        "config.d/20-late.toml",
        "[kbs]\nurl = \"https://c\"\n[delivery]\nsecrets-dir = \"/run/elsewhere\"\n",
    )
    .write(
        "config.d/10-early.toml",
        "[kbs]\ntimeout = 200\nurl = \"https://x\"\n\
         [[secret]]\nname = \"one\"\nresource = \"r/t/uno\"\nrequired = false\n\
         [[secret.keyring]]\ntype = \"user\"\ndescription = \"cvm:one\"\n",
    )
    .write("config.d/15-ignored.toml.rpmsave", "this is not toml")
    .write("config.d/README", "nor this");
    let config = etc.load("").unwrap();
    assert_eq!(
        config.kbs,
        urls(&["https://c"]),
        "url replaced, not appended"
    );
    assert_eq!(config.timeout, Duration::from_secs(200));
    assert_eq!(config.secrets_dir, Path::new("/run/elsewhere"));
    assert_eq!(
        config.secrets,
        vec![
            Secret {
                required: false,
                ..secret(
                    "one",
                    "r/t/uno",
                    vec![Sink::Keyring {
                        kind: KeyKind::User,
                        description: "cvm:one".into(),
                        keyring: "base".into(),
                        perm: 0x3f01_0000,
                        timeout: None,
                    }],
                )
            },
            // Resolved against the secrets-dir of the last file that sets it.
            secret("two", "r/t/two", vec![file_sink("/run/elsewhere/two.key")]),
        ]
    );
}

#[test]
fn cmdline_overrides_files_and_flags_override_cmdline() {
    let etc = Etc::new("layers");
    etc.write(
        "config.toml",
        "[kbs]\nurl = \"https://file\"\nca = \"/etc/file.pem\"\ntimeout = 100\n[tee]\ntype = \"snp\"\n",
    );
    let cmdline = "cvm_attest.kbs=https://cmd1,https://cmd2 cvm_attest.kbs_ca=/etc/cmd.pem \
                   cvm_attest.tee=tdx cvm_attest.insecure_http cvm_attest.timeout=50";
    let none = Overrides::default();
    let flags = Overrides {
        kbs: urls(&["http://flag"]),
        kbs_ca: Some("flag.pem".into()),
        insecure_http: false,
        tee: Some(Platform::Sample),
        timeout: Some(Duration::from_secs(7)),
    };
    type Expected<'a> = (&'a [&'a str], &'a str, bool, Platform, u64);
    let cases: [(&str, &Overrides, Expected); 3] = [
        (
            "",
            &none,
            (
                &["https://file"],
                "/etc/file.pem",
                false,
                Platform::Snp,
                100,
            ),
        ),
        (
            cmdline,
            &none,
            (
                &["https://cmd1", "https://cmd2"],
                "/etc/cmd.pem",
                true,
                Platform::Tdx,
                50,
            ),
        ),
        // --insecure-http absent does not turn the command line's off.
        (
            cmdline,
            &flags,
            (&["http://flag"], "flag.pem", true, Platform::Sample, 7),
        ),
    ];
    for (cmdline, overrides, (kbs, ca, insecure, tee, timeout)) in cases {
        let config = etc.load_with(cmdline, false, overrides).unwrap();
        assert_eq!(config.kbs, urls(kbs), "{cmdline}");
        assert_eq!(config.kbs_ca.as_deref(), Some(Path::new(ca)), "{cmdline}");
        assert_eq!(config.insecure_http, insecure, "{cmdline}");
        assert_eq!(config.tee, Some(tee), "{cmdline}");
        assert_eq!(config.timeout, Duration::from_secs(timeout), "{cmdline}");
    }

    let bad = Overrides {
        kbs: urls(&[""]),
        ..Overrides::default()
    };
    let err = etc.load_with("", false, &bad).unwrap_err().to_string();
    assert!(err.starts_with("--kbs: an empty URL"), "{err}");
    let bad = Overrides {
        timeout: Some(Duration::ZERO),
        ..Overrides::default()
    };
    let err = etc.load_with("", false, &bad).unwrap_err().to_string();
    assert_eq!(err, "--timeout: give 1 to 86400 seconds");
}

#[test]
fn rd_keys_only_in_the_initramfs() {
    let etc = Etc::new("rd");
    etc.write("config.toml", "[kbs]\nurl = \"https://file\"\n");
    for (cmdline, initrd, kbs) in [
        ("rd.cvm_attest.kbs=https://rd", false, "https://file"),
        ("rd.cvm_attest.kbs=https://rd", true, "https://rd"),
        (
            "rd.cvm_attest.kbs=https://rd cvm_attest.kbs=https://real",
            false,
            "https://real",
        ),
        (
            "rd.cvm_attest.kbs=https://rd cvm_attest.kbs=https://real",
            true,
            "https://rd",
        ),
        ("cvm_attest.kbs=https://real", true, "https://real"),
    ] {
        let config = etc
            .load_with(cmdline, initrd, &Overrides::default())
            .unwrap();
        assert_eq!(config.kbs, urls(&[kbs]), "{cmdline} initrd={initrd}");
    }
}

#[test]
fn disabled_and_where() {
    let etc = Etc::new("disabled");
    let file = etc.file().display().to_string();
    for (config_toml, dropin, cmdline, initrd, disabled_by) in [
        (
            "# comment\nenable = false\n",
            "",
            "",
            false,
            Some(format!("{file}:2")),
        ),
        (
            "enable = false\n",
            "enable = true\n[kbs]\nurl = \"https://k\"\n",
            "",
            false,
            None,
        ),
        (
            "[kbs]\nurl = \"https://k\"\n",
            "",
            "cvm_attest=0",
            false,
            Some("kernel command line cvm_attest=0".into()),
        ),
        (
            "",
            "",
            "cvm_attest.enable=0",
            false,
            Some("kernel command line cvm_attest.enable=0".into()),
        ),
        (
            "",
            "",
            "cvm-attest.enable=0",
            false,
            Some("kernel command line cvm-attest.enable=0".into()),
        ),
        (
            "",
            "",
            "rd.cvm_attest=0",
            true,
            Some("kernel command line rd.cvm_attest=0".into()),
        ),
        (
            "",
            "",
            "rd.cvm_attest=0 cvm_attest.kbs=https://k",
            false,
            None,
        ),
        (
            "enable = false\n",
            "",
            "cvm_attest.enable=1 cvm_attest.kbs=https://k",
            false,
            None,
        ),
        // Disabled on the command line, the files are not even parsed.
        (
            "this is [not toml",
            "",
            "cvm_attest=0",
            false,
            Some("kernel command line cvm_attest=0".into()),
        ),
    ] {
        etc.write("config.toml", config_toml)
            .write("config.d/50-x.toml", dropin);
        let config = etc
            .load_with(cmdline, initrd, &Overrides::default())
            .unwrap();
        assert_eq!(
            config.enabled,
            disabled_by.is_none(),
            "{config_toml:?} {cmdline}"
        );
        assert_eq!(config.disabled_by, disabled_by, "{config_toml:?} {cmdline}");
    }
}

/// A secret with one file sink, for cases that only vary one thing.
const ONE: &str = "[kbs]\nurl = \"https://k\"\n[[secret]]\nname = \"a\"\nresource = \"r/t/a\"\n";

#[test]
fn every_refusal_names_file_line_and_key() {
    let etc = Etc::new("refusals");
    for (text, line, message) in [
        // Syntax, types, unknown keys.
        ("[kbs\nurl = \"a\"\n", 1, "unclosed table, expected `]`"),
        ("[kbs]\nurl = \"https://k\ntimeout = 3\n", 2, "kbs.url: invalid basic string"),
        ("[kbs]\nurl = \"https://k\"\nurll = \"b\"\n", 3, "kbs.urll: unknown key `urll`, expected one of `url`, `ca`"),
        ("enabled = false\n", 1, "enabled: unknown key `enabled`, expected one of `enable`"),
        ("[kbs]\ntimeout = 030\n", 2, "kbs.timeout: unexpected leading zero"),
        (&format!("{ONE}file = [{{ path = \"a\", mode = 0400 }}]\n"), 6, "secret[0].file: a number with a leading zero; write a file mode as a string"),
        ("[kbs]\ntimeout = \"300\"\n", 2, "kbs.timeout: invalid type: string \"300\", expected a whole number of 0 or more, unquoted"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nmode = 0400\n"), 8, "secret[0].file[0].mode: a number with a leading zero; write a file mode as a string, \"0400\", or as 0o400"),
        ("[tee]\ntype = \"sev\"\n", 2, "tee.type: unknown TEE 'sev'; use one of snp, tdx, az-snp-vtpm, az-tdx-vtpm, tpm, sample"),
        ("[tee]\nak-handle = \"0x1\"\n", 2, "tee.ak-handle: is not a persistent TPM handle"),
        ("[tee]\ntcti = \"swtpm:port=2321\"\n", 2, "tee.tcti: TCTI 'swtpm:port=2321' is not supported: give the TPM device node as device:PATH"),
        ("[kbs]\ntimeout = 0\n", 2, "kbs.timeout: 0 seconds is no time at all"),
        ("[kbs]\nca = \"ca.pem\"\n", 2, "kbs.ca: 'ca.pem' is not an absolute path"),
        // KBS URLs.
        ("[kbs]\nurl = []\n", 2, "kbs.url: is empty; give at least one KBS URL"),
        ("[kbs]\nurl = [\"https://a\",\n  \"\"]\n", 3, "kbs.url[1]: is an empty string"),
        // Delivery.
        ("[delivery]\nsecrets-dir = \"/var/lib/secrets\"\n", 2, "delivery.secrets-dir: '/var/lib/secrets' is not under /run"),
        ("[delivery]\nkeyring = \".builtin\"\n", 2, "delivery.keyring: '.builtin' is not a keyring name"),
        // Secrets.
        ("[[secret]]\nresource = \"r/t/a\"\n", 1, "secret[0]: has no name"),
        ("[[secret]]\nname = \"a b\"\n", 2, "secret[0].name: 'a b' is not a secret name"),
        ("[[secret]]\nname = \"a\"\n", 1, "secret[0]: secret 'a' has no resource"),
        ("[[secret]]\nname = \"a\"\nresource = \"default/luks\"\n", 3, "secret[0].resource: 'default/luks' has 2 path segments"),
        (ONE, 3, "secret[0]: secret 'a' goes nowhere; add at least one [[secret.file]]"),
        (
            &format!("{ONE}[[secret.file]]\npath = \"a\"\n[[secret]]\nname = \"a\"\nresource = \"r/t/b\"\n[[secret.file]]\npath = \"b\"\n"),
            9,
            "secret[1].name: a secret named 'a' is already defined in this file",
        ),
        (&format!("{ONE}restart = [\"sshd.service\", \"nginx\"]\n[[secret.file]]\npath = \"a\"\n"), 6, "secret[0].restart[1]: 'nginx' is not a unit name"),
        (&format!("{ONE}reload = [\".service\"]\n[[secret.file]]\npath = \"a\"\n"), 6, "secret[0].reload[0]: '.service' is not a unit name"),
        // File sinks.
        (&format!("{ONE}[[secret.file]]\nmode = \"0400\"\n"), 6, "secret[0].file[0]: has no path"),
        (&format!("{ONE}[[secret.file]]\npaht = \"a\"\n"), 7, "secret[0].file[0].paht: unknown key `paht`, expected one of `path`, `mode`, `owner`, `group`"),
        (&format!("{ONE}[[secret.file]]\npath = \"/etc/a.key\"\n"), 7, "secret[0].file[0].path: '/etc/a.key' is not under /run: secrets must stay on tmpfs"),
        (&format!("{ONE}[[secret.file]]\npath = \"/run/../etc/a\"\n"), 7, "secret[0].file[0].path: '/run/../etc/a' contains '..'"),
        (&format!("{ONE}[[secret.file]]\npath = \"../a\"\n"), 7, "secret[0].file[0].path: '../a' leaves secrets-dir with '..'"),
        (&format!("{ONE}[[secret.file]]\npath = \".\"\n"), 7, "secret[0].file[0].path: '.' names no file"),
        (&format!("{ONE}[[secret.file]]\npath = \"/run/x/.\"\n"), 7, "secret[0].file[0].path: '/run/x/.' names no file"),
        (&format!("{ONE}[[secret.file]]\npath = \"a/..\"\n"), 7, "secret[0].file[0].path: 'a/..' names no file"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nmode = \"0644\"\n"), 8, "secret[0].file[0].mode: mode 0644 lets every user read the secret"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nmode = \"017777\"\n"), 8, "secret[0].file[0].mode: \"017777\" is not a file mode"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nmode = \"rw\"\n"), 8, "secret[0].file[0].mode: \"rw\" is not a file mode"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nmode = 400\n"), 8, "secret[0].file[0].mode: 400 is a decimal number; write the mode in octal"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nowner = \"no-such-user-cvm\"\n"), 8, "secret[0].file[0].owner: user 'no-such-user-cvm' does not exist in /etc/passwd"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\ngroup = \"no-such-group-cvm\"\n"), 8, "secret[0].file[0].group: group 'no-such-group-cvm' does not exist in /etc/group"),
        (&format!("{ONE}[[secret.file]]\npath = \"a\"\nowner = -1\n"), 8, "secret[0].file[0].owner: -1 is not a user id"),
        // Credentials and crypttab volumes.
        (&format!("{ONE}[[secret.credential]]\nname = \"a/b\"\n"), 7, "secret[0].credential[0].name: credential name 'a/b' cannot be a file name"),
        (&format!("{ONE}[[secret.cryptsetup]]\n"), 6, "secret[0].cryptsetup[0]: has no volume"),
        (&format!("{ONE}[[secret.cryptsetup]]\nvolume = \"luks/root\"\n"), 7, "secret[0].cryptsetup[0].volume: volume name 'luks/root' cannot be a file name"),
        (&format!("{ONE}[[secret.cryptsetup]]\nvolume = \"luks-1 x\"\n"), 7, "secret[0].cryptsetup[0].volume: volume name 'luks-1 x' holds white space"),
        // Keyring sinks.
        (&format!("{ONE}[[secret.keyring]]\ndescription = \"cvm:a\"\n"), 6, "secret[0].keyring[0]: has no type"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"big_key\"\ndescription = \"cvm:a\"\n"), 7, "secret[0].keyring[0].type: 'big_key' is not a key type"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"logon\"\ndescription = \"root\"\n"), 8, "secret[0].keyring[0].description: logon key description 'root' has no prefix"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"logon\"\ndescription = \":root\"\n"), 8, "secret[0].keyring[0].description: logon key description ':root' has no prefix"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"a\"\nkeyring = \"\"\n"), 9, "secret[0].keyring[0].keyring: '' is not a keyring name"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"a\"\npermissions = \"3f\"\n"), 9, "secret[0].keyring[0].permissions: is not a key permission mask"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"a\"\npermissions = \"0x3f010002\"\n"), 9, "secret[0].keyring[0].permissions: 0x3f010002 lets every user at the key"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"a\"\npermissions = \"0x0b010000\"\n"), 9, "secret[0].keyring[0].permissions: 0x0b010000 denies the key's possessor link (0x10000000)"),
        (&format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"a\"\ntimeout = 0\n"), 9, "secret[0].keyring[0].timeout: 0 seconds is not a key timeout"),
        // Two sinks, one destination.
        (
            &format!("{ONE}[[secret.file]]\npath = \"x.key\"\n[[secret]]\nname = \"b\"\nresource = \"r/t/b\"\n[[secret.file]]\npath = \"/run/cvm-attest//x.key\"\n"),
            12,
            "secret[1].file[0].path: /run/cvm-attest/x.key is also written by secret 'a' (",
        ),
        (
            &format!("{ONE}[[secret.credential]]\n[[secret.file]]\npath = \"/run/credstore/a\"\n"),
            6,
            "secret[0].credential[0]: /run/credstore/a is also written by secret 'a' (",
        ),
        (
            &format!("{ONE}[[secret.keyring]]\ntype = \"user\"\ndescription = \"d\"\n[[secret.keyring]]\ntype = \"user\"\ndescription = \"d\"\nkeyring = \"cvm-attest\"\n"),
            11,
            "secret[0].keyring[1].description: user key 'd' in keyring 'cvm-attest' is also written by secret 'a' (",
        ),
        // One file where another would need its directory.
        (
            &format!("{ONE}[[secret.file]]\npath = \"/run/x\"\n[[secret]]\nname = \"b\"\nresource = \"r/t/b\"\n[[secret.file]]\npath = \"/run/x/y\"\n"),
            12,
            "secret[1].file[0].path: /run/x/y and /run/x (secret 'a', ",
        ),
    ] {
        etc.write("config.toml", text);
        let err = etc.load("cvm_attest.kbs=https://k").unwrap_err().to_string();
        let expected = format!("{}:{line}: {message}", etc.file().display());
        assert!(err.starts_with(&expected), "\n{text}\ngot:  {err}\nwant: {expected}");
    }
}

#[test]
fn a_dropin_error_names_the_dropin() {
    let etc = Etc::new("dropin-error");
    etc.write("config.toml", "[kbs]\nurl = \"https://k\"\n")
        .write("config.d/10-x.toml", "\n\n[kbs]\nconnect-timeout = -1\n");
    let err = etc.load("").unwrap_err().to_string();
    let expected = format!(
        "{}:4: kbs.connect-timeout: invalid value: integer `-1`, expected a whole number of 0 or more, unquoted",
        etc.0.join("config.d/10-x.toml").display()
    );
    assert!(err.starts_with(&expected), "{err}");
}

#[test]
fn unreadable_files_are_errors() {
    let etc = Etc::new("unreadable");
    std::fs::create_dir(etc.file()).unwrap();
    let err = etc.load("cvm_attest.kbs=https://k").unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert_eq!(err.to_string(), format!("read {}", etc.file().display()));
}

#[test]
fn account_tables() {
    let etc = Etc::new("accounts");
    etc.write(
        "passwd",
        "root:x:0:0::/root:/bin/sh\nnginx:x:990:985::/:/sbin/nologin\nbroken\n",
    )
    .write("group", "root:x:0:\nnginx:x:985:\n");
    let mut accounts = Accounts::at(etc.0.join("passwd"), etc.0.join("group"));
    let text =
        format!("{ONE}[[secret.file]]\npath = \"a\"\nowner = \"nginx\"\ngroup = \"nginx\"\n");
    let src = super::Source {
        path: Path::new("x.toml"),
        text: &text,
    };
    let parsed: TestSecrets = toml::from_str(&text).unwrap();
    let entry = super::secret::convert(
        &src,
        0,
        parsed.secret.into_iter().next().unwrap(),
        &mut accounts,
    )
    .unwrap();
    assert_eq!(
        entry.secret.sinks,
        vec![Sink::File {
            path: "a".into(),
            mode: 0o400,
            uid: Some(990),
            gid: Some(985)
        }]
    );
}

#[derive(serde::Deserialize)]
struct TestSecrets {
    #[allow(dead_code)] // only the secrets matter here
    kbs: toml::Table,
    secret: Vec<toml::Spanned<super::secret::RawSecret>>,
}
