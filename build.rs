// SPDX-License-Identifier: Apache-2.0
//! Links GCC's unwinder statically (`libgcc_eh.a`), so that no binary of this
//! package loads `libgcc_s.so.1`.
//!
//! Why: std names `-lgcc_s` only for the `_Unwind_*` functions of backtraces
//! and, in debug builds, of unwinding panics. Loading the library costs every
//! run of the agent one more object for the dynamic loader to map and
//! relocate, its page faults, and the CPUID probes of its constructor: 0.13 ms
//! of the 2.8 ms a one-resource `get` takes (README, Benchmarks). Named here,
//! before std's libraries, the archive resolves those functions; the linker's
//! `--as-needed` (rustc passes it) then drops `libgcc_s` from `DT_NEEDED`.
//! `libgcc_eh.a` ships with GCC, which links every Rust program on Linux
//! (RHEL: the `gcc` package). `tests/packaging.rs` checks the result.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    // With crt-static, std links libgcc_eh itself.
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !static_crt
    {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
