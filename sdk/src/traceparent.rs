//! W3C Trace Context `traceparent` (version `00`): parse, format, and the
//! child a call makes.
//!
//! Owns: the header's exact grammar (W3C Trace Context §3.2: `00-` 32 hex
//! `-` 16 hex `-` 2 hex, lowercase, neither id all zeros) and fresh ids.
//! Must never: accept a header longer than [`TraceParent::LEN`], carry
//! anything but ids and flags (no baggage, no `tracestate`), or panic on
//! input.

use std::fmt;

/// A `traceparent`: the trace a call belongs to and the span that made it.
///
/// Every HTTP call the SDK makes sends `traceparent` (W3C Trace Context
/// §3.2): a [`child`](TraceParent::child) of the caller's when the caller
/// passed one, else a fresh [`root`](TraceParent::new_root). The broker
/// records the trace id in the audit record, so a tool call, its hop
/// exchanges and its reports line up in one trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent must be 55 characters: 00-<32 hex>-<16 hex>-<2 hex>")]
    Shape,
    #[error("traceparent version must be 00")]
    Version,
    #[error("traceparent ids must be lowercase hex")]
    Hex,
    #[error("traceparent ids must not be all zeros")]
    ZeroId,
}

impl TraceParent {
    /// The header's name (W3C Trace Context §3.2).
    pub const HEADER: &'static str = "traceparent";
    /// The length of a version-00 header value.
    pub const LEN: usize = 55;
    /// The `sampled` trace flag (W3C Trace Context §3.2.2.5).
    const SAMPLED: u8 = 0x01;

    /// Parse a version-00 `traceparent`. Anything else is an error: a
    /// caller's malformed header starts a fresh trace, it is never repaired.
    pub fn parse(s: &str) -> Result<Self, TraceParentError> {
        let s = s.trim_matches(|c| c == ' ' || c == '\t');
        if s.len() != Self::LEN || !s.is_ascii() {
            return Err(TraceParentError::Shape);
        }
        let parts: Vec<&str> = s.split('-').collect();
        let [version, trace, parent, flags] = parts.as_slice() else {
            return Err(TraceParentError::Shape);
        };
        if (version.len(), trace.len(), parent.len(), flags.len()) != (2, 32, 16, 2) {
            return Err(TraceParentError::Shape);
        }
        if *version != "00" {
            return Err(TraceParentError::Version);
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flag = [0u8; 1];
        decode_hex(trace, &mut trace_id)?;
        decode_hex(parent, &mut parent_id)?;
        decode_hex(flags, &mut flag)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags: flag[0],
        })
    }

    /// A new trace, sampled, with random ids (W3C Trace Context §3.2.2.3:
    /// trace ids should be random).
    pub fn new_root() -> Self {
        Self {
            trace_id: random_16(),
            parent_id: random_8(),
            flags: Self::SAMPLED,
        }
    }

    /// The traceparent of a call made inside this one: the same trace and
    /// flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_8(),
            ..*self
        }
    }

    /// `parent`'s child, or a fresh root when there is no parent.
    pub fn child_of(parent: Option<&TraceParent>) -> Self {
        parent.map(TraceParent::child).unwrap_or_else(TraceParent::new_root)
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id of the call this header describes: 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        hex(&self.parent_id)
    }

    pub fn sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl std::str::FromStr for TraceParent {
    type Err = TraceParentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn decode_hex(s: &str, out: &mut [u8]) -> Result<(), TraceParentError> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(TraceParentError::Hex),
    };
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let byte = (digit(pair[0])? << 4) | digit(pair[1])?;
        if let Some(slot) = out.get_mut(i) {
            *slot = byte;
        }
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// 16 random bytes, never all zeros (a v4 UUID's version bits are set).
fn random_16() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// 8 random bytes, never all zeros (the v4 UUID's variant bits are in the
/// second half).
fn random_8() -> [u8; 8] {
    let b = uuid::Uuid::new_v4().into_bytes();
    [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_header_round_trips() {
        let tp = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_gets_a_new_span() {
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.parent_id(), parent.parent_id());
        assert!(!child.sampled(), "flags are inherited");
        assert_eq!(TraceParent::parse(&child.to_string()).unwrap(), child);
    }

    #[test]
    fn a_root_is_sampled_and_well_formed_and_unique() {
        let (a, b) = (TraceParent::new_root(), TraceParent::new_root());
        assert!(a.sampled());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(TraceParent::parse(&a.to_string()).unwrap(), a);
        assert_eq!(TraceParent::child_of(Some(&a)).trace_id(), a.trace_id());
        assert_ne!(TraceParent::child_of(None).trace_id(), a.trace_id());
    }

    #[test]
    fn malformed_headers_are_refused_not_repaired() {
        use TraceParentError::*;
        for (bad, why) in [
            ("", Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", Shape),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Version),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Version),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", Hex),
            ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", Hex),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ZeroId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ZeroId),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", Shape),
            ("00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01", Shape),
        ] {
            assert_eq!(TraceParent::parse(bad), Err(why), "{bad:?}");
        }
        assert!(TraceParent::parse(&"0".repeat(10_000)).is_err());
    }
}
