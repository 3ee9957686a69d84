// SPDX-License-Identifier: Apache-2.0
//! No core dumps. The agent holds decrypted secrets and the private half of
//! its TEE key; a crash must not write them to disk (systemd-coredump keeps
//! dumps under /var/lib/systemd/coredump).
//!
//! `PR_SET_DUMPABLE` 0 suppresses the dump, and also keeps other processes
//! of the same user out of this one's memory (ptrace, `/proc/PID/mem`)
//! unless they hold CAP_SYS_PTRACE. `RLIMIT_CORE` 0 is a second fence for
//! an operator's hand run (systemd-coredump honours it); the units cannot
//! set it themselves, since their system call filter refuses setrlimit,
//! and set `LimitCORE=0` instead.

/// Makes this process non-dumpable; on failure, says so and carries on.
pub fn disable() {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        log::warn!(
            "could not turn core dumps off (prctl: {}); a crash could dump secrets",
            std::io::Error::last_os_error()
        );
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `none` is a valid rlimit that lives across the call. Refused
    // (EPERM) under the units' system call filter, where LimitCORE=0 holds.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}
