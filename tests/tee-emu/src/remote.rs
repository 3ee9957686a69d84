// SPDX-License-Identifier: Apache-2.0
//! Reading and writing another process's memory (process_vm_readv(2),
//! process_vm_writev(2)), for ioctl arguments that point to user buffers.
//! Needs the right to ptrace the target (root has it).

use std::io::{Error, ErrorKind, Result};

/// Reads `len` bytes at `addr` in process `pid`.
pub fn read(pid: u32, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` points to `len` writable bytes we own; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    check(n, len)?;
    Ok(buf)
}

/// Writes `data` at `addr` in process `pid`.
pub fn write(pid: u32, addr: u64, data: &[u8]) -> Result<()> {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` points to `data`, which the kernel only reads; it checks `remote`.
    let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    check(n, data.len())
}

fn check(n: isize, len: usize) -> Result<()> {
    if n < 0 {
        return Err(Error::last_os_error());
    }
    if n as usize != len {
        return Err(Error::new(ErrorKind::UnexpectedEof, "partial transfer"));
    }
    Ok(())
}
