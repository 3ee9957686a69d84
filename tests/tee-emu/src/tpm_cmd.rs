// SPDX-License-Identifier: Apache-2.0
//! The few TPM 2.0 commands the paravisor emulation marshals by hand, and
//! command/response framing on a stream (TPM 2.0 Library Part 1, 18.
//! "Command/Response Structure"; Part 3 31.13 NV_Write, 31.10 NV_ReadPublic,
//! 31.14 NV_Read).
//!
//! Every frame starts with tag u16, size u32 (the whole frame), then the
//! command or response code u32, all big-endian. Authorization uses the
//! owner hierarchy (`TPM_RH_OWNER`) with a password session (`TPM_RS_PW`) and
//! an empty password, as Azure's guest tools do.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use anyhow::{bail, ensure, Context as _, Result};

/// `TPM_CC_NV_Write`.
pub const CC_NV_WRITE: u32 = 0x0000_0137;
/// `TPM_CC_NV_Read`.
pub const CC_NV_READ: u32 = 0x0000_014e;
/// `TPM_CC_NV_ReadPublic`.
pub const CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
/// `TPM_RH_OWNER`.
const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RS_PW`.
const RS_PW: u32 = 0x4000_0009;
/// `TPM_ST_NO_SESSIONS`, `TPM_ST_SESSIONS`.
const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
/// Chunk size for NV writes (swtpm's `TPM_PT_NV_BUFFER_MAX` is 1024).
pub const NV_CHUNK: usize = 1024;
/// Largest frame accepted (swtpm's buffer is 4 KiB).
const FRAME_MAX: usize = 64 * 1024;

/// Reads one frame; `None` when the peer closed before a new frame.
pub fn read_frame(stream: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut header = [0u8; 10];
    match stream.read_exact(&mut header[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(e).context("read a TPM frame"),
    }
    stream
        .read_exact(&mut header[1..])
        .context("read a TPM frame header")?;
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    ensure!(
        (10..=FRAME_MAX).contains(&size),
        "TPM frame size {size} is out of range"
    );
    let mut frame = header.to_vec();
    frame.resize(size, 0);
    stream
        .read_exact(&mut frame[10..])
        .context("read a TPM frame body")?;
    Ok(Some(frame))
}

/// The command code of a command, or the response code of a response.
pub fn code(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]])
}

/// The `i`-th handle of a command (0 = first after the header), if present.
pub fn handle(command: &[u8], i: usize) -> Option<u32> {
    let at = 10 + 4 * i;
    let b = command.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The offset parameter of an NV_Read command (its last two bytes).
pub fn nv_read_offset(command: &[u8]) -> Option<u16> {
    let n = command.len();
    (n >= 14).then(|| u16::from_be_bytes([command[n - 2], command[n - 1]]))
}

/// Sends `command` and returns the response.
pub fn transact(tpm: &mut TcpStream, command: &[u8]) -> Result<Vec<u8>> {
    tpm.write_all(command).context("send a TPM command")?;
    read_frame(tpm)?.context("the TPM closed the connection")
}

fn frame(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + body.len());
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&cc.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Owner auth handle, `index`, and a TPM_RS_PW session with an empty password.
fn owner_auth(index: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&RH_OWNER.to_be_bytes());
    b.extend_from_slice(&index.to_be_bytes());
    b.extend_from_slice(&9u32.to_be_bytes());
    b.extend_from_slice(&RS_PW.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0x01, 0, 0]); // nonce, continueSession, hmac
    b
}

/// `TPM2_NV_Write(owner, index, data, offset)`.
pub fn nv_write(index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    let mut body = owner_auth(index);
    body.extend_from_slice(&(data.len() as u16).to_be_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(&offset.to_be_bytes());
    frame(ST_SESSIONS, CC_NV_WRITE, &body)
}

/// `TPM2_NV_Read(owner, index, size, offset)`.
pub fn nv_read(index: u32, size: u16, offset: u16) -> Vec<u8> {
    let mut body = owner_auth(index);
    body.extend_from_slice(&size.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    frame(ST_SESSIONS, CC_NV_READ, &body)
}

/// `TPM2_NV_ReadPublic(index)`.
pub fn nv_read_public(index: u32) -> Vec<u8> {
    frame(ST_NO_SESSIONS, CC_NV_READ_PUBLIC, &index.to_be_bytes())
}

fn ok(response: &[u8], what: &str) -> Result<()> {
    let rc = code(response);
    if rc != 0 {
        bail!("{what} failed with TPM response code {rc:#x}");
    }
    Ok(())
}

/// Writes all of `data` to NV `index` from offset 0, in [`NV_CHUNK`] pieces.
pub fn write_all(tpm: &mut TcpStream, index: u32, data: &[u8]) -> Result<()> {
    for (i, chunk) in data.chunks(NV_CHUNK).enumerate() {
        let response = transact(tpm, &nv_write(index, chunk, (i * NV_CHUNK) as u16))?;
        ok(&response, &format!("NV_Write of {index:#010x}"))?;
    }
    Ok(())
}

/// The dataSize of NV `index`.
pub fn nv_size(tpm: &mut TcpStream, index: u32) -> Result<usize> {
    let response = transact(tpm, &nv_read_public(index))?;
    ok(&response, &format!("NV_ReadPublic of {index:#010x}"))?;
    // TPM2B_NV_PUBLIC: size, nvIndex, nameAlg, attributes, authPolicy, dataSize.
    let policy_len = response
        .get(22..24)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .context("NV_ReadPublic response is truncated")?;
    let at = 24 + policy_len;
    let b = response
        .get(at..at + 2)
        .context("NV_ReadPublic response is truncated")?;
    Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
}

/// Reads `size` (≤ [`NV_CHUNK`]) bytes of NV `index` from offset 0.
pub fn read_start(tpm: &mut TcpStream, index: u32, size: usize) -> Result<Vec<u8>> {
    let response = transact(tpm, &nv_read(index, size as u16, 0))?;
    ok(&response, &format!("NV_Read of {index:#010x}"))?;
    // parameterSize u32, then TPM2B_MAX_NV_BUFFER.
    let len = response
        .get(14..16)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .context("NV_Read response is truncated")?;
    response
        .get(16..16 + len)
        .map(<[u8]>::to_vec)
        .context("NV_Read response is truncated")
}
