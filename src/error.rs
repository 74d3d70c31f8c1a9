//! Why a call failed: one error type for the sweeper, the write protocol and
//! the executor, with messages a user can act on.

use std::fmt;

use crate::codec::DecodeError;
use crate::model::EntryId;
use crate::store::StoreError;

/// A string in double quotes, escaped as JavaScript's `JSON.stringify`
/// escapes it: how messages name keys, namespaces and values. (Rust's `{:?}`
/// would do, in Rust's escapes, with 4 KB of Unicode tables in the module.)
/// A string past `QUOTED_CHARS` characters is cut there, an ellipsis after
/// the closing quote, so that a key of megabytes gives a message of a line.
pub(crate) struct Quoted<'a>(pub(crate) &'a str);

/// How many characters of a string a message quotes.
pub(crate) const QUOTED_CHARS: usize = 100;

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('"')?;
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(QUOTED_CHARS) {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\u{8}' => f.write_str("\\b")?,
                '\u{c}' => f.write_str("\\f")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')?;
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

/// Why a sweeper call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something unusable; the message says what.
    InvalidInput(String),
    /// A value is larger than `maxValueBytes`.
    ValueTooLarge {
        /// The value's size in bytes.
        size: u64,
        /// The largest size accepted, in bytes.
        limit: usize,
    },
    /// An entry references a blob the store does not hold.
    MissingBlob(String),
    /// An entry references another that the store does not hold.
    MissingEntry(EntryId),
    /// An entry references another that has expired: `get` would not return
    /// it, so it cannot be referenced either.
    ExpiredEntry(EntryId),
    /// `delete` of an entry that other entries still reference.
    Referenced {
        /// The entry asked to be deleted.
        id: EntryId,
        /// How many entries reference it.
        referrers: u64,
    },
    /// A record could not be decoded.
    Corrupt {
        /// Which record could not be read, for a person to read.
        what: String,
        /// Why it could not be decoded.
        cause: DecodeError,
    },
    /// A write kept colliding with concurrent writes to the same records.
    Busy(String),
    /// The host stopped a plan or a run while it listed the store (an abort
    /// signal, `close()`).
    Stopped,
    /// The store failed the operation.
    Store(StoreError),
}

impl Error {
    /// An entry record that could not be decoded: what it references is
    /// unknown, so it stays until a put replaces it or a delete removes it;
    /// one a later release wrote stays, for that release.
    pub fn corrupt_entry(id: &EntryId, cause: DecodeError) -> Error {
        let how = match cause {
            DecodeError::UnsupportedVersion(_) => "a later release wrote it, which reads it",
            DecodeError::Malformed(_) => "put or delete it to replace it",
        };
        Error::Corrupt {
            what: format!(
                "metadata of {} in namespace {} (its references are unknown, so it is left as it \
                 is; {how})",
                Quoted(&id.key),
                Quoted(&id.namespace)
            ),
            cause,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => f.write_str(m),
            Error::ValueTooLarge { size, limit } => write!(
                f,
                "value is {size} bytes, more than the limit of {limit} bytes (maxValueBytes, unless the store keeps no larger values)"
            ),
            Error::MissingBlob(id) => write!(f, "blob {id} is not in the store: store it with putBlob first"),
            Error::MissingEntry(id) => write!(
                f,
                "refs: entry {} is not in namespace {}: put it first",
                Quoted(&id.key), Quoted(&id.namespace)
            ),
            Error::ExpiredEntry(id) => write!(
                f,
                "refs: entry {} in namespace {} has expired: put it again first",
                Quoted(&id.key), Quoted(&id.namespace)
            ),
            Error::Referenced { id, referrers } => write!(
                f,
                "entry {} in namespace {} is referenced by {referrers} other entr{}: delete or rewrite those first (if none does, a crash left its count high: rebuild() recounts)",
                Quoted(&id.key),
                Quoted(&id.namespace),
                if *referrers == 1 { "y" } else { "ies" }
            ),
            Error::Corrupt { what, cause } => write!(f, "{what} could not be read: {cause}"),
            Error::Busy(what) => write!(f, "{what} kept colliding with concurrent writes; try again"),
            Error::Stopped => f.write_str("stopped while listing the store"),
            Error::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_string_is_quoted_in_part_and_a_short_one_whole() {
        let exact = "é".repeat(QUOTED_CHARS);
        assert_eq!(Quoted(&exact).to_string(), format!("\"{exact}\""));
        let long = format!("{exact}x{}", "y".repeat(8000));
        assert_eq!(Quoted(&long).to_string(), format!("\"{exact}\"…"));
        assert_eq!(Quoted("a\"\n\u{1}").to_string(), "\"a\\\"\\n\\u0001\"");
    }
}
