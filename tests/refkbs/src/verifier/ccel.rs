// SPDX-License-Identifier: Apache-2.0
//! The CC event log replay of the Trustee TDX verifier (kbs-protocol.md
//! §4.3, `CcEventLog::replay_and_match`): a TCG2 crypto-agile log whose
//! events of index 1..4 extend RTMR0..3 from zero, RTMR = SHA-384(RTMR ‖
//! digest); a malformed log fails the attestation. The log ends at 0xFF
//! padding, a zero header or the end of the data (a log that fills the
//! CCEL area has no terminator), so one cut at an event boundary replays
//! cleanly, to RTMRs that the comparison with the quote then refuses.
//!
//! Written apart from the agent's parser (`src/eventlog.rs`) on purpose:
//! the same misreading on both sides would pass every test.

use std::collections::HashMap;

use anyhow::{bail, Context as _, Result};
use ring::digest;

const EV_NO_ACTION: u32 = 3;
const SHA384: u16 = 0x000c;

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    let bytes = b.get(at..at + 4).context("the event log is cut short")?;
    Ok(u32::from_le_bytes(bytes.try_into()?))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    let bytes = b.get(at..at + 2).context("the event log is cut short")?;
    Ok(u16::from_le_bytes(bytes.try_into()?))
}

/// RTMR0..3 as `log` extends them.
pub fn replay(log: &[u8]) -> Result<[[u8; 48]; 4]> {
    // The Spec ID event: a SHA-1-format record (index, type, digest[20],
    // size, data); its data declares (algId, digest size) pairs at 28.
    let spec_len = u32_at(log, 28)? as usize;
    let spec = log
        .get(32..32 + spec_len)
        .context("the Spec ID event is cut short")?;
    if u32_at(log, 4)? != EV_NO_ACTION || !spec.starts_with(b"Spec ID Event03\0") {
        bail!("the event log does not start with a Spec ID event");
    }
    let mut sizes = HashMap::new();
    for i in 0..u32_at(spec, 24)? as usize {
        sizes.insert(
            u16_at(spec, 28 + 4 * i)?,
            u16_at(spec, 30 + 4 * i)? as usize,
        );
    }
    let mut rtmrs = [[0u8; 48]; 4];
    let mut at = 32 + spec_len;
    while let Some(head) = log.get(at..at + 8) {
        if head == [0xff; 8] || head == [0; 8] {
            break;
        }
        let (index, kind) = (u32_at(log, at)?, u32_at(log, at + 4)?);
        let mut p = at + 12;
        let mut sha384 = None;
        for _ in 0..u32_at(log, at + 8)? {
            let alg = u16_at(log, p)?;
            let size = *sizes
                .get(&alg)
                .with_context(|| format!("undeclared algorithm {alg:#x}"))?;
            let digest = log
                .get(p + 2..p + 2 + size)
                .context("a digest is cut short")?;
            if alg == SHA384 {
                sha384 = Some(digest);
            }
            p += 2 + size;
        }
        at = p + 4 + u32_at(log, p)? as usize;
        if at > log.len() {
            bail!("an event's data is cut short");
        }
        if (1..=4).contains(&index) && kind != EV_NO_ACTION {
            let digest = sha384.context("an RTMR event without a SHA-384 digest")?;
            let rtmr = &mut rtmrs[index as usize - 1];
            let mut ctx = digest::Context::new(&digest::SHA384);
            ctx.update(rtmr);
            ctx.update(digest);
            rtmr.copy_from_slice(ctx.finish().as_ref());
        }
    }
    Ok(rtmrs)
}

#[cfg(test)]
mod tests {
    use super::replay;

    const CCEL: &[u8] = include_bytes!("../../../data/tdx/ccel.bin");

    #[test]
    fn replays_the_recorded_log_and_refuses_a_broken_one() {
        let rtmrs = replay(CCEL).unwrap();
        // Trustee's log measures into RTMR0 and RTMR1 only.
        assert!(rtmrs[0] != [0; 48] && rtmrs[1] != [0; 48]);
        assert_eq!(rtmrs[2..], [[0; 48]; 2]);
        // Cut inside the second event: incomplete, an error.
        assert!(replay(&CCEL[..0x1530]).is_err());
        assert!(replay(&CCEL[0x48..]).is_err(), "no Spec ID event");
    }
}
