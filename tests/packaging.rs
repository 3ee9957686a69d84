// SPDX-License-Identifier: Apache-2.0
//! Packaging: `make install`, the dracut module in a real initramfs, and the
//! RPM.
//!
//! - `make install DESTDIR=…` lays out every file with its mode, keeps an
//!   existing configuration, and the example configuration is valid.
//! - Debian's dracut 059 builds an initramfs with the module, in a private
//!   mount namespace where `/usr` and `/etc` are overlays of the host's with
//!   the `make install` tree on top (dracut copies from the root it runs in;
//!   `--sysroot` would need a whole OS tree). The host's dracut configuration
//!   is left out (`--conf /dev/null --confdir <empty>`), so the module is
//!   enabled by our own `/usr/lib/dracut/dracut.conf.d` snippet. The kernel is
//!   a stand-in: a modules tree with the TEE and TPM module names (objects
//!   with only a `.modinfo` section, indexed by depmod) and one unrelated
//!   module, enough for `installkernel()`. `lsinitrd` lists the image and
//!   `lsinitrd --unpack` extracts it, and the binary inside runs `--version`
//!   chrooted there and the TPM helper prints its usage, which proves their
//!   libraries came along.
//! - The agent binary needs no shared library but glibc's (not tpm2-tss, not
//!   libcrypto, not libgcc_s); the TPM helper needs tpm2-tss (`readelf -d`).
//! - rpmbuild (Debian's rpm: no Rust or systemd RPM macros, so the spec's
//!   fallbacks) builds both packages from `rpm/make-source.sh` and
//!   `rpm/make-vendor.sh --offline` tarballs, with cargo's target directory
//!   kept in `target/packaging` so that only the first run compiles every
//!   crate; rpmlint with `rpm/cvm-attest.rpmlintrc` reports no error; `rpm
//!   -qp` shows each file's mode, owner and flags, the scriptlets and the
//!   dependencies; the License tag covers every crate linked in.
//!
//! Without root or one of the tools (CI installs them all), a test prints
//! `SKIPPED <name>: …` and returns.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::TempDir;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The stand-in kernel's version and the modules it has.
const KVER: &str = "6.1.0-cvmtest";
const KMODS: [&str; 6] = [
    "drivers/char/tpm/tpm_crb",
    "drivers/char/tpm/tpm_tis",
    "drivers/virt/coco/sev-guest/sev-guest",
    "drivers/virt/coco/tdx-guest/tdx-guest",
    "drivers/virt/coco/tsm",
    "drivers/char/cvmtest_unrelated",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first of `tools` that is not on PATH.
fn missing(tools: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    tools
        .iter()
        .find(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|tool| tool.to_string())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` and returns its stdout; any failure panics with all output.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `make install DESTDIR=dest` with the test build of the binary.
fn make_install(dest: &Path) {
    run(Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("install")
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_cvm-attest")))
        .arg(format!(
            "TPM_HELPER={}",
            env!("CARGO_BIN_EXE_cvm-attest-tpm")
        ))
        .arg(format!(
            "UNITS_HELPER={}",
            env!("CARGO_BIN_EXE_cvm-attest-units")
        )));
}

/// The shared libraries an ELF file needs (`readelf -d`).
fn needed(binary: &str) -> Vec<String> {
    run(Command::new("readelf").args(["-d", binary]))
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_owned()))
        .collect()
}

/// Whether `binary` holds `bytes` anywhere.
fn holds(binary: &str, bytes: &[u8]) -> bool {
    std::fs::read(binary)
        .unwrap()
        .windows(bytes.len())
        .any(|w| w == bytes)
}

#[test]
fn the_agent_loads_only_glibc_and_the_helpers_carry_the_rest() {
    if let Some(tool) = missing(&["readelf"]) {
        println!("SKIPPED the_agent_loads_only_glibc_and_the_helpers_carry_the_rest: no {tool}");
        return;
    }
    let agent = needed(env!("CARGO_BIN_EXE_cvm-attest"));
    // build.rs links GCC's unwinder statically: glibc is all the agent loads
    // (a debug build also names libm, and the loader for the unwinder's
    // `_dl_find_object`).
    assert!(agent.iter().any(|l| l == "libc.so.6"), "{agent:?}");
    assert!(
        agent
            .iter()
            .all(|l| ["libc.so.6", "libm.so.6"].contains(&l.as_str()) || l.starts_with("ld-linux")),
        "the agent must load nothing but glibc (no libgcc_s, tpm2-tss or libcrypto): {agent:?}"
    );
    let helper = needed(env!("CARGO_BIN_EXE_cvm-attest-tpm"));
    assert!(
        helper.iter().any(|l| l.starts_with("libtss2-esys")),
        "{helper:?}"
    );
    // zbus names the bus's own service in its Hello call.
    let dbus = b"org.freedesktop.DBus";
    assert!(
        !holds(env!("CARGO_BIN_EXE_cvm-attest"), dbus),
        "the agent links zbus"
    );
    assert!(holds(env!("CARGO_BIN_EXE_cvm-attest-units"), dbus));
}

#[test]
fn make_install_lays_out_every_file_with_its_mode() {
    if let Some(tool) = missing(&["make", "install"]) {
        println!("SKIPPED make_install_lays_out_every_file_with_its_mode: no {tool}");
        return;
    }
    let dir = TempDir::new("make-install");
    let dest = dir.path().join("root");
    make_install(&dest);

    let expected = [
        ("usr/bin/cvm-attest", 0o755),
        ("usr/libexec/cvm-attest-tpm", 0o755),
        ("usr/libexec/cvm-attest-units", 0o755),
        ("usr/lib/systemd/system/cvm-attest.service", 0o644),
        ("usr/lib/systemd/system/cvm-attest-cleanup.service", 0o644),
        (
            "usr/lib/systemd/system/cryptsetup.target.d/cvm-attest.conf",
            0o644,
        ),
        (
            "usr/lib/systemd/system/modprobe@sev_guest.service.d/cvm-attest.conf",
            0o644,
        ),
        (
            "usr/lib/systemd/system/modprobe@tdx_guest.service.d/cvm-attest.conf",
            0o644,
        ),
        ("usr/lib/dracut/modules.d/91cvm-attest", 0o755),
        (
            "usr/lib/dracut/modules.d/91cvm-attest/module-setup.sh",
            0o755,
        ),
        (
            "usr/lib/dracut/modules.d/91cvm-attest/cvm-attest-initrd.service",
            0o644,
        ),
        ("usr/lib/dracut/dracut.conf.d/91-cvm-attest.conf", 0o644),
        ("usr/share/man/man8/cvm-attest.8", 0o644),
        ("etc/cvm-attest", 0o755),
        ("etc/cvm-attest/config.d", 0o700),
        ("etc/cvm-attest/config.toml", 0o600),
    ];
    let mut found = BTreeSet::new();
    for entry in walk(&dest) {
        if entry.is_file() {
            found.insert(entry.strip_prefix(&dest).unwrap().to_path_buf());
        }
    }
    let files: BTreeSet<PathBuf> = expected
        .iter()
        .map(|(p, _)| PathBuf::from(p))
        .filter(|p| dest.join(p).is_file())
        .collect();
    assert_eq!(found, files, "make install put exactly these files");
    for (path, want) in expected {
        assert_eq!(mode(&dest.join(path)), want, "mode of {path}");
    }
    for (installed, source) in [
        (
            "usr/lib/systemd/system/cvm-attest.service",
            "systemd/cvm-attest.service",
        ),
        (
            "usr/lib/systemd/system/cvm-attest-cleanup.service",
            "systemd/cvm-attest-cleanup.service",
        ),
        (
            "usr/lib/systemd/system/cryptsetup.target.d/cvm-attest.conf",
            "systemd/cryptsetup.target.d/cvm-attest.conf",
        ),
        (
            "usr/lib/dracut/modules.d/91cvm-attest/cvm-attest-initrd.service",
            "systemd/cvm-attest-initrd.service",
        ),
        (
            "usr/lib/systemd/system/modprobe@sev_guest.service.d/cvm-attest.conf",
            "systemd/modprobe@sev_guest.service.d/cvm-attest.conf",
        ),
        (
            "usr/lib/systemd/system/modprobe@tdx_guest.service.d/cvm-attest.conf",
            "systemd/modprobe@tdx_guest.service.d/cvm-attest.conf",
        ),
        ("etc/cvm-attest/config.toml", "etc/config.toml"),
    ] {
        assert_eq!(
            std::fs::read(dest.join(installed)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{installed} is {source}"
        );
    }

    // An administrator's configuration survives a second install.
    let config = dest.join("etc/cvm-attest/config.toml");
    std::fs::write(&config, "[kbs]\nurl = \"https://kbs.example\"\n").unwrap();
    make_install(&dest);
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("kbs.example"));

    // Without a built binary, install says so and installs nothing.
    let out = Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("install")
        .arg(format!("DESTDIR={}", dir.path().join("none").display()))
        .arg("BIN=target/no-such-binary")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("run 'make' first"), "{}", text(&out));
    assert!(!dir.path().join("none").exists());
}

/// Every key of the example configuration, uncommented, is one `run` accepts:
/// it gets past the configuration to the network (exit 4, not 2).
#[test]
fn the_example_configuration_is_valid_commented_and_uncommented() {
    let dir = TempDir::new("example-config");
    let example = std::fs::read_to_string(repo().join("etc/config.toml")).unwrap();
    let keys: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(keys.is_empty(), "every key is commented out: {keys:?}");

    // As shipped: valid, and it names no KBS.
    let shipped = dir.path().join("config.toml");
    std::fs::write(&shipped, &example).unwrap();
    let out = crate::util::agent(&["run", "--config", shipped.to_str().unwrap()]);
    crate::util::assert_fails_with(&out, 2, "no KBS URL is configured");

    // Uncommented: keys are `#key`, `#[table]` or `#  key` (prose is `# text`).
    let full: String = example
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with("  ") || !rest.starts_with([' ', '#']) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let uncommented = dir.path().join("full.toml");
    std::fs::write(&uncommented, &full).unwrap();
    let ca = crate::util::data("tls/ca.pem");
    let out = crate::util::agent(&[
        "run",
        "-q",
        "--config",
        uncommented.to_str().unwrap(),
        "--kbs",
        "https://127.0.0.1:1",
        "--kbs-ca",
        ca.to_str().unwrap(),
        "--tee",
        "sample",
        "--timeout",
        "0.5",
    ]);
    crate::util::assert_exit(&out, 4);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// The stand-in kernel's modules tree under `base/lib/modules/KVER`: one
/// object per name with nothing but a `.modinfo` section, indexed by depmod.
fn fake_kernel(base: &Path) -> PathBuf {
    let kdir = base.join("lib/modules").join(KVER);
    let obj = base.join("empty.o");
    std::fs::write(base.join("empty.c"), "int cvm_attest_test_module;\n").unwrap();
    run(Command::new("cc")
        .arg("-c")
        .arg(base.join("empty.c"))
        .arg("-o")
        .arg(&obj));
    for module in KMODS {
        let ko = kdir.join(format!("kernel/{module}.ko"));
        std::fs::create_dir_all(ko.parent().unwrap()).unwrap();
        let name = ko.file_stem().unwrap().to_str().unwrap().replace('-', "_");
        let modinfo = base.join(format!("{name}.modinfo"));
        std::fs::write(
            &modinfo,
            format!("license=GPL\0name={name}\0vermagic={KVER} SMP mod_unload \0"),
        )
        .unwrap();
        run(Command::new("objcopy")
            .arg(format!("--add-section=.modinfo={}", modinfo.display()))
            .arg("--set-section-flags=.modinfo=alloc,readonly")
            .arg(&obj)
            .arg(&ko));
    }
    for index in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        std::fs::write(kdir.join(index), "").unwrap();
    }
    run(Command::new("depmod").arg("-b").arg(base).arg(KVER));
    kdir
}

/// Builds `image` with dracut in a private mount namespace whose `/usr` and
/// `/etc` show `stage` over the host's (`tests/dracut-staged.sh`, which the
/// boot test uses too). `kernel`: the modules directory, or none
/// (`--no-kernel`).
fn dracut(dir: &Path, stage: &Path, kernel: Option<&Path>, image: &Path) -> Result<String, String> {
    let mut cmd = Command::new(repo().join("tests/dracut-staged.sh"));
    cmd.arg(stage).arg(dir);
    match kernel {
        Some(kdir) => cmd.args(["--kver", KVER, "--kmoddir"]).arg(kdir),
        None => cmd.arg("--no-kernel"),
    };
    let out = cmd
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(text(&out))
    } else {
        Err(text(&out))
    }
}

/// `lsinitrd` as `path → (mode string, symlink target)`.
fn listing(image: &Path) -> BTreeMap<String, (String, Option<String>)> {
    let list = run(Command::new("lsinitrd").arg(image));
    list.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let perms = fields.first()?;
            if fields.len() < 9 || perms.len() != 10 {
                return None;
            }
            let target = fields
                .iter()
                .position(|f| *f == "->")
                .map(|i| fields[i + 1].to_owned());
            Some((fields[8].to_owned(), (perms.to_string(), target)))
        })
        .collect()
}

#[test]
fn the_dracut_module_puts_the_agent_into_an_initramfs() {
    const NAME: &str = "the_dracut_module_puts_the_agent_into_an_initramfs";
    if !is_root() {
        println!("SKIPPED {NAME}: needs root (mount namespace, chroot)");
        return;
    }
    let tools = [
        "dracut",
        "lsinitrd",
        "unshare",
        "depmod",
        "objcopy",
        "cc",
        "cpio",
        "zstd",
        "make",
        "systemctl",
        "chroot",
    ];
    if let Some(tool) = missing(&tools) {
        println!(
            "SKIPPED {NAME}: no {tool} (CI installs dracut-core, dracut-network, kmod, cpio, zstd)"
        );
        return;
    }
    let libdir = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
    ]
    .into_iter()
    .find(|d| Path::new(d).join("libtss2-tcti-device.so.0").exists());
    let Some(libdir) = libdir else {
        println!("SKIPPED {NAME}: libtss2-tcti-device is not installed");
        return;
    };
    let started = std::time::Instant::now();
    let dir = TempDir::new("dracut");
    let stage = dir.path().join("stage");
    make_install(&stage);
    // The KBS CA pinned by a drop-in, as an administrator would.
    let ca = std::fs::read(crate::util::data("tls/ca.pem")).unwrap();
    std::fs::write(stage.join("etc/cvm-attest/kbs-ca.pem"), &ca).unwrap();
    std::fs::write(
        stage.join("etc/cvm-attest/config.d/10-kbs.toml"),
        "[kbs] # the initramfs fetches the LUKS key\nurl = \"https://kbs.example:8080\"\n\
         ca = '/etc/cvm-attest/kbs-ca.pem'  # pinned\n",
    )
    .unwrap();
    let kdir = fake_kernel(dir.path());
    let image = dir.path().join("initramfs.img");
    let log = match dracut(dir.path(), &stage, Some(&kdir), &image) {
        Ok(log) => log,
        Err(log) if log.contains("mount") && !image.exists() => {
            println!("SKIPPED {NAME}: no overlay mount in a private namespace here:\n{log}");
            return;
        }
        Err(log) => panic!("dracut failed:\n{log}"),
    };
    // With what depends() asks for.
    for module in ["cvm-attest", "systemd", "network", "crypt"] {
        assert!(
            log.contains(&format!("Including module: {module} ")),
            "{module}:\n{log}"
        );
    }
    assert!(
        !log.contains("cvm-attest:"),
        "the module complained:\n{log}"
    );

    let files = listing(&image);
    let lib = libdir.trim_start_matches('/');
    let unit = "usr/lib/systemd/system/cvm-attest-initrd.service";
    for (path, perms) in [
        ("usr/bin/cvm-attest", "-rwxr-xr-x"),
        ("usr/libexec/cvm-attest-tpm", "-rwxr-xr-x"),
        (unit, "-rw-r--r--"),
        ("etc/cvm-attest/config.toml", "-rw-------"),
        ("etc/cvm-attest/config.d/10-kbs.toml", "-rw-r--r--"),
        ("etc/cvm-attest/kbs-ca.pem", "-rw-r--r--"),
        ("etc/cmdline.d/91cvm-attest.conf", "-rw-r--r--"),
        (&format!("{lib}/libtss2-tcti-device.so.0"), "lrwxrwxrwx"),
        (&format!("{lib}/libtss2-tctildr.so.0"), "lrwxrwxrwx"),
        (
            "usr/lib/systemd/system/sys-kernel-config.mount",
            "-rw-r--r--",
        ),
        ("usr/lib/systemd/system/modprobe@.service", "-rw-r--r--"),
        (
            "usr/lib/systemd/system/modprobe@sev_guest.service.d/cvm-attest.conf",
            "-rw-r--r--",
        ),
        (
            "usr/lib/systemd/system/modprobe@tdx_guest.service.d/cvm-attest.conf",
            "-rw-r--r--",
        ),
    ] {
        let found = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the image"));
        assert_eq!(found.0, perms, "mode of {path}");
    }
    for target in ["cryptsetup.target", "initrd.target"] {
        let link = format!("etc/systemd/system/{target}.wants/cvm-attest-initrd.service");
        let (perms, to) = files
            .get(&link)
            .unwrap_or_else(|| panic!("{link} is missing"));
        assert!(perms.starts_with('l'), "{link} is a link");
        assert!(
            to.as_deref()
                .is_some_and(|t| t.ends_with("/systemd/system/cvm-attest-initrd.service")),
            "{link} -> {to:?}"
        );
    }
    // installkernel(): the TEE and TPM modules, and nothing it did not name.
    for module in &KMODS[..5] {
        let ko = format!("usr/lib/modules/{KVER}/kernel/{module}.ko");
        assert!(files.contains_key(&ko), "{ko} is not in the image");
    }
    assert!(!files.keys().any(|f| f.contains("cvmtest_unrelated")));
    // A pinned CA: the system bundle stays out.
    assert!(!files
        .keys()
        .any(|f| f.ends_with("ca-certificates.crt") || f.ends_with("ca-bundle.crt")));

    // The contents, and the binary running in the image's own root.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("lsinitrd")
        .arg("--unpack")
        .arg(&image)
        .current_dir(&unpacked));
    let read = |p: &str| std::fs::read(unpacked.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("etc/cmdline.d/91cvm-attest.conf"), b"rd.neednet=1\n");
    assert_eq!(
        read(unit),
        std::fs::read(repo().join("systemd/cvm-attest-initrd.service")).unwrap()
    );
    assert_eq!(
        read("etc/cvm-attest/config.toml"),
        std::fs::read(repo().join("etc/config.toml")).unwrap()
    );
    assert_eq!(read("etc/cvm-attest/kbs-ca.pem"), ca);
    let version = run(Command::new("chroot")
        .arg(&unpacked)
        .args(["/usr/bin/cvm-attest", "--version"]));
    assert_eq!(version.trim(), format!("cvm-attest {VERSION}"));
    // The TPM helper loads in the image: dracut brought tpm2-tss and libcrypto.
    let helper = Command::new("chroot")
        .arg(&unpacked)
        .arg("/usr/libexec/cvm-attest-tpm")
        .output()
        .unwrap();
    assert_eq!(helper.status.code(), Some(2), "{helper:?}");
    assert!(
        String::from_utf8_lossy(&helper.stderr).starts_with("usage: cvm-attest-tpm"),
        "{helper:?}"
    );

    // Not the units helper: in the initramfs, unit actions are the real root's.
    assert!(!files.contains_key("usr/libexec/cvm-attest-units"));

    // No CA pinned: the system bundle, so that HTTPS to the KBS can verify.
    std::fs::remove_file(stage.join("etc/cvm-attest/config.d/10-kbs.toml")).unwrap();
    let image = dir.path().join("initramfs-system-roots.img");
    dracut(dir.path(), &stage, None, &image).unwrap_or_else(|log| panic!("dracut failed:\n{log}"));
    let files = listing(&image);
    let bundle = [
        "etc/ssl/certs/ca-certificates.crt",
        "etc/pki/tls/certs/ca-bundle.crt",
    ];
    assert!(
        bundle.iter().any(|b| files.contains_key(*b)),
        "no CA bundle in the image"
    );
    assert!(!files.contains_key("etc/cvm-attest/kbs-ca.pem"));
    println!("{NAME}: two images in {:.1?}", started.elapsed());
}

/// The License tag as its top-level terms (`(A OR B)` → `A OR B`).
fn license_terms(expr: &str) -> BTreeSet<String> {
    let mut terms = BTreeSet::new();
    let (mut depth, mut start) = (0, 0);
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b' ' if depth == 0 && expr[i..].starts_with(" AND ") => {
                terms.insert(expr[start..i].to_owned());
                start = i + 5;
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
    terms.insert(expr[start..].to_owned());
    terms
        .into_iter()
        .map(|t| {
            t.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_owned()
        })
        .collect()
}

#[test]
fn the_rpm_builds_lints_clean_and_holds_every_file() {
    const NAME: &str = "the_rpm_builds_lints_clean_and_holds_every_file";
    let tools = [
        "rpmbuild", "rpmlint", "rpm", "git", "cargo", "tar", "xz", "make",
    ];
    if let Some(tool) = missing(&tools) {
        println!("SKIPPED {NAME}: no {tool} (CI installs rpm and rpmlint)");
        return;
    }
    if !repo().join(".git").exists() {
        println!("SKIPPED {NAME}: not a git checkout (rpm/make-source.sh lists files with git)");
        return;
    }
    let started = std::time::Instant::now();
    let dir = TempDir::new("rpm");
    let sources = dir.path().join("SOURCES");
    std::fs::create_dir(&sources).unwrap();
    run(Command::new(repo().join("rpm/make-source.sh"))
        .arg("-o")
        .arg(&sources));
    // The crates come from cargo's cache, filled by building the tests.
    run(Command::new(repo().join("rpm/make-vendor.sh"))
        .args(["--offline", "-o"])
        .arg(&sources)
        .env("XZ_OPT", "-T0 -1"));
    let tarballs = started.elapsed();
    let packaging = repo().join("target/packaging");
    std::fs::create_dir_all(packaging.join("BUILD")).unwrap();

    let out = Command::new("rpmbuild")
        .args(["-bb", "--nodeps"])
        .arg("--define")
        .arg(format!("_topdir {}", dir.path().display()))
        .arg("--define")
        .arg(format!("_sourcedir {}", sources.display()))
        // Cargo rebuilds a crate whose source moved: the same build
        // directory every run, and the target directory kept between runs
        // (a vendored crate never changes under its version), so that only
        // cvm-attest itself is compiled again.
        .arg("--define")
        .arg(format!("_builddir {}", packaging.join("BUILD").display()))
        .arg(repo().join("rpm/cvm-attest.spec"))
        .env("CARGO_TARGET_DIR", packaging.join("target"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "rpmbuild failed:\n{log}");
    let rpms = dir.path().join("RPMS");
    let arch = std::fs::read_dir(&rpms)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let arch_name = arch.file_name().unwrap().to_str().unwrap().to_owned();
    let main = arch.join(format!("cvm-attest-{VERSION}-1.{arch_name}.rpm"));
    let sub = arch.join(format!("cvm-attest-dracut-{VERSION}-1.{arch_name}.rpm"));
    assert!(main.exists() && sub.exists(), "{log}");
    let built = started.elapsed();

    // rpmlint: no error (warnings are printed for the reader).
    let lint = Command::new("rpmlint")
        .arg("-r")
        .arg(repo().join("rpm/cvm-attest.rpmlintrc"))
        .arg(&main)
        .arg(&sub)
        .arg(repo().join("rpm/cvm-attest.spec"))
        .output()
        .unwrap();
    let report = text(&lint);
    println!("rpmlint:\n{report}");
    let errors: Vec<&str> = report.lines().filter(|l| l.contains(": E: ")).collect();
    assert!(errors.is_empty(), "rpmlint errors: {errors:#?}");
    assert!(report.contains(" 0 errors"), "{report}");

    let query =
        |rpm: &Path, format: &str| run(Command::new("rpm").args(["-qp", "--qf", format]).arg(rpm));
    let files = |rpm: &Path| -> BTreeMap<String, String> {
        query(rpm, "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\\n]")
            .lines()
            .filter_map(|l| {
                let (rest, name) = l.rsplit_once(' ')?;
                Some((name.to_owned(), rest.to_owned()))
            })
            .filter(|(name, _)| !name.starts_with("/usr/lib/.build-id"))
            .collect()
    };
    let main_files = files(&main);
    let listed: Vec<_> = main_files
        .iter()
        .filter(|(f, _)| !f.contains("/licenses/cvm-attest-"))
        .collect();
    println!("{} (license files left out):\n{listed:#?}", main.display());
    let licenses = format!("/usr/share/licenses/cvm-attest-{VERSION}");
    let man = main_files
        .keys()
        .find(|f| f.starts_with("/usr/share/man/man8/cvm-attest.8"))
        .expect("the man page")
        .clone();
    for (path, want) in [
        ("/usr/bin/cvm-attest", "-rwxr-xr-x root:root "),
        ("/usr/libexec/cvm-attest-tpm", "-rwxr-xr-x root:root "),
        ("/usr/libexec/cvm-attest-units", "-rwxr-xr-x root:root "),
        (
            "/usr/lib/systemd/system/cvm-attest.service",
            "-rw-r--r-- root:root ",
        ),
        (
            "/usr/lib/systemd/system/cvm-attest-cleanup.service",
            "-rw-r--r-- root:root ",
        ),
        (
            "/usr/lib/systemd/system/cryptsetup.target.d/cvm-attest.conf",
            "-rw-r--r-- root:root ",
        ),
        (
            "/usr/lib/systemd/system/modprobe@sev_guest.service.d/cvm-attest.conf",
            "-rw-r--r-- root:root ",
        ),
        (
            "/usr/lib/systemd/system/modprobe@tdx_guest.service.d/cvm-attest.conf",
            "-rw-r--r-- root:root ",
        ),
        (man.as_str(), "-rw-r--r-- root:root d"),
        ("/etc/cvm-attest", "drwxr-xr-x root:root "),
        ("/etc/cvm-attest/config.d", "drwx------ root:root "),
        ("/etc/cvm-attest/config.toml", "-rw------- root:root cn"),
        (&format!("{licenses}/LICENSE"), "-rw-r--r-- root:root l"),
        (
            &format!("{licenses}/LICENSE.dependencies"),
            "-rw-r--r-- root:root l",
        ),
        (
            &format!("{licenses}/cargo-vendor.txt"),
            "-rw-r--r-- root:root l",
        ),
        (
            &format!("{licenses}/licenses/ring-0.17.14/LICENSE"),
            "-rw-r--r-- root:root l",
        ),
    ] {
        let found = main_files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package"));
        assert!(found.starts_with(want), "{path}: {found:?}, want {want:?}");
    }
    assert!(
        !main_files.keys().any(|f| f.contains("dracut")),
        "the dracut module is in the subpackage only"
    );

    let sub_files = files(&sub);
    let expected: BTreeMap<String, String> = [
        (
            "/usr/lib/dracut/modules.d/91cvm-attest",
            "drwxr-xr-x root:root ",
        ),
        (
            "/usr/lib/dracut/modules.d/91cvm-attest/module-setup.sh",
            "-rwxr-xr-x root:root ",
        ),
        (
            "/usr/lib/dracut/modules.d/91cvm-attest/cvm-attest-initrd.service",
            "-rw-r--r-- root:root ",
        ),
        (
            "/usr/lib/dracut/dracut.conf.d/91-cvm-attest.conf",
            "-rw-r--r-- root:root ",
        ),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(sub_files, expected, "{} holds the module", sub.display());

    // Dependencies and scriptlets.
    let requires = run(Command::new("rpm").arg("-qRp").arg(&sub));
    for dep in ["dracut", "dracut-network"] {
        assert!(requires.lines().any(|l| l.trim() == dep), "{requires}");
    }
    assert!(
        requires.contains("cvm-attest(") && requires.contains(&format!("= {VERSION}-1")),
        "{requires}"
    );
    let requires = run(Command::new("rpm").arg("-qRp").arg(&main));
    assert!(
        requires.lines().any(|l| l.starts_with("tpm2-tss")),
        "{requires}"
    );
    let scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&main));
    assert!(scripts.contains("preset cvm-attest.service"), "{scripts}");
    assert!(
        scripts.contains("disable --now cvm-attest.service"),
        "{scripts}"
    );
    // %systemd_postun_with_restart would try-restart (mark-restart on 252).
    for restart in ["try-restart", "mark-restart"] {
        assert!(
            !scripts.contains(restart),
            "no restart on upgrade:\n{scripts}"
        );
    }
    let sub_scripts = run(Command::new("rpm").args(["-qp", "--scripts"]).arg(&sub));
    assert!(
        !sub_scripts.contains("dracut"),
        "no initramfs rebuild in scriptlets"
    );

    // The License tag covers every crate linked into the binary.
    let license = query(&main, "%{LICENSE}");
    let terms = license_terms(&license);
    let vendor = sources.join(format!("cvm-attest-{VERSION}-vendor.tar.xz"));
    let deps = run(Command::new("tar")
        .arg("-xJOf")
        .arg(&vendor)
        .arg("LICENSE.dependencies"));
    assert!(deps.lines().count() > 100, "{deps}");
    for line in deps.lines() {
        let (krate, expr) = line.split_once(": ").expect("crate version: license");
        let expr = expr.replace(" / ", " OR ").replace('/', " OR ");
        for term in license_terms(&expr) {
            assert!(
                terms.contains(&term),
                "{krate}: {term} is not in the License tag {license}"
            );
        }
    }
    println!(
        "{NAME}: tarballs {tarballs:.1?}, rpmbuild {:.1?}, all {:.1?}",
        built - tarballs,
        started.elapsed()
    );
}
