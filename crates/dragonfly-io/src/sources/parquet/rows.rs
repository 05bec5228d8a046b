//! Rows of an archive file back to the JSON lines they were written from.
//!
//! The inverse of the writer's [`columns`](crate::sinks::parquet::columns): `Int64` is an
//! integer (exact), `Float64` a number with a fraction or an exponent (shortest text that
//! reads back as the same double), a typed timestamp the text it was written from (its
//! field's offset, [`timestamps`]), `Utf8` a string (escaped), a `Utf8` column marked
//! `dragonfly:json` its JSON text as written, a struct an object (fields in the schema's
//! order), a list an array. A null field is left out of its object (Parquet does not tell
//! a field the event lacked from an explicit `null`, and the writer's merged schemas make
//! every field an event of another shape lacked null); a null element of a list is `null`.
//!
//! [`Shape::of`] accepts only what the writer makes — the types above and `Null`, lists
//! of them, structs of them — and names the first column it does not: a file with any other
//! type was not written by this engine and is not read.
//!
//! Cost: the shape is built once per file and bound to each record batch's arrays once;
//! a row then costs its own non-null values (one type test per value, no allocation beyond
//! the output line).

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

use crate::sinks::parquet::columns::{JSON_METADATA, UTC};
use crate::sinks::parquet::timestamps::{self, OFFSET_METADATA};

/// What a column holds, checked against what the writer makes.
#[derive(Debug, Clone)]
pub enum Shape {
    /// Only nulls.
    Null,
    /// Booleans.
    Bool,
    /// Integers.
    Int,
    /// Doubles.
    Float,
    /// Typed timestamps, written back as text with this UTC offset (minutes).
    Time(i32),
    /// Strings (`json`: each is JSON text, written as it is).
    Text {
        /// The column holds JSON text.
        json: bool,
    },
    /// An object: each field's `"name":` (escaped) and its shape.
    Struct(Vec<(Vec<u8>, Shape)>),
    /// An array of one element shape.
    List(Box<Shape>),
}

impl Shape {
    /// The shape of a file's rows (an object of its top-level columns), or the path of the
    /// first column of a type the writer never makes, with that type.
    pub fn of(schema: &Schema) -> Result<Shape, String> {
        Self::fields(schema.fields(), "")
    }

    fn fields(fields: &Fields, at: &str) -> Result<Shape, String> {
        let mut out = Vec::with_capacity(fields.len());
        for f in fields {
            let path = if at.is_empty() {
                f.name().to_string()
            } else {
                format!("{at}.{}", f.name())
            };
            let mut key = Vec::with_capacity(f.name().len() + 3);
            write_str(&mut key, f.name());
            key.push(b':');
            out.push((key, Self::field(f, &path)?));
        }
        Ok(Shape::Struct(out))
    }

    fn field(f: &Field, path: &str) -> Result<Shape, String> {
        Ok(match f.data_type() {
            DataType::Null => Shape::Null,
            DataType::Boolean => Shape::Bool,
            DataType::Int64 => Shape::Int,
            DataType::Float64 => Shape::Float,
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == UTC => {
                match f
                    .metadata()
                    .get(OFFSET_METADATA)
                    .and_then(|o| timestamps::offset_minutes(o))
                {
                    Some(m) => Shape::Time(m),
                    None => {
                        return Err(format!(
                            "column {path} is a timestamp without its text's offset"
                        ))
                    }
                }
            }
            DataType::Utf8 => Shape::Text {
                json: f.metadata().contains_key(JSON_METADATA),
            },
            DataType::Struct(fs) => Self::fields(fs, path)?,
            DataType::List(item) => Shape::List(Box::new(Self::field(item, path)?)),
            other => return Err(format!("column {path} is {other}")),
        })
    }
}

/// A shape bound to one record batch's arrays.
enum Bound<'a> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    Int(&'a arrow_array::Int64Array),
    Float(&'a arrow_array::Float64Array),
    Time(&'a arrow_array::TimestampMicrosecondArray, i32),
    Text(&'a arrow_array::StringArray, bool),
    Struct(&'a dyn Array, Vec<(&'a [u8], Bound<'a>)>),
    List(&'a arrow_array::ListArray, Box<Bound<'a>>),
}

fn bind<'a>(shape: &'a Shape, a: &'a ArrayRef) -> Bound<'a> {
    match shape {
        Shape::Null => Bound::Null,
        Shape::Bool => Bound::Bool(a.as_boolean()),
        Shape::Int => Bound::Int(a.as_primitive::<Int64Type>()),
        Shape::Float => Bound::Float(a.as_primitive::<Float64Type>()),
        Shape::Time(m) => Bound::Time(a.as_primitive::<TimestampMicrosecondType>(), *m),
        Shape::Text { json } => Bound::Text(a.as_string::<i32>(), *json),
        Shape::Struct(fields) => {
            let s = a.as_struct();
            Bound::Struct(
                a.as_ref(),
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|((k, sh), c)| (k.as_slice(), bind(sh, c)))
                    .collect(),
            )
        }
        Shape::List(item) => {
            let l = a.as_list::<i32>();
            Bound::List(l, Box::new(bind(item, l.values())))
        }
    }
}

/// One record batch, ready to be written out row by row.
pub struct Rows<'a> {
    fields: Vec<(&'a [u8], Bound<'a>)>,
}

impl<'a> Rows<'a> {
    /// Bind `shape` (from [`Shape::of`] of the batch's schema) to `batch`.
    pub fn new(shape: &'a Shape, batch: &'a RecordBatch) -> Self {
        let Shape::Struct(fields) = shape else {
            return Self { fields: Vec::new() };
        };
        Self {
            fields: fields
                .iter()
                .zip(batch.columns())
                .map(|((k, sh), c)| (k.as_slice(), bind(sh, c)))
                .collect(),
        }
    }

    /// Append row `i` as one JSON object (no newline).
    pub fn write(&self, i: usize, out: &mut Vec<u8>) {
        object(&self.fields, i, out);
    }
}

fn object(fields: &[(&[u8], Bound<'_>)], i: usize, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for (key, b) in fields {
        if is_null(b, i) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(key);
        value(b, i, out);
    }
    out.push(b'}');
}

fn is_null(b: &Bound<'_>, i: usize) -> bool {
    match b {
        Bound::Null => true,
        Bound::Bool(a) => a.is_null(i),
        Bound::Int(a) => a.is_null(i),
        Bound::Float(a) => a.is_null(i),
        Bound::Time(a, _) => a.is_null(i),
        Bound::Text(a, _) => a.is_null(i),
        Bound::Struct(a, _) => a.is_null(i),
        Bound::List(a, _) => a.is_null(i),
    }
}

fn value(b: &Bound<'_>, i: usize, out: &mut Vec<u8>) {
    match b {
        Bound::Null => out.extend_from_slice(b"null"),
        Bound::Bool(a) => out.extend_from_slice(if a.value(i) { b"true" } else { b"false" }),
        Bound::Int(a) => {
            let mut buf = itoa::Buffer::new();
            out.extend_from_slice(buf.format(a.value(i)).as_bytes());
        }
        Bound::Float(a) => write_float(out, a.value(i)),
        Bound::Time(a, m) => {
            out.push(b'"');
            timestamps::render(a.value(i), *m, out);
            out.push(b'"');
        }
        Bound::Text(a, true) => out.extend_from_slice(a.value(i).as_bytes()),
        Bound::Text(a, false) => write_str(out, a.value(i)),
        Bound::Struct(_, fields) => object(fields, i, out),
        Bound::List(a, item) => {
            out.push(b'[');
            let offsets = a.value_offsets();
            let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
            for j in start..end {
                if j > start {
                    out.push(b',');
                }
                if is_null(item, j) {
                    out.extend_from_slice(b"null");
                } else {
                    value(item, j, out);
                }
            }
            out.push(b']');
        }
    }
}

/// A double as the shortest text that reads back as it, always with a fraction or an
/// exponent (so it stays a number with a fraction: the writer made it `Float64` because
/// the event's text had one). The writer never stores a non-finite value.
fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A string as JSON text.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(
            serde_json::from_slice::<String>(&out).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
        assert_eq!(out, b"\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\"");
    }

    #[test]
    fn doubles_keep_a_fraction_and_read_back_exactly() {
        for v in [0.1, 1.0, -2.5e-300, 1e21, 123456.789] {
            let mut out = Vec::new();
            write_float(&mut out, v);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains('.') || text.contains('e'), "{text}");
            assert_eq!(text.parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn types_the_writer_never_makes_are_named() {
        let s = Schema::new(vec![Field::new(
            "a",
            DataType::Struct(vec![Field::new("b", DataType::Int32, true)].into()),
            true,
        )]);
        assert_eq!(Shape::of(&s).unwrap_err(), "column a.b is Int32");
    }
}
