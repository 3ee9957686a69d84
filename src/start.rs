// SPDX-License-Identifier: Apache-2.0
//! The start and end of the process, in place of Rust's runtime start-up
//! (`main.rs` is `#![no_main]`: glibc calls the agent's `main` directly).
//!
//! Rust's start-up reads `/proc/self/maps` to find the main thread's stack
//! and installs an alternate signal stack, so that a stack overflow prints
//! a message rather than only dying of SIGSEGV: 0.07 ms of every run on the
//! development VM, a thirtieth of a one-resource `get` (README,
//! Benchmarks). The agent keeps the two things it needs from it: file
//! descriptors 0-2 are open (a secret's file opened while one of them is
//! closed would take its number, and a log line or a print would land in
//! it), and SIGPIPE is ignored (a KBS that closes the connection fails a
//! write instead of killing the agent). At the end, stdout is flushed.
//!
//! What else changes: a panic in a debug build aborts instead of exiting
//! with 101 (release builds abort anyway, `panic = "abort"`), and panic
//! messages name the main thread `<unnamed>`. The arguments still reach
//! `std::env::args`: std reads them from glibc's `.init_array` call.

use std::io::Write as _;

// Without glibc's `.init_array` arguments, std::env::args would be empty.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
compile_error!("src/start.rs relies on glibc passing argv to std through .init_array");

/// Points a closed descriptor 0-2 at `/dev/null` and ignores SIGPIPE.
pub fn begin() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the flags of a descriptor number.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        // SAFETY: the path is a NUL-terminated literal; open takes the
        // lowest free number, which is `fd` since the lower ones are open.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } != fd {
            // Nothing can be reported: stderr may be the one missing.
            std::process::abort();
        }
    }
    // SAFETY: SIG_IGN installs no handler code; only the disposition changes.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        std::process::abort();
    }
}

/// Flushes what std still buffers for stdout, as Rust's runtime does at
/// exit: a safety net, since `commands::print_out` flushes every write.
pub fn end() {
    let _ = std::io::stdout().flush();
}
