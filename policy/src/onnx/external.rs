//! Which external-data files an ONNX model uses, read straight from its protobuf bytes (no ONNX library): the
//! `location` of every tensor stored outside the graph file, in the graph's initializers, in node attributes
//! and in nested subgraphs. The bundle loader hashes and confines each of them like the graph itself.

use std::collections::BTreeSet;

/// A protobuf field's payload.
enum Payload<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads the fields of one protobuf message; malformed bytes are an error.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or("the model ends inside a number")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "a field longer than memory")?;
        if n > self.bytes.len() {
            return Err("a field runs past the end of the model".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Payload<'a>), String>> {
        if self.bytes.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let payload = match key & 7 {
                0 => self.varint().map(|_| Payload::Varint)?,
                1 => self.take(8).map(|_| Payload::Fixed)?,
                2 => {
                    let n = self.varint()?;
                    Payload::Bytes(self.take(n)?)
                }
                5 => self.take(4).map(|_| Payload::Fixed)?,
                other => return Err(format!("wire type {other} is not used by ONNX")),
            };
            Ok((key >> 3, payload))
        })())
    }
}

/// Calls `visit` with the number and bytes of every length-delimited field of `message`.
fn each_message<'a>(
    message: &'a [u8],
    mut visit: impl FnMut(u64, &'a [u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut fields = Fields { bytes: message };
    while let Some(field) = fields.next_field() {
        if let (number, Payload::Bytes(bytes)) = field? {
            visit(number, bytes)?;
        }
    }
    Ok(())
}

/// The external-data locations a serialised `ModelProto` names.
pub(crate) fn external_locations(model: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut found = BTreeSet::new();
    // ModelProto.graph = 7.
    each_message(model, |number, bytes| match number {
        7 => graph(bytes, &mut found, 0),
        _ => Ok(()),
    })?;
    Ok(found)
}

const MAX_NESTING: usize = 64;

/// GraphProto: node = 1, initializer = 5, sparse_initializer = 15.
fn graph(bytes: &[u8], found: &mut BTreeSet<String>, depth: usize) -> Result<(), String> {
    if depth > MAX_NESTING {
        return Err("subgraphs nested too deeply".into());
    }
    each_message(bytes, |number, bytes| match number {
        1 => node(bytes, found, depth),
        5 => tensor(bytes, found),
        15 => sparse_tensor(bytes, found),
        _ => Ok(()),
    })
}

/// NodeProto: attribute = 5; AttributeProto: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22,
/// sparse_tensors = 23.
fn node(bytes: &[u8], found: &mut BTreeSet<String>, depth: usize) -> Result<(), String> {
    each_message(bytes, |number, attribute| match number {
        5 => each_message(attribute, |number, bytes| match number {
            5 | 10 => tensor(bytes, found),
            6 | 11 => graph(bytes, found, depth + 1),
            22 | 23 => sparse_tensor(bytes, found),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

/// SparseTensorProto: values = 1, indices = 2 (both TensorProto).
fn sparse_tensor(bytes: &[u8], found: &mut BTreeSet<String>) -> Result<(), String> {
    each_message(bytes, |number, bytes| match number {
        1 | 2 => tensor(bytes, found),
        _ => Ok(()),
    })
}

/// TensorProto: external_data = 13, entries of StringStringEntryProto (key = 1, value = 2).
fn tensor(bytes: &[u8], found: &mut BTreeSet<String>) -> Result<(), String> {
    each_message(bytes, |number, entry| {
        if number != 13 {
            return Ok(());
        }
        let (mut key, mut value) = (None, None);
        each_message(entry, |number, bytes| {
            match number {
                1 => key = Some(bytes),
                2 => value = Some(bytes),
                _ => {}
            }
            Ok(())
        })?;
        if key == Some(b"location".as_slice()) {
            let location = value.ok_or("an external-data entry without a location")?;
            let location = std::str::from_utf8(location)
                .map_err(|_| "an external-data location that is not UTF-8")?;
            found.insert(location.to_string());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn finds_locations_in_initializers_and_subgraphs_and_refuses_garbage() {
        let entry = [field(1, b"location"), field(2, b"weights.bin")].concat();
        let tensor = [field(1, &[8, 1]), field(13, &entry)].concat();
        let inner = field(5, &tensor);
        let attribute = field(6, &inner);
        let node = field(5, &attribute);
        let other = [field(1, b"location"), field(2, b"more.bin")].concat();
        let graph = [field(1, &node), field(5, &field(13, &other))].concat();
        let model = [vec![8, 7], field(7, &graph)].concat();
        let found = external_locations(&model).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["more.bin", "weights.bin"]
        );
        assert!(external_locations(&[0x3a, 200, 1]).is_err());
        assert!(external_locations(&[0x0b]).is_err());
    }
}
