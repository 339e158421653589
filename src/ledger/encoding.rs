//! The canonical byte encoding's primitives: a writer and a bounds-checked reader of
//! fixed-width little-endian fields (the layout of each record is in the [module
//! doc](super)).

/// Version byte that starts every encoded record. Version 2 replaced the consensus
/// message's single slope by the four Newton signals (slopes and gaps, both directions),
/// without which a validator cannot recompute the Newton step; version 1 is not read.
pub const VERSION: u8 = 2;

/// Type tag of a [`ConsensusMessage`](super::ConsensusMessage) transaction.
pub const TAG_CONSENSUS: u8 = 0x01;
/// Type tag of a [`Settlement`](super::Settlement) transaction.
pub const TAG_SETTLEMENT: u8 = 0x02;
/// Type tag of the genesis [`ProtocolParameters`](super::ProtocolParameters) transaction.
pub const TAG_PARAMETERS: u8 = 0x03;
/// Type tag of a genesis [`AgentRegistration`](super::AgentRegistration) transaction.
pub const TAG_AGENT: u8 = 0x04;
/// Type tag of a genesis [`ValidatorRegistration`](super::ValidatorRegistration) transaction.
pub const TAG_VALIDATOR: u8 = 0x05;
/// Type tag of a [`BlockHeader`](super::BlockHeader).
pub const TAG_HEADER: u8 = 0x10;
/// Type tag of the message a validator signs to vote for a block.
pub const TAG_VOTE: u8 = 0x11;

/// Magic bytes that start an encoded [`Ledger`](super::Ledger).
pub const LEDGER_MAGIC: [u8; 8] = *b"P2PMLDGR";

/// Why bytes are not a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before a field.
    #[error("truncated: {field} needs {needed} bytes at offset {offset}, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Offset of the field in the record.
        offset: usize,
        /// Bytes left at that offset.
        available: usize,
    },
    /// Bytes are left after a complete record.
    #[error("{count} trailing bytes after a complete {record}")]
    TrailingBytes {
        /// The record that was complete.
        record: &'static str,
        /// How many bytes follow it.
        count: usize,
    },
    /// The version byte is not [`VERSION`].
    #[error("unsupported version byte {found} (expected {VERSION})")]
    Version {
        /// The byte found.
        found: u8,
    },
    /// The type tag is not one this record may carry.
    #[error("unexpected type tag {found:#04x} for a {record}")]
    Tag {
        /// The tag found.
        found: u8,
        /// What was being decoded.
        record: &'static str,
    },
    /// An enumerated field holds an unknown code.
    #[error("unknown code {value} for {field}")]
    Code {
        /// The field.
        field: &'static str,
        /// The code found.
        value: u8,
    },
    /// The magic bytes of a ledger file are wrong.
    #[error("not an encoded ledger (bad magic bytes)")]
    Magic,
    /// A count or length does not fit this platform or the input.
    #[error("{field} = {value} is larger than the input allows")]
    Length {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Appends fixed-width little-endian fields to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    /// A writer that starts with the version byte and `tag`.
    pub(crate) fn record(tag: u8) -> Self {
        Writer {
            bytes: vec![VERSION, tag],
        }
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn f64(&mut self, v: f64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(v);
        self
    }
}

/// Reads fixed-width little-endian fields, refusing to read past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                offset: self.pos,
                available,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub(crate) fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(u64::from_le_bytes(self.array(field)?)))
    }

    /// A length field that must not exceed the bytes left (each item taking at least
    /// `min_item` bytes), so a flipped length cannot trigger a huge allocation.
    pub(crate) fn length(
        &mut self,
        field: &'static str,
        wide: bool,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let value = if wide {
            self.u64(field)?
        } else {
            u64::from(self.u32(field)?)
        };
        let left = (self.bytes.len() - self.pos) as u64;
        if value.saturating_mul(min_item.max(1) as u64) > left {
            return Err(DecodeError::Length { field, value });
        }
        usize::try_from(value).map_err(|_| DecodeError::Length { field, value })
    }

    /// Checks the version byte and returns the tag.
    pub(crate) fn header(&mut self) -> Result<u8, DecodeError> {
        let version = self.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::Version { found: version });
        }
        self.u8("type tag")
    }

    /// Succeeds when every byte has been read.
    pub(crate) fn finish(&self, record: &'static str) -> Result<(), DecodeError> {
        let count = self.bytes.len() - self.pos;
        if count == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { record, count })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_and_bounds_checked() {
        let mut w = Writer::record(TAG_VOTE);
        w.u32(0x0102_0304).u64(5).f64(-0.0).u8(7);
        assert_eq!(&w.bytes[..6], &[VERSION, TAG_VOTE, 4, 3, 2, 1]);
        assert_eq!(w.bytes.len(), 2 + 4 + 8 + 8 + 1);
        let mut r = Reader::new(&w.bytes);
        assert_eq!(r.header(), Ok(TAG_VOTE));
        assert_eq!(r.u32("a"), Ok(0x0102_0304));
        assert_eq!(r.u64("b"), Ok(5));
        // -0.0 keeps its sign bit: the encoding is of the bits, not the value.
        assert_eq!(r.f64("c").map(f64::to_bits), Ok((-0.0f64).to_bits()));
        assert!(r.finish("x").is_err());
        assert_eq!(r.u8("d"), Ok(7));
        assert_eq!(r.finish("x"), Ok(()));
        assert!(matches!(r.u8("e"), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut w = Writer::default();
        w.u64(u64::MAX);
        let mut r = Reader::new(&w.bytes);
        assert!(matches!(
            r.length("count", true, 1),
            Err(DecodeError::Length { .. })
        ));
        let mut r = Reader::new(&[9, 0, 0, 0]);
        assert_eq!(r.header(), Err(DecodeError::Version { found: 9 }));
    }
}
