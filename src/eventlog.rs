// SPDX-License-Identifier: Apache-2.0
//! The TDX CC event log (CCEL): trimming and parsing (kbs-protocol §4.3).
//!
//! Format: TCG PC Client Platform Firmware Profile, crypto-agile event log. The first record is
//! a TCG_PCClientPCREvent in the SHA-1 format (pcrIndex u32, eventType u32 = EV_NO_ACTION,
//! `digest[20]`, eventSize u32, event) whose event is the "Spec ID Event03" structure declaring
//! each digest algorithm and its size; every later record is a TCG_PCR_EVENT2 (pcrIndex — for
//! TDX the MR index —, eventType, digest count, per digest algId u16 + a digest of the declared
//! size, eventSize u32, event). The CCEL ACPI region is larger than the log: the log ends at the
//! first record whose first 8 bytes are all 0xFF or all 0x00 (guest-components `trim_ccel`).

use std::fmt;

/// One TCG_PCR_EVENT2 record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// pcrIndex: for TDX the MR index (0 = MRTD, 1..=4 = RTMR0..3).
    pub index: u32,
    pub event_type: u32,
    /// (algId, digest), in record order.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// The event data: checked by the tests, for future log summaries.
    #[allow(dead_code)]
    pub data: Vec<u8>,
}

/// Where and what went wrong: "event 17 at offset 0x1a2c: digest algorithm 0x0013 not declared
/// in the Spec ID event". The agent leaves a log that fails to parse out of its evidence.
#[derive(Debug, thiserror::Error)]
#[error("{record} at offset {offset:#x}: {problem}")]
pub struct EventLogError {
    pub record: Record,
    /// Offset of the record in the log.
    pub offset: usize,
    pub problem: Problem,
}

/// The record an error is in: the Spec ID event, or the n-th TCG_PCR_EVENT2 (from 0, as
/// returned by [`parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    SpecId,
    Event(usize),
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::SpecId => f.write_str("the Spec ID event"),
            Record::Event(n) => write!(f, "event {n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{field} ({len} bytes at {at:#x}) runs past the end of {within} ({left} bytes left)")]
    Cut {
        field: &'static str,
        at: usize,
        len: usize,
        left: usize,
        within: &'static str,
    },
    #[error("the first record is not an EV_NO_ACTION event holding \"Spec ID Event03\"")]
    NotSpecId,
    #[error("the Spec ID event declares no digest algorithms")]
    NoAlgorithms,
    #[error("digest algorithm {0:#06x} not declared in the Spec ID event")]
    UndeclaredAlgorithm(u16),
}

pub const EV_NO_ACTION: u32 = 3;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// The log part of a CCEL region: cut at the first record whose first 8 bytes are all 0xFF or
/// all 0x00. Records are walked with the sizes the Spec ID event declares; when the walk fails
/// the input is returned whole, so that [`parse`] reports the problem.
pub fn trim_ccel(raw: &[u8]) -> &[u8] {
    if raw.get(..8).is_some_and(is_end) {
        return &raw[..0];
    }
    match walk(raw) {
        Ok((_, end)) => &raw[..end],
        Err(_) => raw,
    }
}

/// The TCG_PCR_EVENT2 records after the Spec ID event, up to the end of `log` or an end marker
/// (8 bytes of 0xFF or 0x00 where a record would start).
pub fn parse(log: &[u8]) -> Result<Vec<Event>, EventLogError> {
    walk(log).map(|(events, _)| events)
}

fn is_end(head: &[u8]) -> bool {
    head.iter().all(|b| *b == 0xff) || head.iter().all(|b| *b == 0)
}

/// Bounds-checked reads inside one record.
struct Cursor<'a> {
    log: &'a [u8],
    pos: usize,
    record: Record,
    start: usize,
    /// What `log` ends with, for [`Problem::Cut`].
    within: &'static str,
}

impl<'a> Cursor<'a> {
    fn fail(&self, problem: Problem) -> EventLogError {
        EventLogError {
            record: self.record,
            offset: self.start,
            problem,
        }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], EventLogError> {
        let left = self.log.len() - self.pos;
        if len > left {
            let (at, within) = (self.pos, self.within);
            return Err(self.fail(Problem::Cut {
                field,
                at,
                len,
                left,
                within,
            }));
        }
        self.pos += len;
        Ok(&self.log[self.pos - len..self.pos])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EventLogError> {
        self.take(2, field)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EventLogError> {
        self.take(4, field)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parses the Spec ID event, then every record; returns the events and where the log ends.
fn walk(log: &[u8]) -> Result<(Vec<Event>, usize), EventLogError> {
    let mut c = Cursor {
        log,
        pos: 0,
        record: Record::SpecId,
        start: 0,
        within: "the log",
    };
    c.u32("the pcrIndex")?;
    let event_type = c.u32("the eventType")?;
    c.take(20, "the SHA-1 digest")?;
    if event_type != EV_NO_ACTION {
        return Err(c.fail(Problem::NotSpecId));
    }
    let size = c.u32("the eventSize")? as usize;
    if !c
        .take(size, "the Spec ID event data")?
        .starts_with(SPEC_ID_SIGNATURE)
    {
        return Err(c.fail(Problem::NotSpecId));
    }
    let algorithms = spec_id_algorithms(&log[..c.pos])?;

    let mut events = Vec::new();
    while c.pos < log.len() {
        let (start, left) = (c.pos, &log[c.pos..]);
        if is_end(&left[..left.len().min(8)]) {
            break;
        }
        c.record = Record::Event(events.len());
        c.start = start;
        let index = c.u32("the pcrIndex")?;
        let event_type = c.u32("the eventType")?;
        let count = c.u32("the digest count")?;
        let mut digests = Vec::new();
        for _ in 0..count {
            let alg = c.u16("a digest algorithm ID")?;
            let Some((_, len)) = algorithms.iter().find(|(a, _)| *a == alg) else {
                return Err(c.fail(Problem::UndeclaredAlgorithm(alg)));
            };
            digests.push((alg, c.take(usize::from(*len), "a digest")?.to_vec()));
        }
        let size = c.u32("the eventSize")? as usize;
        let data = c.take(size, "the event data")?.to_vec();
        events.push(Event {
            index,
            event_type,
            digests,
            data,
        });
    }
    Ok((events, c.pos))
}

/// The (algId, digestSize) list of a TCG_EfiSpecIdEvent: `signature[16]`, platformClass u32,
/// version minor/major/errata u8, uintnSize u8, numberOfAlgorithms u32, then the pairs.
/// `record` is the whole first record; its event data starts at 32.
fn spec_id_algorithms(record: &[u8]) -> Result<Vec<(u16, u16)>, EventLogError> {
    let within = "the Spec ID event";
    let mut c = Cursor {
        log: record,
        pos: 32 + 24,
        record: Record::SpecId,
        start: 0,
        within,
    };
    let count = c.u32("numberOfAlgorithms")?;
    if count == 0 {
        return Err(c.fail(Problem::NoAlgorithms));
    }
    (0..count)
        .map(|_| Ok((c.u16("an algorithm ID")?, c.u16("a digest size")?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde_json::Value;

    use super::{parse, trim_ccel, Problem, Record};
    use crate::report::hex;

    const CCEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tdx/ccel.bin");
    const PARSED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tdx/ccel-parsed.json"
    ));
    /// Where the recorded log ends (then zeros fill the 1 MiB region), and its second event.
    const END: usize = 0x265e;
    const EVENT_1: usize = 0x151e;

    fn ccel() -> Vec<u8> {
        std::fs::read(CCEL).expect("read tests/data/tdx/ccel.bin")
    }

    /// The names the expected parse uses, for the types and algorithms in it.
    fn type_name(t: u32) -> &'static str {
        match t {
            0x4 => "EV_SEPARATOR",
            0xa => "EV_PLATFORM_CONFIG_FLAGS",
            0x8000_000a => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            _ => "?",
        }
    }

    #[test]
    fn trims_at_the_first_empty_record() {
        let raw = ccel();
        assert_eq!(trim_ccel(&raw).len(), END);
        let mut flagged = raw[..END].to_vec();
        flagged.extend_from_slice(&[0xff; 8]);
        flagged.extend_from_slice(&[0x55; 100]);
        assert_eq!(trim_ccel(&flagged).len(), END);
        assert!(trim_ccel(&[0; 64]).is_empty());
        // A log that cannot be walked is returned whole, for `parse` to explain.
        assert_eq!(trim_ccel(&raw[..100]).len(), 100);
    }

    #[test]
    fn parses_the_recorded_log_as_expected() {
        let raw = ccel();
        let events = parse(trim_ccel(&raw)).unwrap();
        let expected: Value = serde_json::from_str(PARSED).unwrap();
        let expected = expected["uefi_event_logs"].as_array().unwrap();
        assert_eq!(events.len(), expected.len());
        for (event, want) in events.iter().zip(expected) {
            assert_eq!(u64::from(event.index), want["index"].as_u64().unwrap());
            assert_eq!(type_name(event.event_type), want["type_name"]);
            let digests: Vec<(String, String)> = event
                .digests
                .iter()
                .map(|(alg, d)| {
                    (
                        if *alg == 0x0c { "SHA-384" } else { "?" }.to_string(),
                        hex(d),
                    )
                })
                .collect();
            let want_digests: Vec<(String, String)> = want["digests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["alg"].as_str().unwrap().to_string(),
                        d["digest"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(digests, want_digests);
            assert_eq!(
                STANDARD.encode(&event.data),
                want["event"].as_str().unwrap()
            );
        }
        // The untrimmed region parses the same: the zero fill ends the log.
        assert_eq!(parse(&raw).unwrap(), events);
    }

    #[test]
    fn a_digest_running_past_the_end_is_reported() {
        let raw = ccel();
        let err = parse(&raw[..EVENT_1 + 12 + 2 + 10]).unwrap_err();
        assert_eq!(err.record, Record::Event(1));
        assert_eq!(
            err.to_string(),
            "event 1 at offset 0x151e: a digest (48 bytes at 0x152c) runs past the end of the log \
             (10 bytes left)"
        );
    }

    #[test]
    fn an_undeclared_algorithm_is_reported() {
        let mut log = ccel()[..END].to_vec();
        log[EVENT_1 + 12..EVENT_1 + 14].copy_from_slice(&0x13u16.to_le_bytes());
        let err = parse(&log).unwrap_err();
        assert_eq!(err.problem, Problem::UndeclaredAlgorithm(0x13));
        assert_eq!(
            err.to_string(),
            "event 1 at offset 0x151e: digest algorithm 0x0013 not declared in the Spec ID event"
        );
    }

    #[test]
    fn a_log_without_spec_id_event_is_refused() {
        let raw = ccel();
        let err = parse(&raw[0x48..END]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Spec ID event at offset 0x0: the first record is not an EV_NO_ACTION event \
             holding \"Spec ID Event03\""
        );
        let mut spec = raw[..0x48].to_vec();
        spec[28..32].copy_from_slice(&26u32.to_le_bytes());
        let err = parse(&spec[..32 + 26]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Spec ID event at offset 0x0: numberOfAlgorithms (4 bytes at 0x38) runs past the \
             end of the Spec ID event (2 bytes left)"
        );
    }
}
