//! How records are stored: MessagePack in rmp-serde's layout (named fields)
//! with a format version, so a store written by one release is read by the
//! next. Written and read by hand here, to rmp-serde's bytes.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{BlobInfo, EntryMeta, Millis, TempInfo};
use crate::mpv::Value;

/// The format version written by this release.
pub const FORMAT_VERSION: u32 = 1;

/// Why a stored record could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Written by a newer release, or not a kvsweep record.
    UnsupportedVersion(u32),
    /// The bytes are not a record of this kind.
    Malformed(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "record has format version {v}; this release reads version {FORMAT_VERSION}"
            ),
            // What a write cut short leaves (a crash on a backend that writes in place).
            DecodeError::Malformed(why) if why == ENDS_EARLY => {
                write!(f, "record ends early (a write cut short by a crash?)")
            }
            DecodeError::Malformed(why) => write!(f, "record is not one kvsweep wrote: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
#[derive(Serialize)]
struct Envelope<'a, T>(u32, &'a T);

/// Writes MessagePack by hand, the bytes rmp-serde's `to_vec_named` writes
/// for the same records (a test holds them equal): the serde serializer
/// compiled one writer per record type and field.
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    /// A versioned record: `[version, body]`, the body written by `body`.
    pub(crate) fn record(body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.array(2);
        w.uint(u64::from(FORMAT_VERSION));
        body(&mut w);
        w.0
    }

    /// A header of `n` items: fix form below 16 (`fix`), else 16 or 32 bits.
    fn header(&mut self, n: usize, fix: u8, h16: u8) {
        if n < 16 {
            self.0.push(fix | n as u8);
        } else if let Ok(n) = u16::try_from(n) {
            self.0.push(h16);
            self.0.extend_from_slice(&n.to_be_bytes());
        } else {
            self.0.push(h16 + 1);
            self.0.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.header(n, 0x90, 0xdc);
    }

    pub(crate) fn map(&mut self, n: usize) {
        self.header(n, 0x80, 0xde);
    }

    /// The most compact unsigned form, as rmp's `write_uint`.
    pub(crate) fn uint(&mut self, n: u64) {
        let bytes = n.to_be_bytes();
        match n {
            0..=0x7f => self.0.push(n as u8),
            0x80..=0xff => self.0.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                self.0.push(0xcd);
                self.0.extend_from_slice(&bytes[6..]);
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(0xce);
                self.0.extend_from_slice(&bytes[4..]);
            }
            _ => {
                self.0.push(0xcf);
                self.0.extend_from_slice(&bytes);
            }
        }
    }

    /// A length-prefixed run of bytes: `fix` (or none) below 32, then 8, 16, 32 bits.
    fn sized(&mut self, bytes: &[u8], fix: Option<u8>, h8: u8) {
        let n = bytes.len();
        match fix {
            Some(fix) if n < 32 => self.0.push(fix | n as u8),
            _ if n <= 0xff => self.0.extend_from_slice(&[h8, n as u8]),
            _ if n <= 0xffff => {
                self.0.push(h8 + 1);
                self.0.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                self.0.push(h8 + 2);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(bytes);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.str_bytes(s.as_bytes());
    }

    /// A string of the bytes given, UTF-8 or not (as stored).
    pub(crate) fn str_bytes(&mut self, s: &[u8]) {
        self.sized(s, Some(0xa0), 0xd9);
    }

    /// The most compact signed form, as rmp's `write_sint` (for negative numbers).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn sint(&mut self, n: i64) {
        if n >= 0 {
            return self.uint(n as u64);
        }
        let bytes = n.to_be_bytes();
        match n {
            -32..=-1 => self.0.push(n as u8),
            -128..=-33 => self.0.extend_from_slice(&[0xd0, n as u8]),
            -32_768..=-129 => {
                self.0.push(0xd1);
                self.0.extend_from_slice(&bytes[6..]);
            }
            -2_147_483_648..=-32_769 => {
                self.0.push(0xd2);
                self.0.extend_from_slice(&bytes[4..]);
            }
            _ => {
                self.0.push(0xd3);
                self.0.extend_from_slice(&bytes);
            }
        }
    }

    /// An extension: fixed forms for 1, 2, 4, 8 and 16 bytes, else 8, 16, 32-bit lengths.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn ext(&mut self, tag: i8, data: &[u8]) {
        let n = data.len();
        match n {
            1 => self.0.push(0xd4),
            2 => self.0.push(0xd5),
            4 => self.0.push(0xd6),
            8 => self.0.push(0xd7),
            16 => self.0.push(0xd8),
            _ if n <= 0xff => self.0.extend_from_slice(&[0xc7, n as u8]),
            _ if n <= 0xffff => {
                self.0.push(0xc8);
                self.0.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xc9);
                self.0.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        self.0.push(tag as u8);
        self.0.extend_from_slice(data);
    }

    pub(crate) fn bin(&mut self, b: &[u8]) {
        self.sized(b, None, 0xc4);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.0.push(0xc2 | u8::from(b));
    }

    pub(crate) fn nil(&mut self) {
        self.0.push(0xc0);
    }

    pub(crate) fn strs(&mut self, items: &[String]) {
        self.array(items.len());
        for s in items {
            self.str(s);
        }
    }

    /// The fields of a map, each a name and a number.
    pub(crate) fn uints(&mut self, fields: &[(&str, u64)]) {
        for (name, n) in fields {
            self.str(name);
            self.uint(*n);
        }
    }
}

/// A record holding one number (the rebuild epoch).
pub fn encode_number(n: u64) -> Vec<u8> {
    Writer::record(|w| w.uint(n))
}

/// An entry's metadata fields, a map in declaration order.
fn write_meta(w: &mut Writer, m: &EntryMeta) {
    w.map(14);
    w.uints(&[
        ("createdAt", m.created_at),
        ("updatedAt", m.updated_at),
        ("accessedAt", m.accessed_at),
    ]);
    w.str("expiresAt");
    match m.expires_at {
        Some(t) => w.uint(t),
        None => w.nil(),
    }
    w.uints(&[("size", m.size)]);
    w.str("group");
    match &m.group {
        Some(g) => w.str(g),
        None => w.nil(),
    }
    for (name, flag) in [
        ("pinned", m.pinned),
        ("locked", m.locked),
        ("dependent", m.dependent),
    ] {
        w.str(name);
        w.bool(flag);
    }
    w.str("refs");
    w.strs(&m.refs);
    w.str("blobs");
    w.strs(&m.blobs);
    w.uints(&[
        ("writeId", m.write_id),
        ("referrers", m.referrers),
        ("rev", m.rev),
    ]);
}

// Records are read back here, by hand, from one `mpv::Value` (or, for entry
// metadata, straight from the bytes): serde's derived readers compile one MessagePack
// reader per record type and field, which was half the module's size. The
// rules are serde's: unknown fields are ignored, a repeated field is an
// error, and a field without a default is required.

/// Items [`Reader::value`] reserves room for before it has read them.
const PREALLOC_MAX: usize = 64;

/// How deep a stored record may nest (records are flat; this only bounds hostile bytes).
const MAX_RECORD_DEPTH: usize = 16;

/// The body of a versioned record `[version, body]`.
pub(crate) fn body(bytes: &[u8]) -> Result<Value, DecodeError> {
    Ok(envelope(bytes)?.0)
}

/// A versioned record `[version, body]`, or an entry's `[version, meta, value]`
/// (see [`encode_entry`]): the body and the inline value.
fn envelope(bytes: &[u8]) -> Result<(Value, Option<Value>), DecodeError> {
    let value = Reader::new(bytes).value(MAX_RECORD_DEPTH)?;
    let Value::Array(mut parts) = value else {
        return Err(malformed("not a versioned record"));
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(malformed("not a versioned record"));
    }
    let inline = (parts.len() == 3).then(|| parts.pop().unwrap_or(Value::Nil));
    let body = parts.pop().unwrap_or(Value::Nil);
    match parts[0].as_u64() {
        Some(v) if v == u64::from(FORMAT_VERSION) => Ok((body, inline)),
        Some(v) => Err(DecodeError::UnsupportedVersion(
            u32::try_from(v).unwrap_or(u32::MAX),
        )),
        None => Err(malformed("its version is not a number")),
    }
}

/// Values up to this size are kept in their entry's metadata record on
/// stores whose batches are atomic: one record to write, read and delete.
pub const INLINE_MAX: usize = 8 << 10;

/// An entry's record: its metadata, and its encoded value when the value
/// lives in the record itself (`[version, meta, bin]`) rather than in `Values`.
pub fn encode_entry(meta: &EntryMeta, inline: Option<&[u8]>) -> Vec<u8> {
    let Some(value) = inline else {
        return encode_meta(meta);
    };
    let mut w = Writer(Vec::with_capacity(value.len() + 160));
    w.array(3);
    w.uint(u64::from(FORMAT_VERSION));
    write_meta(&mut w, meta);
    w.bin(value);
    w.0
}

/// The encoded value an entry's record holds in itself, if it does.
pub fn inline_value(bytes: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
    let mut r = Reader::new(bytes);
    if !r.record_header()? {
        return Ok(None);
    }
    r.skip(MAX_RECORD_DEPTH)?;
    Ok(Some(r.bin()?.to_vec()))
}

/// `meta` in place of the metadata of the entry record `old`, keeping the
/// value `old` holds inline: every rewrite of an entry's record that is not a
/// put (counts, touches, rebuild) goes through here, so none drops a value.
pub fn reencode_meta(old: &[u8], meta: &EntryMeta) -> Result<Vec<u8>, DecodeError> {
    Ok(encode_entry(meta, inline_value(old)?.as_deref()))
}

/// A record that holds one number (the rebuild epoch).
pub fn decode_number(bytes: &[u8]) -> Result<u64, DecodeError> {
    body(bytes)?
        .as_u64()
        .ok_or_else(|| malformed("expected a whole number"))
}

pub(crate) fn malformed(why: &str) -> DecodeError {
    DecodeError::Malformed(why.to_string())
}

/// The fields of a record's map, by name.
pub(crate) struct Fields<'a>(Vec<(&'a str, &'a Value)>);

impl<'a> Fields<'a> {
    pub(crate) fn of(value: &'a Value) -> Result<Fields<'a>, DecodeError> {
        let Value::Map(pairs) = value else {
            return Err(malformed("expected a map of fields"));
        };
        let mut fields: Vec<(&str, &Value)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let name = k
                .as_str()
                .ok_or_else(|| malformed("a field name is not a string"))?;
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(DecodeError::Malformed(format!("duplicate field `{name}`")));
            }
            fields.push((name, v));
        }
        Ok(Fields(fields))
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn invalid(name: &str, want: &str) -> DecodeError {
        DecodeError::Malformed(format!("field `{name}` is not {want}"))
    }

    pub(crate) fn u64(&self, name: &str) -> Result<u64, DecodeError> {
        let v = self
            .get(name)
            .ok_or_else(|| DecodeError::Malformed(format!("missing field `{name}`")))?;
        v.as_u64()
            .ok_or_else(|| Self::invalid(name, "a whole number"))
    }

    pub(crate) fn u64_or_zero(&self, name: &str) -> Result<u64, DecodeError> {
        match self.get(name) {
            None => Ok(0),
            Some(_) => self.u64(name),
        }
    }

    pub(crate) fn string(&self, name: &str) -> Result<String, DecodeError> {
        self.opt_string(name)?
            .ok_or_else(|| DecodeError::Malformed(format!("missing field `{name}`")))
    }

    pub(crate) fn opt_string(&self, name: &str) -> Result<Option<String>, DecodeError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| Self::invalid(name, "a string")),
        }
    }

    pub(crate) fn list(&self, name: &str) -> Result<&'a [Value], DecodeError> {
        match self.get(name) {
            None => Ok(&[]),
            Some(v) => v
                .as_array()
                .map(Vec::as_slice)
                .ok_or_else(|| Self::invalid(name, "a list")),
        }
    }

    pub(crate) fn required(&self, name: &str) -> Result<&'a Value, DecodeError> {
        self.get(name)
            .ok_or_else(|| DecodeError::Malformed(format!("missing field `{name}`")))
    }
}

/// An entry's metadata record, with no inline value, in the current
/// [`FORMAT_VERSION`].
pub fn encode_meta(meta: &EntryMeta) -> Vec<u8> {
    Writer::record(|w| write_meta(w, meta))
}

/// Reads an entry's metadata from its record (an inline value is skipped);
/// `Err` if the record is corrupt or of another format version.
pub fn decode_meta(bytes: &[u8]) -> Result<EntryMeta, DecodeError> {
    Ok(decode_meta_layout(bytes)?.0)
}

/// An entry's metadata, and whether the record was written before
/// `accessedAt` (SPEC §1) was recorded: such a record reads with
/// `accessedAt` = `updatedAt` (no use known since its write), and
/// `migrate` rewrites it with the field.
pub fn decode_meta_layout(bytes: &[u8]) -> Result<(EntryMeta, bool), DecodeError> {
    let mut r = Reader::new(bytes);
    let has_inline = r.record_header()?;
    let (meta, before_accessed_at) = read_meta_fields(&mut r)?;
    if has_inline {
        r.bin()?;
    }
    Ok((meta, before_accessed_at))
}

/// The fields of `EntryMeta`, in the order `FIELD_BITS` numbers them.
const META_FIELDS: [&str; 14] = [
    "createdAt",
    "updatedAt",
    "accessedAt",
    "expiresAt",
    "size",
    "group",
    "pinned",
    "locked",
    "dependent",
    "refs",
    "blobs",
    "writeId",
    "referrers",
    "rev",
];

/// Reads an entry's metadata map straight from its bytes: listing a store
/// decodes every record, and building a value tree per record cost most of
/// a listing's time. Serde's rules as in [`Fields`]: unknown fields skipped,
/// a repeated field an error, a required one missing an error.
fn read_meta_fields(r: &mut Reader<'_>) -> Result<(EntryMeta, bool), DecodeError> {
    let n = r.map_len()?;
    let mut meta = EntryMeta::default();
    let mut seen: u16 = 0;
    for _ in 0..n {
        let name = r
            .str()
            .map_err(|_| malformed("a field name is not a string"))?;
        let Some(field) = META_FIELDS.iter().position(|f| *f == name) else {
            r.skip(MAX_RECORD_DEPTH)?;
            continue;
        };
        if seen & (1 << field) != 0 {
            return Err(DecodeError::Malformed(format!("duplicate field `{name}`")));
        }
        seen |= 1 << field;
        let invalid = |want: &str| Fields::invalid(name, want);
        let number = |r: &mut Reader<'_>| r.u64().map_err(|_| invalid("a whole number"));
        let text = |r: &mut Reader<'_>| -> Result<Option<String>, DecodeError> {
            if r.nil() {
                return Ok(None);
            }
            Ok(Some(r.str().map_err(|_| invalid("a string"))?.to_string()))
        };
        let strings = |r: &mut Reader<'_>| -> Result<Vec<String>, DecodeError> {
            let n = r.array_len().map_err(|_| invalid("a list"))?;
            (0..n)
                .map(|_| {
                    r.str()
                        .map(str::to_string)
                        .map_err(|_| invalid("a list of strings"))
                })
                .collect()
        };
        let flag = |r: &mut Reader<'_>| r.bool().map_err(|_| invalid("a boolean"));
        match field {
            0 => meta.created_at = number(r)?,
            1 => meta.updated_at = number(r)?,
            2 => meta.accessed_at = number(r)?,
            3 => meta.expires_at = if r.nil() { None } else { Some(number(r)?) },
            4 => meta.size = number(r)?,
            5 => meta.group = text(r)?,
            6 => meta.pinned = flag(r)?,
            7 => meta.locked = flag(r)?,
            8 => meta.dependent = flag(r)?,
            9 => meta.refs = strings(r)?,
            10 => meta.blobs = strings(r)?,
            11 => meta.write_id = number(r)?,
            12 => meta.referrers = number(r)?,
            _ => meta.rev = number(r)?,
        }
    }
    for required in [0, 1, 4, 11, 12] {
        if seen & (1 << required) == 0 {
            return Err(DecodeError::Malformed(format!(
                "missing field `{}`",
                META_FIELDS[required]
            )));
        }
    }
    let before_accessed_at = seen & (1 << 2) == 0;
    if before_accessed_at {
        meta.accessed_at = meta.updated_at;
    }
    Ok((meta, before_accessed_at))
}

/// A MessagePack reader over a record's bytes, for the hot records (entry
/// metadata and inline values): it borrows strings and bytes rather than
/// building a value tree.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

const ENDS_EARLY: &str = "the record ends early";

fn truncated() -> DecodeError {
    malformed(ENDS_EARLY)
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// What is left after what was read.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// One value of any kind as a tree, nested at most `depth` deep.
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let Some(inner) = depth.checked_sub(1) else {
            return Err(malformed("nested too deep"));
        };
        let b = self.byte()?;
        let n = |r: &mut Self, len: usize| -> Result<usize, DecodeError> {
            usize::try_from(r.be(len)?).map_err(|_| truncated())
        };
        let int = |v: i64| Value::int(v);
        Ok(match b {
            0x00..=0x7f => Value::Uint(u64::from(b)),
            0xe0..=0xff => Value::Int(i64::from(b as i8)),
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xcc => Value::Uint(self.be(1)?),
            0xcd => Value::Uint(self.be(2)?),
            0xce => Value::Uint(self.be(4)?),
            0xcf => Value::Uint(self.be(8)?),
            0xd0 => int(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => int(self.be(8)? as i64),
            0xca => Value::F32(f32::from_bits(self.be(4)? as u32)),
            0xcb => Value::F64(f64::from_bits(self.be(8)?)),
            0xa0..=0xbf => Value::String(self.take(usize::from(b & 0x1f))?.to_vec()),
            0xd9..=0xdb => {
                let len = n(self, 1 << (b - 0xd9))?;
                Value::String(self.take(len)?.to_vec())
            }
            0xc4..=0xc6 => {
                let len = n(self, 1 << (b - 0xc4))?;
                Value::Binary(self.take(len)?.to_vec())
            }
            0xd4..=0xd8 => {
                let tag = self.byte()? as i8;
                Value::Ext(tag, self.take(1 << (b - 0xd4))?.to_vec())
            }
            0xc7..=0xc9 => {
                let len = n(self, 1 << (b - 0xc7))?;
                let tag = self.byte()? as i8;
                Value::Ext(tag, self.take(len)?.to_vec())
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = match b {
                    0xdc => n(self, 2)?,
                    0xdd => n(self, 4)?,
                    _ => usize::from(b & 0x0f),
                };
                // A length the bytes cannot hold is refused item by item as
                // it is read; room is reserved for a few items only, since
                // nested headers would each reserve for the bytes left.
                let mut items = Vec::with_capacity(len.min(PREALLOC_MAX));
                for _ in 0..len {
                    items.push(self.value(inner)?);
                }
                Value::Array(items)
            }
            0x80..=0x8f | 0xde | 0xdf => {
                let len = match b {
                    0xde => n(self, 2)?,
                    0xdf => n(self, 4)?,
                    _ => usize::from(b & 0x0f),
                };
                let mut pairs = Vec::with_capacity(len.min(PREALLOC_MAX));
                for _ in 0..len {
                    let k = self.value(inner)?;
                    pairs.push((k, self.value(inner)?));
                }
                Value::Map(pairs)
            }
            // 0xc1 is reserved: never written, so refused (rmpv read it as nil).
            _ => return Err(malformed("not MessagePack")),
        })
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.bytes.split_first().ok_or_else(truncated)?;
        self.bytes = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(truncated());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A big-endian unsigned number of `n` bytes.
    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A 32-bit length, which a 32-bit `usize` holds, but not doubled or
    /// plus one: callers check that arithmetic.
    fn len32(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(self.be(4)?).map_err(|_| truncated())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.first().copied()
    }

    /// Consumes a nil if one comes next.
    fn nil(&mut self) -> bool {
        if self.peek() == Some(0xc0) {
            self.bytes = &self.bytes[1..];
            true
        } else {
            false
        }
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(malformed("not a boolean")),
        }
    }

    /// A non-negative integer in any of MessagePack's integer forms.
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.byte()?;
        let signed = |v: i64| u64::try_from(v).map_err(|_| malformed("a negative number"));
        match b {
            0x00..=0x7f => Ok(u64::from(b)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0 => signed(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => signed(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => signed(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => signed(self.be(8)? as i64),
            _ => Err(malformed("not a whole number")),
        }
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.byte()?;
        let n = match b {
            0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return Err(malformed("not a string")),
        };
        core::str::from_utf8(self.take(n)?).map_err(|_| malformed("a string is not UTF-8"))
    }

    fn bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = match self.byte()? {
            0xc4 => self.be(1)? as usize,
            0xc5 => self.be(2)? as usize,
            0xc6 => self.be(4)? as usize,
            _ => return Err(malformed("an inline value is not bytes")),
        };
        self.take(n)
    }

    fn array_len(&mut self) -> Result<usize, DecodeError> {
        let b = self.byte()?;
        match b {
            0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => Ok(self.be(2)? as usize),
            0xdd => Ok(self.be(4)? as usize),
            _ => Err(malformed("not a list")),
        }
    }

    fn map_len(&mut self) -> Result<usize, DecodeError> {
        let b = self.byte()?;
        match b {
            0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => Ok(self.be(2)? as usize),
            0xdf => Ok(self.be(4)? as usize),
            _ => Err(malformed("expected a map of fields")),
        }
    }

    /// Skips one value of any kind, nested at most `depth` deep.
    fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth == 0 {
            return Err(malformed("nested too deep"));
        }
        let b = self.byte()?;
        let (bytes, items) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
            0x90..=0x9f => (0, usize::from(b & 0x0f)),
            0xa0..=0xbf => (usize::from(b & 0x1f), 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc4 | 0xd9 => (self.be(1)? as usize, 0),
            0xc5 | 0xda => (self.be(2)? as usize, 0),
            0xc6 | 0xdb => (self.be(4)? as usize, 0),
            0xc7 => (self.be(1)? as usize + 1, 0),
            0xc8 => (self.be(2)? as usize + 1, 0),
            0xc9 => (self.len32()?.checked_add(1).ok_or_else(truncated)?, 0),
            0xdc => (0, self.be(2)? as usize),
            0xdd => (0, self.be(4)? as usize),
            0xde => (0, 2 * self.be(2)? as usize),
            0xdf => (0, self.len32()?.checked_mul(2).ok_or_else(truncated)?),
            _ => return Err(malformed("not MessagePack")),
        };
        self.take(bytes)?;
        for _ in 0..items {
            self.skip(depth - 1)?;
        }
        Ok(())
    }

    /// Reads `[version, body` or `[version, meta, value`: true when an inline
    /// value follows the body.
    fn record_header(&mut self) -> Result<bool, DecodeError> {
        let parts = self.array_len().map_err(|e| match e {
            DecodeError::Malformed(w) if w == ENDS_EARLY => truncated(),
            _ => malformed("not a versioned record"),
        })?;
        if !(2..=3).contains(&parts) {
            return Err(malformed("not a versioned record"));
        }
        let version = self
            .u64()
            .map_err(|_| malformed("its version is not a number"))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(DecodeError::UnsupportedVersion(
                u32::try_from(version).unwrap_or(u32::MAX),
            ));
        }
        Ok(parts == 3)
    }
}

/// A blob's record, without its id (the id is the record's key).
/// Every field is required: a record without them is corrupt, never zeros.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    /// Length of the blob's bytes.
    pub size: u64,
    /// When the blob was written, or last written again: its grace starts here.
    pub created_at: Millis,
    /// How many entries reference the blob: it is deleted only at zero.
    pub refs: u64,
    /// Raised by every write of the record (see `EntryMeta::rev`).
    #[serde(default)]
    pub rev: u64,
    /// `verify` with repair found its bytes gone, or removed them as
    /// corrupt: the next `putBlob` of its bytes, by any Sweeper, writes
    /// them again. Written only when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lost: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl BlobRecord {
    /// What the planner needs of the blob `id`.
    pub fn info(&self, id: &str) -> BlobInfo {
        BlobInfo {
            id: id.to_string(),
            size: self.size,
            created_at: self.created_at,
        }
    }
}

/// A blob record, as stored in `BlobMeta`.
pub fn encode_blob(r: &BlobRecord) -> Vec<u8> {
    Writer::record(|w| {
        w.map(4 + usize::from(r.lost));
        w.uints(&[
            ("size", r.size),
            ("createdAt", r.created_at),
            ("refs", r.refs),
            ("rev", r.rev),
        ]);
        if r.lost {
            w.str("lost");
            w.bool(true);
        }
    })
}

/// Reads a blob record; `Err` if it is corrupt or of another format version.
pub fn decode_blob(bytes: &[u8]) -> Result<BlobRecord, DecodeError> {
    let body = body(bytes)?;
    let f = Fields::of(&body)?;
    Ok(BlobRecord {
        size: f.u64("size")?,
        created_at: f.u64("createdAt")?,
        refs: f.u64("refs")?,
        rev: f.u64_or_zero("rev")?,
        lost: match f.get("lost") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(_) => return Err(Fields::invalid("lost", "true or false")),
        },
    })
}

/// The record of an unreferenced blob described by `info`.
pub fn encode_blob_info(info: &BlobInfo) -> Vec<u8> {
    encode_blob(&BlobRecord {
        size: info.size,
        created_at: info.created_at,
        ..BlobRecord::default()
    })
}

/// Reads the blob record of `id` as the planner needs it.
pub fn decode_blob_info(id: &str, bytes: &[u8]) -> Result<BlobInfo, DecodeError> {
    Ok(decode_blob(bytes)?.info(id))
}

/// What a write staged before it committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Staged {
    /// Values of an entry's writes (by write id); the entry's metadata is the
    /// commit record: a value whose write it does not name is left over.
    Entry {
        /// The entry's namespace.
        namespace: String,
        /// The entry's key.
        key: String,
        /// The write ids whose values it staged.
        writes: Vec<u64>,
    },
    /// A blob's bytes; its blob record is the commit record.
    Blob {
        /// The blob's id.
        id: String,
    },
}

/// A temp: what a write staged and when. A write puts it first and deletes it
/// in the same batch, so only an interrupted write leaves one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TempRecord {
    /// When the write staged it; it is stale `tempMaxAgeMs` later.
    pub created_at: Millis,
    /// Bytes of what it staged.
    pub size: u64,
    /// What it staged.
    pub staged: Staged,
}

/// A temp record, as stored in `Temps`.
pub fn encode_temp(r: &TempRecord) -> Vec<u8> {
    Writer::record(|w| {
        w.map(3);
        w.uints(&[("createdAt", r.created_at), ("size", r.size)]);
        w.str("staged");
        match &r.staged {
            Staged::Entry {
                namespace,
                key,
                writes,
            } => {
                w.map(4);
                for (name, value) in [("kind", "entry"), ("namespace", namespace), ("key", key)] {
                    w.str(name);
                    w.str(value);
                }
                w.str("writes");
                w.array(writes.len());
                for n in writes {
                    w.uint(*n);
                }
            }
            Staged::Blob { id } => {
                w.map(2);
                for (name, value) in [("kind", "blob"), ("id", id)] {
                    w.str(name);
                    w.str(value);
                }
            }
        }
    })
}

/// Reads a temp record; `Err` if it is corrupt or of another format version.
pub fn decode_temp(bytes: &[u8]) -> Result<TempRecord, DecodeError> {
    let body = body(bytes)?;
    let f = Fields::of(&body)?;
    let staged = Fields::of(f.required("staged")?)?;
    let staged = match staged.string("kind")?.as_str() {
        "entry" => Staged::Entry {
            namespace: staged.string("namespace")?,
            key: staged.string("key")?,
            writes: staged
                .list("writes")?
                .iter()
                .map(|w| {
                    w.as_u64()
                        .ok_or_else(|| malformed("a staged write is not a number"))
                })
                .collect::<Result<_, _>>()?,
        },
        "blob" => Staged::Blob {
            id: staged.string("id")?,
        },
        other => {
            return Err(DecodeError::Malformed(format!(
                "unknown staged kind {}",
                crate::error::Quoted(other)
            )))
        }
    };
    Ok(TempRecord {
        created_at: f.u64("createdAt")?,
        size: f.u64("size")?,
        staged,
    })
}

/// The record of a temp described by `info` that staged the blob `info.id`.
pub fn encode_temp_info(info: &TempInfo) -> Vec<u8> {
    encode_temp(&TempRecord {
        created_at: info.created_at,
        size: info.size,
        staged: Staged::Blob {
            id: info.id.clone(),
        },
    })
}

/// Reads the temp record of `id` as the planner needs it.
pub fn decode_temp_info(id: &str, bytes: &[u8]) -> Result<TempInfo, DecodeError> {
    let r = decode_temp(bytes)?;
    Ok(TempInfo {
        id: id.to_string(),
        size: r.size,
        created_at: r.created_at,
    })
}

/// A namespace's registration record.
#[cfg(test)]
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceRecord {
    registered_at: Millis,
}

/// A namespace's registration record, registered at `registered_at`.
pub fn encode_namespace(registered_at: Millis) -> Vec<u8> {
    Writer::record(|w| {
        w.map(1);
        w.uints(&[("registeredAt", registered_at)]);
    })
}

/// An entry's inline value as stored: raw bytes, or any value as MessagePack.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredValue {
    /// Raw bytes (a `Uint8Array` from JavaScript), returned as they were put.
    Bytes(Vec<u8>),
    /// Any other value, in kvsweep's MessagePack encoding of the
    /// structured-clone types (SPEC §8).
    MsgPack(Vec<u8>),
}

const TAG_BYTES: u8 = 0;
const TAG_MSGPACK: u8 = 1;

impl StoredValue {
    /// Bytes the value takes, as counted against `maxBytes`.
    pub fn len(&self) -> usize {
        match self {
            StoredValue::Bytes(b) | StoredValue::MsgPack(b) => b.len(),
        }
    }

    /// Whether the value takes no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value as stored in `Values` or inline: a tag byte, then its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            StoredValue::Bytes(b) => (TAG_BYTES, b),
            StoredValue::MsgPack(b) => (TAG_MSGPACK, b),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(tag);
        out.extend_from_slice(body);
        out
    }

    /// Reads a stored value; `Err` on an unknown tag or an empty record.
    pub fn decode(bytes: &[u8]) -> Result<StoredValue, DecodeError> {
        match bytes.split_first() {
            Some((&TAG_BYTES, rest)) => Ok(StoredValue::Bytes(rest.to_vec())),
            Some((&TAG_MSGPACK, rest)) => Ok(StoredValue::MsgPack(rest.to_vec())),
            Some((tag, _)) => Err(DecodeError::Malformed(format!("unknown value tag {tag}"))),
            None => Err(DecodeError::Malformed("empty value record".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The records are built by rmpv here, independently of the hand-written code.
    use rmpv::Value;

    /// What rmp-serde writes for a record: the format the hand writer keeps.
    fn by_serde<T: Serialize>(record: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(&Envelope(FORMAT_VERSION, record)).unwrap()
    }

    /// Every size class of every MessagePack form the records use.
    #[test]
    fn the_hand_writer_writes_exactly_what_rmp_serde_wrote() {
        let long = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
        for (i, n) in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            u64::MAX,
        ]
        .into_iter()
        .enumerate()
        {
            let text = long([0, 1, 31, 32, 255, 256, 65_535, 65_536, 5, 70_000, 3][i]);
            let items: Vec<String> = (0..[0, 1, 15, 16, 3, 65_536, 2, 0, 1, 17, 4][i])
                .map(|k| format!("r{k}"))
                .collect();
            let meta = EntryMeta {
                created_at: n,
                updated_at: n / 2,
                accessed_at: n / 3,
                expires_at: (i % 2 == 0).then_some(n),
                size: n ^ 0x55,
                group: (i % 3 == 0).then(|| text.clone()),
                pinned: i % 2 == 1,
                locked: i % 3 == 1,
                dependent: i % 5 == 1,
                refs: items.clone(),
                blobs: items.iter().take(3).cloned().collect(),
                write_id: n.rotate_left(7),
                referrers: n >> 3,
                rev: n.wrapping_mul(3),
            };
            assert_eq!(encode_meta(&meta), by_serde(&meta), "meta {i}");
            let value = vec![7u8; [0, 1, 255, 256, 65_535, 65_536, 3, 0, 0, 0, 0][i]];
            let mut entry = vec![0x93];
            entry.extend(rmp_serde::to_vec(&FORMAT_VERSION).unwrap());
            entry.extend(rmp_serde::to_vec_named(&meta).unwrap());
            rmpv::encode::write_value(&mut entry, &Value::Binary(value.clone())).unwrap();
            assert_eq!(encode_entry(&meta, Some(&value)), entry, "entry {i}");
            let blob = BlobRecord {
                size: n,
                created_at: n / 5,
                refs: n / 7,
                rev: n / 11,
                lost: i % 2 == 1,
            };
            assert_eq!(encode_blob(&blob), by_serde(&blob), "blob {i}");
            let temps = [
                TempRecord {
                    created_at: n,
                    size: n / 3,
                    staged: Staged::Blob { id: text.clone() },
                },
                TempRecord {
                    created_at: n,
                    size: 1,
                    staged: Staged::Entry {
                        namespace: text.clone(),
                        key: "k".into(),
                        writes: vec![n, 1, u64::MAX],
                    },
                },
            ];
            for t in temps {
                assert_eq!(encode_temp(&t), by_serde(&t), "temp {i}");
            }
            assert_eq!(
                encode_namespace(n),
                by_serde(&NamespaceRecord { registered_at: n })
            );
            assert_eq!(encode_number(n), by_serde(&n));
            let cursor = crate::exec::Cursor {
                mode: if i % 2 == 0 {
                    crate::plan::Mode::Full
                } else {
                    crate::plan::Mode::Light
                },
                started_at: n,
                after: (crate::plan::ActionKind::Temp, text.clone(), "id".into()),
                deleted: crate::plan::Reason::ALL
                    .iter()
                    .take(i)
                    .map(|r| {
                        (
                            *r,
                            crate::plan::Tally {
                                count: n,
                                bytes: n / 2,
                            },
                        )
                    })
                    .collect(),
                kept: n,
            };
            assert_eq!(cursor.encode(), by_serde(&cursor), "cursor {i}");
        }
    }

    #[test]
    fn meta_round_trips_through_msgpack() {
        let meta = EntryMeta {
            created_at: 1,
            updated_at: 2,
            accessed_at: 3,
            expires_at: Some(4),
            size: 5,
            group: Some("nightly".into()),
            pinned: true,
            locked: false,
            dependent: true,
            refs: vec!["a".into()],
            blobs: vec!["b".into()],
            write_id: 6,
            referrers: 7,
            rev: 8,
        };
        assert_eq!(decode_meta(&encode_meta(&meta)), Ok(meta));
    }

    #[test]
    fn newer_format_version_is_an_error_not_garbage() {
        let bytes =
            rmp_serde::to_vec_named(&Envelope(FORMAT_VERSION + 1, &EntryMeta::default())).unwrap();
        assert_eq!(
            decode_meta(&bytes),
            Err(DecodeError::UnsupportedVersion(FORMAT_VERSION + 1))
        );
    }

    #[test]
    fn records_missing_required_fields_are_corrupt_not_zeros() {
        // [1, {}] and [1, []]: the right version, nothing in it.
        assert!(decode_meta(&[0x92, 0x01, 0x80]).is_err());
        assert!(decode_meta(&[0x92, 0x01, 0x90]).is_err());
        assert!(decode_blob(&[0x92, 0x01, 0x80]).is_err());
    }

    /// Named fields as rmp-serde writes them, for the compatibility cases.
    fn record(fields: &[(&str, Value)]) -> Vec<u8> {
        let map = fields
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect();
        let mut out = Vec::new();
        rmpv::encode::write_value(
            &mut out,
            &Value::Array(vec![Value::from(FORMAT_VERSION), Value::Map(map)]),
        )
        .unwrap();
        out
    }

    #[test]
    fn hand_reader_agrees_with_serde_on_what_serde_wrote() {
        let temp = TempRecord {
            created_at: 9,
            size: 3,
            staged: Staged::Entry {
                namespace: "ns".into(),
                key: "k".into(),
                writes: vec![1, u64::MAX],
            },
        };
        let bytes = encode_temp(&temp);
        assert_eq!(decode_temp(&bytes), Ok(temp));
        let blob_temp = TempRecord {
            created_at: 1,
            size: 2,
            staged: Staged::Blob { id: "b".into() },
        };
        assert_eq!(decode_temp(&encode_temp(&blob_temp)), Ok(blob_temp));
        for lost in [false, true] {
            let blob = BlobRecord {
                size: 1,
                created_at: 2,
                refs: 3,
                rev: 4,
                lost,
            };
            assert_eq!(decode_blob(&encode_blob(&blob)), Ok(blob));
        }
        // Serde's own reader reads the same bytes the same way.
        let meta = EntryMeta {
            created_at: 1,
            updated_at: 2,
            accessed_at: 3,
            write_id: u64::MAX,
            refs: vec!["x".into()],
            ..EntryMeta::default()
        };
        let bytes = encode_meta(&meta);
        let (_, by_serde): (u32, EntryMeta) = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(decode_meta(&bytes), Ok(by_serde));
    }

    #[test]
    fn hand_reader_keeps_serdes_rules_for_missing_unknown_and_repeated_fields() {
        let base = [
            ("createdAt", Value::from(1)),
            ("updatedAt", Value::from(2)),
            ("accessedAt", Value::from(3)),
            ("size", Value::from(4)),
            ("writeId", Value::from(5)),
            ("referrers", Value::from(0)),
        ];
        // Defaults where serde has them, unknown fields ignored, nil is None.
        let mut fields = base.to_vec();
        fields.push(("expiresAt", Value::Nil));
        fields.push(("future", Value::from("ignored")));
        let meta = decode_meta(&record(&fields)).unwrap();
        assert_eq!((meta.rev, meta.expires_at, meta.pinned), (0, None, false));
        // A required field missing, a field twice, a wrong type: corrupt.
        assert!(decode_meta(&record(&base[1..])).is_err());
        let mut twice = base.to_vec();
        twice.push(("size", Value::from(4)));
        assert!(decode_meta(&record(&twice)).is_err());
        let mut wrong = base.to_vec();
        wrong.push(("refs", Value::from("k")));
        assert!(decode_meta(&record(&wrong)).is_err());
        let mut negative = base.to_vec();
        negative[3] = ("size", Value::from(-1));
        assert!(decode_meta(&record(&negative)).is_err());
    }

    #[test]
    fn metadata_written_before_accessed_at_reads_as_never_used_since_its_write() {
        let old = record(&[
            ("createdAt", Value::from(1)),
            ("updatedAt", Value::from(7)),
            ("size", Value::from(4)),
            ("writeId", Value::from(5)),
            ("referrers", Value::from(0)),
        ]);
        let (meta, before) = decode_meta_layout(&old).unwrap();
        assert!(before);
        assert_eq!((meta.updated_at, meta.accessed_at, meta.size), (7, 7, 4));
        // Written again, it has the field and reads as current.
        let (again, before) = decode_meta_layout(&encode_meta(&meta)).unwrap();
        assert!(!before);
        assert_eq!(again, meta);
    }

    #[test]
    fn streaming_reader_reads_what_serde_wrote_and_refuses_every_truncation() {
        let mut seed = 7u64;
        let mut next = || {
            seed = crate::sweeper::splitmix64(seed);
            seed
        };
        for i in 0..300 {
            let pick = |x: u64, n: u64| x % n;
            let meta = EntryMeta {
                created_at: next() >> pick(next(), 64),
                updated_at: next() >> 40,
                accessed_at: pick(next(), 300),
                expires_at: (i % 3 == 0).then(|| next() >> 20),
                size: next() >> pick(next(), 64),
                group: (i % 4 == 0).then(|| "g".repeat(pick(next(), 300) as usize)),
                pinned: i % 5 == 0,
                locked: i % 7 == 0,
                dependent: i % 2 == 0,
                refs: (0..pick(next(), 20))
                    .map(|k| format!("ref-{k}-é"))
                    .collect(),
                blobs: (0..pick(next(), 3))
                    .map(|k| "b".repeat(k as usize * 40))
                    .collect(),
                write_id: next(),
                referrers: pick(next(), 70_000),
                rev: next() >> pick(next(), 64),
            };
            let value = vec![i as u8; pick(next(), 70_000) as usize];
            let inline = (i % 2 == 0).then_some(&value[..]);
            let bytes = encode_entry(&meta, inline);
            assert_eq!(decode_meta(&bytes), Ok(meta.clone()));
            assert_eq!(inline_value(&bytes), Ok(inline.map(<[u8]>::to_vec)));
            if inline.is_none() {
                let (_, by_serde): (u32, EntryMeta) = rmp_serde::from_slice(&bytes).unwrap();
                assert_eq!(by_serde, meta);
            }
            if i < 20 {
                for cut in 0..bytes.len().min(400) {
                    assert!(decode_meta(&bytes[..cut]).is_err(), "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn a_run_cursor_and_the_rebuild_epoch_round_trip() {
        use crate::exec::Cursor;
        use crate::plan::{ActionKind, Mode, Reason, Tally};
        let cursor = Cursor {
            mode: Mode::Light,
            started_at: 7,
            after: (ActionKind::Blob, String::new(), "ab".into()),
            deleted: [(Reason::OrphanBlob, Tally { count: 2, bytes: 9 })].into(),
            kept: 1,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        assert_eq!(decode_number(&encode_number(42)), Ok(42));
        assert!(Cursor::decode(&encode_number(42)).is_err());
    }

    #[test]
    fn arbitrary_bytes_decode_to_an_error() {
        for bytes in [&b""[..], b"\xff\xff", b"\x92\x01", b"hello"] {
            assert!(decode_meta(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn values_keep_their_kind() {
        for v in [
            StoredValue::Bytes(vec![1, 2]),
            StoredValue::MsgPack(vec![0xc0]),
        ] {
            assert_eq!(StoredValue::decode(&v.encode()), Ok(v));
        }
        assert!(StoredValue::decode(&[9]).is_err());
    }
}
