// SPDX-License-Identifier: Apache-2.0
//! Files a user names (a configuration, a CA bundle, a report to decode, a
//! VCEK), read whole but never past a cap: `/dev/zero` or a wrong, huge file
//! is a clear error, not the machine's memory.

use std::io::{self, Read};
use std::path::Path;

/// Configuration files and drop-ins.
pub const CONFIG_CAP: u64 = 1 << 20;
/// A PEM bundle of CA certificates (the system bundle is about 200 KiB).
pub const CA_CAP: u64 = 4 << 20;
/// A report, quote, HCL report or certificate for `decode`.
pub const DECODE_CAP: u64 = 1 << 20;

/// Reads `path` whole; more than `cap` bytes is `FileTooLarge`.
pub fn read(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "it holds more than {} KiB, more than any such file: is it the right one?",
                cap >> 10
            ),
        ));
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        let zero = Path::new("/dev/zero");
        let err = read(zero, 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("more than 4 KiB"), "{err}");
        let dir = std::env::temp_dir().join(format!("cvm-attest-input-{}", std::process::id()));
        std::fs::write(&dir, [7u8; 4096]).unwrap();
        let exact = read(&dir, 4096);
        std::fs::write(&dir, b"\xff\xfe").unwrap();
        let not_text = read_text(&dir, 4096).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(exact.unwrap(), vec![7u8; 4096]);
        assert_eq!(not_text.kind(), io::ErrorKind::InvalidData);
        let missing = read(Path::new("/nonexistent/cvm-attest"), 1).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
