//! The Thrift compact protocol, write side only, as far as Parquet's footer and page headers need it: structs of
//! i32, i64, binary, list and struct fields (Apache Thrift, "Thrift Compact protocol encoding").

/// Compact-protocol type codes of the field and element types used here.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Type {
    /// A 32-bit integer (zigzag varint).
    I32 = 5,
    /// A 64-bit integer (zigzag varint).
    I64 = 6,
    /// Bytes or a UTF-8 string, length-prefixed.
    Binary = 8,
    /// A list.
    List = 9,
    /// A struct.
    Struct = 12,
}

/// Writes one Thrift struct (and the structs and lists nested in it) in the compact protocol.
#[derive(Default)]
pub struct CompactWriter {
    out: Vec<u8>,
    /// The last field id written in each open struct, innermost last.
    last_field: Vec<i16>,
}

impl CompactWriter {
    /// A writer positioned inside a top-level struct.
    pub fn new() -> Self {
        CompactWriter {
            out: Vec::new(),
            last_field: vec![0],
        }
    }

    /// Closes the top-level struct and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.end_struct();
        debug_assert!(self.last_field.is_empty(), "every nested struct was closed");
        self.out
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    fn zigzag(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn field(&mut self, id: i16, kind: Type) {
        let last = self.last_field.last_mut().expect("inside a struct");
        let delta = id - std::mem::replace(last, id);
        if (1..=15).contains(&delta) {
            self.out.push((delta as u8) << 4 | kind as u8);
        } else {
            self.out.push(kind as u8);
            self.zigzag(i64::from(id));
        }
    }

    /// Field `id`: a 32-bit integer.
    pub fn i32(&mut self, id: i16, value: i32) {
        self.field(id, Type::I32);
        self.zigzag(i64::from(value));
    }

    /// Field `id`: a 64-bit integer.
    pub fn i64(&mut self, id: i16, value: i64) {
        self.field(id, Type::I64);
        self.zigzag(value);
    }

    /// Field `id`: bytes or a string.
    pub fn binary(&mut self, id: i16, value: &[u8]) {
        self.field(id, Type::Binary);
        self.binary_element(value);
    }

    /// A list element (or field value) of bytes.
    pub fn binary_element(&mut self, value: &[u8]) {
        self.varint(value.len() as u64);
        self.out.extend_from_slice(value);
    }

    /// A list element (or field value) that is a 32-bit integer.
    pub fn i32_element(&mut self, value: i32) {
        self.zigzag(i64::from(value));
    }

    /// Field `id`: a list of `len` elements of `element`, which the caller writes next (structs with
    /// [`begin_element_struct`](Self::begin_element_struct) ... [`end_struct`](Self::end_struct)).
    pub fn list(&mut self, id: i16, element: Type, len: usize) {
        self.field(id, Type::List);
        if len < 15 {
            self.out.push((len as u8) << 4 | element as u8);
        } else {
            self.out.push(0xf0 | element as u8);
            self.varint(len as u64);
        }
    }

    /// Field `id`: a struct whose fields follow, up to [`end_struct`](Self::end_struct).
    pub fn begin_struct(&mut self, id: i16) {
        self.field(id, Type::Struct);
        self.last_field.push(0);
    }

    /// A struct element of a list; its fields follow, up to [`end_struct`](Self::end_struct).
    pub fn begin_element_struct(&mut self) {
        self.last_field.push(0);
    }

    /// Ends the innermost open struct.
    pub fn end_struct(&mut self) {
        self.out.push(0);
        self.last_field.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_use_short_deltas_and_long_ids_and_zigzag_varints() {
        let mut writer = CompactWriter::new();
        writer.i32(1, -1);
        writer.i64(3, 300);
        writer.binary(20, b"ab");
        writer.list(21, Type::I32, 2);
        writer.i32_element(0);
        writer.i32_element(3);
        writer.begin_struct(22);
        writer.i32(1, 1);
        writer.end_struct();
        let bytes = writer.finish();
        assert_eq!(
            bytes,
            [
                0x15, 0x01, // field 1 (delta 1), i32 -1 -> zigzag 1
                0x26, 0xd8, 0x04, // field 3 (delta 2), i64 300 -> zigzag 600
                0x08, 0x28, 0x02, b'a',
                b'b', // field 20 (long form: type, zigzag id 40), binary "ab"
                0x19, 0x25, 0x00, 0x06, // field 21 (delta 1), list of 2 i32: 0, 3
                0x1c, 0x15, 0x02, 0x00, // field 22, struct { field 1: 1 }
                0x00, // end of the top-level struct
            ]
        );
    }

    #[test]
    fn long_lists_carry_their_size_as_a_varint() {
        let mut writer = CompactWriter::new();
        writer.list(1, Type::Binary, 20);
        assert_eq!(writer.finish(), [0x19, 0xf8, 20, 0x00]);
    }
}
