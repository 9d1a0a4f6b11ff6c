//! Plain CDR, little-endian, as rmw_zenoh puts it on the wire: the encapsulation header `00 01 00 00`, then
//! each primitive aligned to its size relative to the end of that header; strings as a `u32` length that
//! counts the terminating NUL, the bytes and the NUL; sequences as a `u32` count then the elements (aligned only
//! when there is at least one).

use crate::io::protocol::{RejectKind, Rejection};

/// The encapsulation header of little-endian plain CDR.
pub const ENCAPSULATION: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Builds one CDR payload.
#[derive(Debug, Default)]
pub struct CdrWriter {
    bytes: Vec<u8>,
}

impl CdrWriter {
    /// A payload holding only the encapsulation header.
    pub fn new() -> Self {
        CdrWriter {
            bytes: ENCAPSULATION.to_vec(),
        }
    }

    fn align(&mut self, size: usize) {
        while !(self.bytes.len() - ENCAPSULATION.len()).is_multiple_of(size) {
            self.bytes.push(0);
        }
    }

    /// Appends a `uint32`.
    pub fn u32(&mut self, value: u32) {
        self.align(4);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends an `int32`.
    pub fn i32(&mut self, value: i32) {
        self.align(4);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends a `uint8`.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// Appends a `string`.
    pub fn string(&mut self, value: &str) {
        self.u32(value.len() as u32 + 1);
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
    }

    /// Appends a `string[]`.
    pub fn strings<S: AsRef<str>>(&mut self, values: &[S]) {
        self.u32(values.len() as u32);
        for value in values {
            self.string(value.as_ref());
        }
    }

    /// Appends a `float64[]`.
    pub fn f64s(&mut self, values: impl ExactSizeIterator<Item = f64>) {
        self.u32(values.len() as u32);
        if values.len() > 0 {
            self.align(8);
        }
        for value in values {
            self.bytes.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Appends a `uint8[]`.
    pub fn byte_sequence(&mut self, values: &[u8]) {
        self.u32(values.len() as u32);
        self.bytes.extend_from_slice(values);
    }

    /// The finished payload.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads one CDR payload; every read checks its bounds and fails as [`RejectKind::Malformed`], naming what it
/// was reading.
#[derive(Debug)]
pub struct CdrReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> CdrReader<'a> {
    /// A reader after the encapsulation header, which must be little-endian plain CDR.
    pub fn new(bytes: &'a [u8]) -> Result<Self, Rejection> {
        match bytes.get(..2) {
            Some([0x00, 0x01]) if bytes.len() >= ENCAPSULATION.len() => Ok(CdrReader {
                bytes,
                at: ENCAPSULATION.len(),
            }),
            _ => Err(Rejection::new(
                RejectKind::Malformed,
                format!(
                    "not little-endian plain CDR (encapsulation {:02x?}, expected 00 01 00 00)",
                    &bytes[..bytes.len().min(4)]
                ),
            )),
        }
    }

    fn align(&mut self, size: usize) {
        let offset = self.at - ENCAPSULATION.len();
        self.at += (size - offset % size) % size;
    }

    fn take(&mut self, count: usize, what: &str) -> Result<&'a [u8], Rejection> {
        let end = self
            .at
            .checked_add(count)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!(
                    "{what}: {count} bytes needed at offset {}, the payload has {}",
                    self.at,
                    self.bytes.len()
                ),
            ));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// Reads a `uint32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, Rejection> {
        self.align(4);
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    /// Reads an `int32`.
    pub fn i32(&mut self, what: &str) -> Result<i32, Rejection> {
        Ok(self.u32(what)? as i32)
    }

    /// Reads a `uint8`.
    pub fn u8(&mut self, what: &str) -> Result<u8, Rejection> {
        Ok(self.take(1, what)?[0])
    }

    /// Reads a `string` (UTF-8, NUL-terminated).
    pub fn string(&mut self, what: &str) -> Result<&'a str, Rejection> {
        let length = self.u32(what)? as usize;
        let bytes = self.take(length, what)?;
        let text = match bytes.split_last() {
            Some((0, text)) => std::str::from_utf8(text).ok(),
            _ => None,
        };
        text.ok_or_else(|| {
            Rejection::new(
                RejectKind::Malformed,
                format!("{what}: not a NUL-terminated UTF-8 string"),
            )
        })
    }

    /// Reads a sequence count, checked against the bytes left (each element at least `element_size` bytes).
    pub fn count(&mut self, element_size: usize, what: &str) -> Result<usize, Rejection> {
        let count = self.u32(what)? as usize;
        let left = self.bytes.len() - self.at;
        if count.saturating_mul(element_size) > left {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{what}: {count} elements declared, {left} bytes left"),
            ));
        }
        Ok(count)
    }

    /// Reads a `float64[]` into `out` (cleared first; its capacity is reused).
    pub fn f64s(&mut self, out: &mut Vec<f64>, what: &str) -> Result<(), Rejection> {
        let count = self.count(8, what)?;
        out.clear();
        if count > 0 {
            self.align(8);
            let bytes = self.take(count * 8, what)?;
            out.extend(
                bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
            );
        }
        Ok(())
    }

    /// Reads a `uint8[]`.
    pub fn byte_sequence(&mut self, what: &str) -> Result<&'a [u8], Rejection> {
        let count = self.count(1, what)?;
        self.take(count, what)
    }

    /// Skips a `string[]`, or reads it into `out` when given.
    pub fn strings(
        &mut self,
        mut out: Option<&mut Vec<&'a str>>,
        what: &str,
    ) -> Result<(), Rejection> {
        let count = self.count(5, what)?;
        if let Some(out) = out.as_deref_mut() {
            out.clear();
        }
        for _ in 0..count {
            let text = self.string(what)?;
            if let Some(out) = out.as_deref_mut() {
                out.push(text);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_with_its_alignment() {
        let mut writer = CdrWriter::new();
        writer.u32(7);
        writer.string("ab");
        writer.f64s([].into_iter());
        writer.f64s([1.5, -2.0].into_iter());
        writer.u8(9);
        writer.byte_sequence(&[1, 2, 3]);
        let bytes = writer.finish();
        let mut reader = CdrReader::new(&bytes).unwrap();
        assert_eq!(reader.u32("a").unwrap(), 7);
        assert_eq!(reader.string("b").unwrap(), "ab");
        let mut values = Vec::new();
        reader.f64s(&mut values, "c").unwrap();
        assert!(values.is_empty());
        reader.f64s(&mut values, "d").unwrap();
        assert_eq!(values, [1.5, -2.0]);
        assert_eq!(reader.u8("e").unwrap(), 9);
        assert_eq!(reader.byte_sequence("f").unwrap(), [1, 2, 3]);
        // Every cut of the payload is refused, never read past its end.
        for cut in 0..bytes.len() {
            let Ok(mut reader) = CdrReader::new(&bytes[..cut]) else {
                continue;
            };
            let whole = (|| {
                reader.u32("a")?;
                reader.string("b")?;
                reader.f64s(&mut values, "c")?;
                reader.f64s(&mut values, "d")?;
                reader.u8("e")?;
                reader.byte_sequence("f").map(|_| ())
            })();
            assert!(whole.is_err(), "cut at {cut}");
        }
    }
}
