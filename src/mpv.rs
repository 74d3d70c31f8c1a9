//! A MessagePack value tree, its reader and its writer: what the stored
//! records and the values given to `put` need of one, without the rmpv and
//! rmp crates (about 15 KB of the module). The bytes written are rmpv's
//! `write_value`'s for the same value (a test holds them equal), so stored
//! values keep their format.

// Natively only the records use it; the JS bindings use all of it.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use crate::codec::{DecodeError, Reader, Writer};

/// One MessagePack value. A whole number is `Uint` when it is not negative,
/// whichever form it was read from; `Int` holds only negative ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Boolean(bool),
    /// A whole number of zero or more.
    Uint(u64),
    /// A negative whole number.
    Int(i64),
    F32(f32),
    F64(f64),
    /// A string's bytes as stored; [`Value::as_str`] is `None` when they are
    /// not UTF-8.
    String(Vec<u8>),
    Binary(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Value {
    /// A whole number, as `Uint` or `Int` by its sign.
    pub fn int(n: i64) -> Value {
        match u64::try_from(n) {
            Ok(n) => Value::Uint(n),
            Err(_) => Value::Int(n),
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Uint(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(b) => core::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s.into_bytes())
    }
}

/// Reads one value from the front of `bytes`, nested at most `depth` deep
/// (every value counts one level, a scalar too: `[[1]]` takes 3; rmpv
/// counted about two per level), and moves `bytes` past it. The reserved
/// byte 0xc1 is refused (rmpv read it as nil).
pub fn read_value(bytes: &mut &[u8], depth: usize) -> Result<Value, DecodeError> {
    let mut r = Reader::new(bytes);
    let value = r.value(depth)?;
    *bytes = r.rest();
    Ok(value)
}

/// Writes `v` as rmpv's `write_value` does.
pub fn write_value(w: &mut Writer, v: &Value) {
    match v {
        Value::Nil => w.nil(),
        Value::Boolean(b) => w.bool(*b),
        Value::Uint(n) => w.uint(*n),
        Value::Int(n) => w.sint(*n),
        Value::F32(f) => {
            w.0.push(0xca);
            w.0.extend_from_slice(&f.to_be_bytes());
        }
        Value::F64(f) => {
            w.0.push(0xcb);
            w.0.extend_from_slice(&f.to_be_bytes());
        }
        // As rmpv: a string that is not UTF-8 is written as bytes.
        Value::String(b) if core::str::from_utf8(b).is_err() => w.bin(b),
        Value::String(b) => w.str_bytes(b),
        Value::Binary(b) => w.bin(b),
        Value::Array(items) => {
            w.array(items.len());
            for item in items {
                write_value(w, item);
            }
        }
        Value::Map(pairs) => {
            w.map(pairs.len());
            for (k, v) in pairs {
                write_value(w, k);
                write_value(w, v);
            }
        }
        Value::Ext(tag, data) => w.ext(*tag, data),
    }
}

/// `v` as bytes.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    write_value(&mut w, v);
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of every form and every size boundary of each.
    fn samples() -> Vec<Value> {
        let mut out = vec![Value::Nil, Value::Boolean(true), Value::Boolean(false)];
        for n in [
            0u64,
            1,
            0x7f,
            0x80,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            out.push(Value::Uint(n));
        }
        for n in [
            -1i64,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            -2_147_483_648,
            -2_147_483_649,
            i64::MIN,
        ] {
            out.push(Value::Int(n));
        }
        out.extend([Value::F32(1.5), Value::F64(-0.0), Value::F64(f64::INFINITY)]);
        for n in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536] {
            out.push(Value::String(vec![b'a'; n]));
            out.push(Value::Binary(vec![7; n]));
            out.push(Value::Array(vec![Value::Nil; n.min(70_000)]));
        }
        out.push(Value::String(vec![0xff, 0xfe]));
        for n in [0usize, 15, 16, 65_536] {
            out.push(Value::Map(
                (0..n)
                    .map(|i| (Value::Uint(i as u64), Value::from("v")))
                    .collect(),
            ));
        }
        for n in [0usize, 1, 2, 3, 4, 5, 8, 16, 17, 255, 256, 65_535, 65_536] {
            out.push(Value::Ext(-3, vec![1; n]));
        }
        out.push(Value::Array(vec![
            Value::Map(vec![(Value::from("k"), Value::Ext(5, vec![]))]),
            Value::Int(-7),
        ]));
        out
    }

    fn to_rmpv(v: &Value) -> rmpv::Value {
        match v {
            Value::Nil => rmpv::Value::Nil,
            Value::Boolean(b) => rmpv::Value::Boolean(*b),
            Value::Uint(n) => rmpv::Value::from(*n),
            Value::Int(n) => rmpv::Value::from(*n),
            Value::F32(f) => rmpv::Value::F32(*f),
            Value::F64(f) => rmpv::Value::F64(*f),
            Value::String(b) => match String::from_utf8(b.clone()) {
                Ok(s) => rmpv::Value::from(s),
                // A string read from bytes that are not UTF-8, as rmpv holds it.
                Err(_) => {
                    assert!(b.len() < 32, "a fixstr in these samples");
                    let mut bytes = vec![0xa0 | b.len() as u8];
                    bytes.extend(b);
                    rmpv::decode::read_value(&mut &bytes[..]).unwrap()
                }
            },
            Value::Binary(b) => rmpv::Value::Binary(b.clone()),
            Value::Array(items) => rmpv::Value::Array(items.iter().map(to_rmpv).collect()),
            Value::Map(pairs) => rmpv::Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (to_rmpv(k), to_rmpv(v)))
                    .collect(),
            ),
            Value::Ext(tag, data) => rmpv::Value::Ext(*tag, data.clone()),
        }
    }

    #[test]
    fn writes_rmpvs_bytes_and_reads_them_back() {
        for v in samples() {
            let ours = to_vec(&v);
            let mut theirs = Vec::new();
            rmpv::encode::write_value(&mut theirs, &to_rmpv(&v)).unwrap();
            assert_eq!(ours, theirs, "{v:?}");
            let mut rest = &ours[..];
            let back = read_value(&mut rest, 4).unwrap();
            assert!(rest.is_empty());
            match &v {
                // Written as bytes, as rmpv writes it.
                Value::String(b) if v.as_str().is_none() => {
                    assert_eq!(back, Value::Binary(b.clone()))
                }
                _ => assert_eq!(back, v),
            }
        }
    }

    #[test]
    fn reads_every_integer_form_by_its_value() {
        // Signed forms holding non-negative numbers read as Uint, as rmpv's do.
        for (bytes, want) in [
            (&[0xd0, 0x05][..], Value::Uint(5)),
            (&[0xd1, 0xff, 0xfe][..], Value::Int(-2)),
            (&[0xd3, 0, 0, 0, 0, 0, 0, 0, 9][..], Value::Uint(9)),
            (&[0xe0][..], Value::Int(-32)),
            (&[0xcc, 0xff][..], Value::Uint(255)),
        ] {
            let mut rest = bytes;
            assert_eq!(read_value(&mut rest, 1).unwrap(), want);
        }
    }

    #[test]
    fn refuses_bytes_that_are_not_one_whole_value() {
        for bytes in [
            &[][..],
            &[0xc1][..],
            &[0x92, 0x01][..],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, 0x00][..],
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xd4, 0x01][..],
        ] {
            let mut rest = bytes;
            assert!(read_value(&mut rest, 8).is_err(), "{bytes:?}");
        }
        // Nested array headers claiming 65,535 items each, over bytes that
        // end early: refused, without reserving room for what they claim.
        let mut hostile = [0xdc, 0xff, 0xff].repeat(400);
        hostile.extend([0u8; 4_096]);
        assert!(read_value(&mut &hostile[..], 500).is_err());
        let mut maps = [0xdf, 0xff, 0xff, 0xff, 0xff, 0x01].repeat(200);
        maps.extend([0u8; 4_096]);
        assert!(read_value(&mut &maps[..], 500).is_err());
        // Depth: [[[]]] needs 3 levels.
        let nested = [0x91, 0x91, 0x90];
        assert!(read_value(&mut &nested[..], 2).is_err());
        assert!(read_value(&mut &nested[..], 3).is_ok());
    }
}
