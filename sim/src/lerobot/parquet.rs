//! A small Parquet writer for the tables of a LeRobotDataset: nullable columns of int64, float32 and
//! strings, lists of those, and images (`struct<bytes: binary, path: string>`, as Hugging Face `datasets` stores
//! them), written uncompressed and PLAIN-encoded, one data page per column per row group (Apache Parquet format
//! 2.x; the footer in Thrift's compact protocol). Every value written is present; only an image's `path` is null.

use super::thrift::{CompactWriter, Type};
use std::io::Write;

const MAGIC: &[u8; 4] = b"PAR1";

/// Parquet's physical types (the ones written here).
#[derive(Clone, Copy)]
enum Physical {
    Int64 = 2,
    Float = 4,
    ByteArray = 6,
}

/// The values of one column or of one list column's elements, one entry per value.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// 64-bit integers.
    Int64(Vec<i64>),
    /// 32-bit floats.
    Float32(Vec<f32>),
    /// UTF-8 strings.
    Utf8(Vec<String>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int64(v) => v.len(),
            Values::Float32(v) => v.len(),
            Values::Utf8(v) => v.len(),
        }
    }

    fn physical(&self) -> Physical {
        match self {
            Values::Int64(_) => Physical::Int64,
            Values::Float32(_) => Physical::Float,
            Values::Utf8(_) => Physical::ByteArray,
        }
    }

    /// PLAIN encoding of values `range`.
    fn plain(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        match self {
            Values::Int64(v) => v[range]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::Float32(v) => v[range]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::Utf8(v) => v[range].iter().for_each(|s| plain_bytes(s.as_bytes(), out)),
        }
    }
}

fn plain_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// One column's data, a value per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// A scalar per row.
    Scalar(Values),
    /// A list per row: row `r` holds `values[offsets[r]..offsets[r + 1]]` (at least one value each).
    List {
        /// Where each row's values start, and the end: rows + 1 entries.
        offsets: Vec<usize>,
        /// The elements, row after row.
        values: Values,
    },
    /// An encoded image (PNG) per row, stored as `struct<bytes, path>` with a null path.
    Image(Vec<Vec<u8>>),
}

impl Column {
    /// A list column whose rows all hold `width` values.
    pub fn fixed_lists(values: Values, width: usize) -> Self {
        let rows = values.len() / width.max(1);
        Column::List {
            offsets: (0..=rows).map(|row| row * width).collect(),
            values,
        }
    }

    fn rows(&self) -> usize {
        match self {
            Column::Scalar(values) => values.len(),
            Column::List { offsets, .. } => offsets.len() - 1,
            Column::Image(images) => images.len(),
        }
    }
}

/// A table: named columns of equal length, and key-value metadata for the footer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    columns: Vec<(String, Column)>,
    metadata: Vec<(String, String)>,
}

/// A leaf column of the Parquet schema and how to write its pages.
struct Leaf<'a> {
    path: Vec<&'a str>,
    physical: Physical,
    max_repetition: u32,
    max_definition: u32,
    column: &'a Column,
    /// For an image: the `bytes` leaf (true) or the null `path` leaf (false).
    image_bytes: bool,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Adds a column (all columns must have the same number of rows).
    pub fn column(mut self, name: impl Into<String>, column: Column) -> Self {
        self.columns.push((name.into(), column));
        self
    }

    /// Adds a footer key-value pair (e.g. `huggingface` features or `pandas` index metadata).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, column)| column.rows())
    }

    fn leaves(&self) -> Vec<Leaf<'_>> {
        let mut leaves = Vec::new();
        for (name, column) in &self.columns {
            match column {
                Column::Scalar(values) => leaves.push(Leaf {
                    path: vec![name],
                    physical: values.physical(),
                    max_repetition: 0,
                    max_definition: 1,
                    column,
                    image_bytes: false,
                }),
                Column::List { values, .. } => leaves.push(Leaf {
                    path: vec![name, "list", "element"],
                    physical: values.physical(),
                    max_repetition: 1,
                    max_definition: 3,
                    column,
                    image_bytes: false,
                }),
                Column::Image(_) => {
                    for (field, image_bytes) in [("bytes", true), ("path", false)] {
                        leaves.push(Leaf {
                            path: vec![name, field],
                            physical: Physical::ByteArray,
                            max_repetition: 0,
                            max_definition: 2,
                            column,
                            image_bytes,
                        });
                    }
                }
            }
        }
        leaves
    }

    /// Writes the table as a Parquet file, in row groups of about `group_bytes` of data at most (at least one
    /// row each).
    pub fn write(&self, out: &mut impl Write, group_bytes: usize) -> std::io::Result<()> {
        for (name, column) in &self.columns {
            assert_eq!(
                column.rows(),
                self.rows(),
                "column {name} has as many rows as the table"
            );
        }
        let leaves = self.leaves();
        out.write_all(MAGIC)?;
        let mut position = MAGIC.len() as i64;
        let mut groups = Vec::new();
        let mut start = 0;
        loop {
            let end = self.group_end(start, group_bytes);
            let mut chunks = Vec::new();
            for leaf in &leaves {
                let (page, values) = data_page(leaf, start..end);
                out.write_all(&page)?;
                chunks.push(ChunkMeta {
                    offset: position,
                    size: page.len() as i64,
                    values,
                });
                position += page.len() as i64;
            }
            groups.push((chunks, (end - start) as i64));
            start = end;
            if start >= self.rows() {
                break;
            }
        }
        let footer = self.footer(&leaves, &groups);
        out.write_all(&footer)?;
        out.write_all(&(footer.len() as u32).to_le_bytes())?;
        out.write_all(MAGIC)
    }

    /// The end of the row group starting at `start`: rows until `budget` bytes of values are reached.
    fn group_end(&self, start: usize, budget: usize) -> usize {
        let mut bytes = 0;
        let mut end = start;
        while end < self.rows() && (end == start || bytes < budget) {
            bytes += self
                .columns
                .iter()
                .map(|(_, c)| row_bytes(c, end))
                .sum::<usize>();
            end += 1;
        }
        end
    }

    fn footer(&self, leaves: &[Leaf<'_>], groups: &[(Vec<ChunkMeta>, i64)]) -> Vec<u8> {
        let mut w = CompactWriter::new();
        w.i32(1, 2); // version
        let schema = self.schema_elements();
        w.list(2, Type::Struct, schema.len());
        for element in &schema {
            element.write(&mut w);
        }
        w.i64(3, self.rows() as i64);
        w.list(4, Type::Struct, groups.len());
        for (chunks, rows) in groups {
            w.begin_element_struct();
            w.list(1, Type::Struct, chunks.len());
            for (leaf, chunk) in leaves.iter().zip(chunks) {
                w.begin_element_struct();
                w.i64(2, chunk.offset); // file_offset
                w.begin_struct(3); // ColumnMetaData
                w.i32(1, leaf.physical as i32);
                w.list(2, Type::I32, 2);
                w.i32_element(0); // PLAIN
                w.i32_element(3); // RLE (levels)
                w.list(3, Type::Binary, leaf.path.len());
                for part in &leaf.path {
                    w.binary_element(part.as_bytes());
                }
                w.i32(4, 0); // UNCOMPRESSED
                w.i64(5, chunk.values);
                w.i64(6, chunk.size);
                w.i64(7, chunk.size);
                w.i64(9, chunk.offset); // data_page_offset
                w.end_struct();
                w.end_struct();
            }
            w.i64(2, chunks.iter().map(|c| c.size).sum());
            w.i64(3, *rows);
            w.end_struct();
        }
        if !self.metadata.is_empty() {
            w.list(5, Type::Struct, self.metadata.len());
            for (key, value) in &self.metadata {
                w.begin_element_struct();
                w.binary(1, key.as_bytes());
                w.binary(2, value.as_bytes());
                w.end_struct();
            }
        }
        w.binary(6, concat!("rtchunk ", env!("CARGO_PKG_VERSION")).as_bytes());
        w.finish()
    }

    fn schema_elements(&self) -> Vec<SchemaElement<'_>> {
        let mut elements = vec![SchemaElement::group("schema", self.columns.len(), None)];
        elements[0].repetition = None;
        for (name, column) in &self.columns {
            match column {
                Column::Scalar(values) => elements.push(SchemaElement::leaf(name, values)),
                Column::List { values, .. } => {
                    elements.push(SchemaElement::group(name, 1, Some(CONVERTED_LIST)));
                    let mut list = SchemaElement::group("list", 1, None);
                    list.repetition = Some(REPEATED);
                    elements.push(list);
                    elements.push(SchemaElement::leaf("element", values));
                }
                Column::Image(_) => {
                    elements.push(SchemaElement::group(name, 2, None));
                    elements.extend([
                        SchemaElement::optional("bytes", Physical::ByteArray, None),
                        SchemaElement::optional("path", Physical::ByteArray, Some(CONVERTED_UTF8)),
                    ]);
                }
            }
        }
        elements
    }
}

/// Value bytes of one row of a column (for sizing row groups).
fn row_bytes(column: &Column, row: usize) -> usize {
    match column {
        Column::Scalar(_) => 8,
        Column::List { offsets, .. } => (offsets[row + 1] - offsets[row]) * 8,
        Column::Image(images) => images[row].len(),
    }
}

struct ChunkMeta {
    offset: i64,
    size: i64,
    values: i64,
}

const OPTIONAL: i32 = 1;
const REPEATED: i32 = 2;
const CONVERTED_UTF8: i32 = 0;
const CONVERTED_LIST: i32 = 3;

struct SchemaElement<'a> {
    name: &'a str,
    physical: Option<Physical>,
    repetition: Option<i32>,
    children: Option<usize>,
    converted: Option<i32>,
}

impl<'a> SchemaElement<'a> {
    fn group(name: &'a str, children: usize, converted: Option<i32>) -> Self {
        SchemaElement {
            name,
            physical: None,
            repetition: Some(OPTIONAL),
            children: Some(children),
            converted,
        }
    }

    /// An optional leaf holding `values`' type (strings marked UTF-8).
    fn leaf(name: &'a str, values: &Values) -> Self {
        let converted = matches!(values, Values::Utf8(_)).then_some(CONVERTED_UTF8);
        SchemaElement::optional(name, values.physical(), converted)
    }

    fn optional(name: &'a str, physical: Physical, converted: Option<i32>) -> Self {
        SchemaElement {
            name,
            physical: Some(physical),
            repetition: Some(OPTIONAL),
            children: None,
            converted,
        }
    }

    fn write(&self, w: &mut CompactWriter) {
        w.begin_element_struct();
        if let Some(physical) = self.physical {
            w.i32(1, physical as i32);
        }
        if let Some(repetition) = self.repetition {
            w.i32(3, repetition);
        }
        w.binary(4, self.name.as_bytes());
        if let Some(children) = self.children {
            w.i32(5, children as i32);
        }
        if let Some(converted) = self.converted {
            w.i32(6, converted);
        }
        w.end_struct();
    }
}

/// One uncompressed data page (v1) of `leaf` over `rows`, with its header; and how many levels it holds.
fn data_page(leaf: &Leaf<'_>, rows: std::ops::Range<usize>) -> (Vec<u8>, i64) {
    let mut repetition = Vec::new();
    let mut definition = Vec::new();
    let mut body = Vec::new();
    match leaf.column {
        Column::Scalar(values) => {
            definition.push((rows.len(), 1));
            values.plain(rows.clone(), &mut body);
        }
        Column::List { offsets, values } => {
            for row in rows.clone() {
                let width = offsets[row + 1] - offsets[row];
                repetition.push((1, 0));
                if width > 1 {
                    repetition.push((width - 1, 1));
                }
                definition.push((width, leaf.max_definition));
            }
            values.plain(offsets[rows.start]..offsets[rows.end], &mut body);
        }
        Column::Image(images) => {
            if leaf.image_bytes {
                definition.push((rows.len(), 2));
                images[rows.clone()]
                    .iter()
                    .for_each(|png| plain_bytes(png, &mut body));
            } else {
                definition.push((rows.len(), 1));
            }
        }
    }
    let levels: usize = definition.iter().map(|(count, _)| count).sum();
    let mut data = Vec::new();
    if leaf.max_repetition > 0 {
        levels_block(&repetition, leaf.max_repetition, &mut data);
    }
    levels_block(&definition, leaf.max_definition, &mut data);
    data.extend_from_slice(&body);
    let mut header = CompactWriter::new();
    header.i32(1, 0); // DATA_PAGE
    header.i32(2, data.len() as i32);
    header.i32(3, data.len() as i32);
    header.begin_struct(5); // DataPageHeader
    header.i32(1, levels as i32);
    header.i32(2, 0); // PLAIN
    header.i32(3, 3); // RLE
    header.i32(4, 3); // RLE
    header.end_struct();
    let mut page = header.finish();
    page.extend_from_slice(&data);
    (page, levels as i64)
}

/// Levels as runs `(count, level)`, RLE-encoded (the hybrid encoding's RLE runs only), with the 4-byte length
/// prefix of a v1 data page.
fn levels_block(runs: &[(usize, u32)], max_level: u32, out: &mut Vec<u8>) {
    let width_bytes = (32 - max_level.leading_zeros()).div_ceil(8) as usize;
    let mut block = Vec::new();
    let mut merged: Vec<(usize, u32)> = Vec::new();
    for &(count, level) in runs.iter().filter(|(count, _)| *count > 0) {
        match merged.last_mut() {
            Some((n, l)) if *l == level => *n += count,
            _ => merged.push((count, level)),
        }
    }
    for (count, level) in merged {
        let mut header = (count as u64) << 1;
        while header >= 0x80 {
            block.push((header as u8 & 0x7f) | 0x80);
            header >>= 7;
        }
        block.push(header as u8);
        block.extend_from_slice(&level.to_le_bytes()[..width_bytes]);
    }
    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
    out.extend_from_slice(&block);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_runs_are_merged_and_rle_encoded_with_a_length_prefix() {
        let mut out = Vec::new();
        levels_block(&[(1, 0), (2, 1), (1, 0), (2, 1), (0, 1)], 1, &mut out);
        assert_eq!(out, [8, 0, 0, 0, 2, 0, 4, 1, 2, 0, 4, 1]);
        let mut out = Vec::new();
        levels_block(&[(200, 3)], 3, &mut out);
        assert_eq!(out, [3, 0, 0, 0, 0x90, 0x03, 3]);
    }

    #[test]
    fn a_file_starts_and_ends_with_the_magic_and_names_its_footer_length() {
        let table = Table::new()
            .column("x", Column::Scalar(Values::Int64(vec![1, 2, 3])))
            .column("v", Column::fixed_lists(Values::Float32(vec![0.5; 6]), 2));
        let mut bytes = Vec::new();
        table.write(&mut bytes, 16).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(&bytes[bytes.len() - 4..], MAGIC);
        let footer =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        assert!((footer as usize) < bytes.len() - 12);
    }
}
