// SPDX-License-Identifier: Apache-2.0
//! Shared helpers of the emulator tests: scratch directories and errno checks.

pub use tee_emu::scratch::Scratch;

/// The errno of a failed operation.
pub fn errno<T: std::fmt::Debug>(result: std::io::Result<T>) -> i32 {
    result
        .expect_err("expected a failure")
        .raw_os_error()
        .unwrap_or(0)
}
