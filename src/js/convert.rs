//! JsValue ⇄ option trees and JsValue ⇄ stored values (MessagePack), with
//! depth limits so cyclic or hostile input gives an error, not a stack overflow.

use crate::error::Quoted;
use crate::mpv::{self, Value};
use js_sys::{Array, ArrayBuffer, Date, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use super::options::OptValue;
use crate::codec::StoredValue;

/// What a thrown value says: an Error's `name: message`, else the value.
pub fn thrown(e: &JsValue) -> String {
    let text = |k: &str| Reflect::get(e, &k.into()).ok().and_then(|v| v.as_string());
    match (text("name"), text("message")) {
        (Some(name), Some(message)) if e.is_object() => format!("{name}: {message}"),
        _ => describe(e),
    }
}

/// The bytes `putBlob` was given: now (a copy, and the view of the caller's
/// memory it was copied from), or once a `Blob` is read.
pub enum BlobBytes {
    Now(Vec<u8>, Uint8Array),
    Later(js_sys::Promise),
}

/// `putBlob`'s argument as bytes; why not, if it holds none (`putBlob: ` comes first).
pub fn blob_bytes(v: &JsValue) -> Result<BlobBytes, String> {
    if let Some(b) = exact_bytes(v, false).map_err(|e| format!("bytes {e}"))? {
        return Ok(BlobBytes::Now(b.view.to_vec(), b.view));
    }
    // A Blob (or File) is read with its own `arrayBuffer()`.
    if type_name(v) == "Blob" || type_name(v) == "File" {
        if let Ok(read) = Reflect::get(v, &"arrayBuffer".into()).and_then(|f| {
            f.dyn_into::<js_sys::Function>()
                .map_err(|_| JsValue::UNDEFINED)?
                .call0(v)
        }) {
            if let Ok(p) = read.dyn_into::<js_sys::Promise>() {
                return Ok(BlobBytes::Later(p));
            }
        }
    }
    Err(format!(
        "bytes must be a Uint8Array, an ArrayBuffer, a typed array or a Blob, got {}",
        describe(v)
    ))
}

fn field_is_true(v: &JsValue, name: &str) -> bool {
    Reflect::get(v, &name.into()).ok().and_then(|d| d.as_bool()) == Some(true)
}

/// How often a value may meet an object it met before (each walked again:
/// 100,000 repeats of small Maps take about a second), or 16 times its own
/// objects if that is more.
const MAX_REPEATS: u32 = 100_000;

/// How deep an options object may nest.
const MAX_DEPTH: usize = 100;
/// MessagePack extension type of timestamps (the spec's -1).
const EXT_TIMESTAMP: i8 = -1;

/// Converts an options argument into a tree the native parser checks.
/// `root` names the argument in messages ("put options", "policy"'s parent
/// is "" for the Sweeper's own): a string with a lone surrogate is refused
/// by its path, as the parsers name what they refuse.
pub fn to_opt(v: &JsValue, root: &str) -> Result<OptValue, String> {
    to_opt_at(v, 0, root)
}

fn to_opt_at(v: &JsValue, depth: usize, path: &str) -> Result<OptValue, String> {
    if depth > MAX_DEPTH {
        return Err(format!("options nest deeper than {MAX_DEPTH} levels"));
    }
    let named = |what: &str| match path {
        "" => format!("an option {what}"),
        p => format!("{p} {what}"),
    };
    Ok(if v.is_undefined() {
        OptValue::Undefined
    } else if v.is_null() {
        OptValue::Null
    } else if let Some(b) = v.as_bool() {
        OptValue::Bool(b)
    } else if let Some(n) = v.as_f64() {
        OptValue::Number(n)
    } else if let Some(s) = v.as_string() {
        if lone_surrogate(v, &s) {
            return Err(format!(
                "{} must be well-formed UTF-16, got a string with a lone surrogate",
                match path {
                    "" => "an option",
                    p => p,
                }
            ));
        }
        OptValue::String(s)
    } else if v.is_function() {
        OptValue::Function
    } else if try_is_array(v).map_err(|e| named(&threw(e)))? {
        let arr = try_array_from(v).map_err(|e| named(&threw(e)))?;
        let mut items = Vec::with_capacity(arr.length() as usize);
        for (i, item) in arr.iter().enumerate() {
            items.push(to_opt_at(&item, depth + 1, &format!("{path}[{i}]"))?);
        }
        OptValue::Array(items)
    } else if is_plain_object(v) {
        let mut fields = Vec::new();
        let entries = try_entries(v).map_err(|e| named(&threw(e)))?;
        for pair in entries.iter() {
            let pair: Array = pair.unchecked_into();
            // A name is checked as a string is: a namespace or a group
            // named with a lone surrogate would name another one.
            let name = pair.get(0);
            let key = name.as_string().unwrap_or_default();
            if lone_surrogate(&name, &key) {
                return Err(format!(
                    "{} a property name with a lone surrogate (names must be well-formed UTF-16)",
                    match path {
                        "" => "the options have".to_string(),
                        p => format!("{p} has"),
                    }
                ));
            }
            let at = match path {
                "" => key.clone(),
                p => format!("{p}.{key}"),
            };
            fields.push((key, to_opt_at(&pair.get(1), depth + 1, &at)?));
        }
        OptValue::Object(fields)
    } else {
        OptValue::Other(type_name(v))
    })
}

// The reads of a value that run its code (getters, Proxy traps), bound so
// that what they throw comes back as an error: an exception must not unwind
// through Rust frames.
#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = Object, js_name = entries)]
    fn try_entries(v: &JsValue) -> Result<Array, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Object, js_name = keys)]
    fn try_keys(v: &JsValue) -> Result<Array, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Object, js_name = getPrototypeOf)]
    fn try_prototype(v: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Array, js_name = isArray)]
    fn try_is_array(v: &JsValue) -> Result<bool, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Array, js_name = from)]
    pub(super) fn try_array_from(v: &JsValue) -> Result<Array, JsValue>;
    #[wasm_bindgen(catch, js_namespace = Object, js_name = assign)]
    pub(super) fn try_assign(target: &JsValue, source: &JsValue) -> Result<JsValue, JsValue>;
    /// `Date.prototype.getTime.call(d)`.
    #[wasm_bindgen(catch, js_namespace = ["Date", "prototype", "getTime"], js_name = call)]
    fn try_time(d: &JsValue) -> Result<f64, JsValue>;
}

/// The built-in getters of buffers and views, which no subclass, own
/// property or Proxy can make lie about what memory a view covers.
struct Slots {
    uint8: js_sys::Function,
    buffer_length: js_sys::Function,
    /// `buffer`, `byteOffset`, `byteLength` of typed arrays, then of `DataView`s.
    views: [[js_sys::Function; 3]; 2],
    /// A typed array's kind (`Symbol.toStringTag` of `%TypedArray%.prototype`).
    tag: js_sys::Function,
}

impl Slots {
    fn find() -> Option<Slots> {
        let uint8 = Uint8Array::new_with_length(0).constructor();
        let get = |proto: &JsValue, name: &str| -> Option<js_sys::Function> {
            let d = Reflect::get_own_property_descriptor(proto.dyn_ref::<Object>()?, &name.into())
                .ok()?;
            Reflect::get(&d, &"get".into()).ok()?.dyn_into().ok()
        };
        let proto = |of: &JsValue| Reflect::get(of, &"prototype".into()).ok();
        let typed: JsValue = Object::get_prototype_of(&proto(&uint8)?).into();
        let data = proto(&js_sys::DataView::new(&ArrayBuffer::new(0), 0, 0).constructor())?;
        let three = |p: &JsValue| {
            Some([
                get(p, "buffer")?,
                get(p, "byteOffset")?,
                get(p, "byteLength")?,
            ])
        };
        let tag = Reflect::get_own_property_descriptor(
            typed.dyn_ref::<Object>()?,
            &js_sys::Symbol::to_string_tag().into(),
        )
        .ok()?;
        Some(Slots {
            tag: Reflect::get(&tag, &"get".into()).ok()?.dyn_into().ok()?,
            buffer_length: get(&proto(&ArrayBuffer::new(0).constructor())?, "byteLength")?,
            views: [three(&typed)?, three(&data)?],
            uint8,
        })
    }
}

std::thread_local! {
    static SLOTS: Option<Slots> = Slots::find();
}

/// The bytes of an `ArrayBuffer` or of a view (a typed array, a `DataView`)
/// as a new `Uint8Array` over exactly them, their extent read from the
/// built-in getters; `None` if `v` is neither. What cannot be read so (a
/// Proxy, a detached buffer) is refused, saying why, and so is, for a
/// `value` (not a blob's bytes), a view of a `SharedArrayBuffer` or of a
/// resizable buffer, which would come back as something else.
fn exact_bytes(v: &JsValue, value: bool) -> Result<Option<Bytes>, String> {
    SLOTS.with(|slots| {
        let slots = slots.as_ref().ok_or("cannot be read here")?;
        let call = |f: &js_sys::Function, on: &JsValue| f.call0(on).map_err(threw);
        // Brand checks, not instanceof: a buffer from another realm (an
        // iframe, a vm context) is one all the same.
        let own_length = slots.buffer_length.call0(v);
        let buffer = own_length.is_ok();
        if !buffer && !ArrayBuffer::is_view(v) {
            // One that says it is, but is not (a Proxy): the getter says why.
            if v.is_instance_of::<ArrayBuffer>() {
                own_length.map_err(threw)?;
            }
            if v.is_instance_of::<Uint8Array>() {
                call(&slots.views[0][2], v)?;
                return Err("is not a Uint8Array".into());
            }
            return Ok(None);
        }
        let (of, offset, length, kind) = match own_length {
            Ok(length) => (v.clone(), 0.0.into(), length, None),
            Err(_) => {
                // A typed array's getters throw for a DataView, and the reverse.
                let group = slots.views.iter().position(|g| g[0].call0(v).is_ok()).ok_or("is a view whose extent cannot be read (a Proxy?)")?;
                let [b, o, l] = &slots.views[group];
                // Its kind as the built-in tag says it, whatever its
                // constructor's name or prototype claim.
                let name = match group {
                    0 => call(&slots.tag, v)?.as_string().unwrap_or_default(),
                    _ => "DataView".into(),
                };
                let kind = match VIEWS.iter().position(|k| *k == name) {
                    Some(i) => i as u8,
                    // A blob's bytes are any view's.
                    None if name == "Uint8Array" || !value => UINT8,
                    None => return Err(format!("is a {name}, which cannot be stored (it is new, and not yet read back in every runtime kvsweep serves); store a Uint8Array over its buffer")),
                };
                (call(b, v)?, call(o, v)?, call(l, v)?, Some(kind))
            }
        };
        if value && slots.buffer_length.call0(&of).is_err() {
            return Err("is a view of a SharedArrayBuffer, which would come back as an ArrayBuffer; copy it first".into());
        }
        if value && field_is_true(&of, "resizable") {
            return Err("is (a view of) a resizable ArrayBuffer, which would come back fixed-length; copy it first".into());
        }
        let args = js_sys::Array::of3(&of, &offset, &length);
        match Reflect::construct(&slots.uint8, &args) {
            Ok(view) => Ok(Some(Bytes {
                view: view.unchecked_into(),
                len: length.as_f64().unwrap_or(0.0),
                kind,
            })),
            Err(e) if field_is_true(&of, "detached") => Err(format!(
                "is a detached ArrayBuffer (its bytes were transferred away): {}",
                thrown(&e)
            )),
            Err(e) => Err(format!("cannot be viewed: {}", thrown(&e))),
        }
    })
}

/// `Bytes::kind` of a `Uint8Array` (stored as MessagePack bin, not a view).
const UINT8: u8 = u8::MAX;

/// What `exact_bytes` read: a new view of exactly the bytes, their length
/// as a JS number (past 4 GiB a u32 would wrap), and the kind of view they
/// were (an index of `VIEWS`, or `UINT8`; `None`: a whole `ArrayBuffer`).
struct Bytes {
    view: Uint8Array,
    len: f64,
    kind: Option<u8>,
}

/// What a getter or a Proxy trap threw, as an error of the value's path.
fn threw(e: JsValue) -> String {
    format!("threw {} when read (a getter or a Proxy)", thrown(&e))
}

/// An object literal, `Object.create(null)`, or a class instance that is not a built-in we know.
fn is_plain_object(v: &JsValue) -> bool {
    if !v.is_object() {
        return false;
    }
    let Ok(proto) = try_prototype(v) else {
        return false;
    };
    proto.is_null()
        || Reflect::get(&proto, &"constructor".into()).is_ok_and(|c| {
            Reflect::get(&c, &"name".into())
                .ok()
                .and_then(|n| n.as_string())
                .as_deref()
                == Some("Object")
        })
}

/// A value as an error message shows it, the way JavaScript would write it:
/// `42`, `Infinity`, `"text"`, `null`, `an array`, `a Map`.
pub fn describe(v: &JsValue) -> String {
    if v.is_undefined() {
        "undefined".into()
    } else if v.is_null() {
        "null".into()
    } else if let Some(b) = v.as_bool() {
        b.to_string()
    } else if let Some(n) = v.as_f64() {
        js_number(n)
    } else if v.is_bigint() {
        let digits = v
            .dyn_ref::<js_sys::BigInt>()
            .and_then(|b| b.to_string(10).ok())
            .map(String::from)
            .unwrap_or_default();
        format!("{digits}n")
    } else if v.is_symbol() {
        "a symbol".into()
    } else if let Some(s) = v.as_string() {
        // Quoted, a lone surrogate would show as U+FFFD: not what was passed.
        if lone_surrogate(v, &s) {
            "a string with a lone surrogate".into()
        } else {
            Quoted(&s).to_string()
        }
    } else if v.is_function() {
        "a function".into()
    } else if try_is_array(v).unwrap_or(false) {
        "an array".into()
    } else {
        let name = type_name(v);
        // "a Uint8Array", "a URL": their U sounds as "you".
        let article = if name.starts_with(['A', 'E', 'I', 'O']) {
            "an"
        } else {
            "a"
        };
        if name == "Object" || name == "value" {
            "an object".into()
        } else if matches!(
            name.as_str(),
            "Number" | "String" | "Boolean" | "BigInt" | "Symbol"
        ) {
            // Primitives are answered above: this is a wrapper object.
            format!("{article} {name} object (a wrapper; pass the primitive)")
        } else {
            format!("{article} {name}")
        }
    }
}

pub use super::options::js_number;

fn type_name(v: &JsValue) -> String {
    if v.is_bigint() {
        return "bigint".into();
    }
    if v.is_symbol() {
        return "symbol".into();
    }
    Reflect::get(v, &"constructor".into())
        .ok()
        .and_then(|c| Reflect::get(&c, &"name".into()).ok())
        .and_then(|n| n.as_string())
        .filter(|n| !n.is_empty()) // an anonymous class's
        .unwrap_or_else(|| "value".into())
}

/// How deep a stored value may nest: far beyond any real document, and
/// within the stack of the WebAssembly module.
const MAX_VALUE_DEPTH: usize = 1000;
/// Most items (holes too) one array in a value may have.
const MAX_ARRAY_ITEMS: u32 = 1 << 22;

// MessagePack extension types of the JS values MessagePack has no type for,
// so that every value `put` accepts comes back exactly as it was.
/// `undefined` inside an object or array.
const EXT_UNDEFINED: i8 = 1;
/// A hole of a sparse array.
const EXT_HOLE: i8 = 2;
/// An `ArrayBuffer`: its bytes.
const EXT_ARRAY_BUFFER: i8 = 3;
/// A `Map`: a MessagePack array of keys and values, alternating.
const EXT_MAP: i8 = 4;
/// A `Set`: a MessagePack array of its items.
const EXT_SET: i8 = 5;
/// A `BigInt`: its decimal digits, with a leading `-` if negative.
const EXT_BIGINT: i8 = 6;
/// A typed array or `DataView` other than `Uint8Array`: one byte naming its
/// kind (an index into `VIEWS`), then its bytes as they are in memory.
const EXT_VIEW: i8 = 7;
/// A string that is not well-formed UTF-16 (a lone surrogate): its UTF-16
/// code units, little-endian.
const EXT_UTF16: i8 = 8;

/// The views `EXT_VIEW` stores, by their constructor's name.
const VIEWS: [&str; 11] = [
    "Int8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
    "DataView",
];

/// How many bytes `putBlob` would copy in: a buffer's or a view's length
/// (as its built-in getter reads it), a Blob's `size`; 0 for anything else
/// (refused later, as what cannot be read is).
pub fn blob_size(v: &JsValue) -> f64 {
    if matches!(type_name(v).as_str(), "Blob" | "File") {
        let size = Reflect::get(v, &"size".into()).ok();
        return size.and_then(|n| n.as_f64()).unwrap_or(0.0);
    }
    let bytes = exact_bytes(v, false).ok().flatten();
    bytes.map_or(0.0, |b| b.len)
}

/// Encodes a value given to `put`: a `Uint8Array` is stored as bytes, anything
/// else as MessagePack. What cannot be stored exactly is refused, by path, and
/// so is a value of more than `limit` bytes (`past` says which limit), before
/// its bytes and strings are copied in: a copy larger than the module's
/// memory would trap.
pub fn to_stored(v: &JsValue, limit: usize, past: &str) -> Result<StoredValue, String> {
    if v.is_undefined() {
        return Err("value is undefined; store null to record an empty value".into());
    }
    if v.is_instance_of::<Uint8Array>() {
        let bytes = exact_bytes(v, true).map_err(|e| format!("value {e}"))?;
        let bytes = bytes.ok_or("value is not a Uint8Array")?;
        // One only by its prototype (another kind, as its tag says) goes as what it is.
        if bytes.kind == Some(UINT8) {
            if bytes.len > limit as f64 {
                let size = bytes.len as u64;
                return Err(format!("value is {size} bytes, more than {past}"));
            }
            return Ok(StoredValue::Bytes(bytes.view.to_vec()));
        }
    }
    let mut enc = Encoder {
        path: Vec::new(),
        open: js_sys::Set::new(&JsValue::UNDEFINED),
        seen: js_sys::Set::new(&JsValue::UNDEFINED),
        objects: 0,
        repeats: 0,
        past,
        left: limit,
    };
    let value = enc.encode(v).map_err(|why| {
        let seg = |s: &Seg| match s {
            Seg::Index(i) => format!("[{i}]"),
            Seg::Key(k) => format!(".{k}"),
            Seg::Entry(i) => format!(" (entry {i})"),
        };
        // A long path keeps its ends: where it starts and where it failed.
        let path = &enc.path;
        let at: String = if path.len() > 8 {
            let (head, tail) = (&path[..3], &path[path.len() - 3..]);
            let middle = format!("…{} more…", path.len() - 6);
            head.iter()
                .map(seg)
                .chain([middle])
                .chain(tail.iter().map(seg))
                .collect()
        } else {
            path.iter().map(seg).collect()
        };
        format!("value{at} {why}")
    })?;
    let bytes = mpv::to_vec(&value);
    // The estimate above counts content; the limit holds for the encoding.
    if bytes.len() > limit {
        let size = bytes.len();
        return Err(format!(
            "value is {size} bytes as encoded, more than {past}"
        ));
    }
    Ok(StoredValue::MsgPack(bytes))
}

/// One step of the path to a value inside what `put` was given.
enum Seg {
    Index(u32),
    Key(String),
    Entry(u32),
}

/// Walks a value into MessagePack, keeping the path to where it is (for an
/// error), the objects it is inside of (to name a cycle) and those it met.
struct Encoder<'a> {
    path: Vec<Seg>,
    open: js_sys::Set,
    /// Every object met so far, and how often one was met again.
    seen: js_sys::Set,
    objects: u32,
    repeats: u32,
    /// Which size limit the value is held to, and what is left of it for the
    /// nodes, keys, strings and bytes to come.
    past: &'a str,
    left: usize,
}

fn packed(v: &Value) -> Vec<u8> {
    mpv::to_vec(v)
}

impl Encoder<'_> {
    /// Takes `n` bytes from what is left of the limit, before they are
    /// copied in: no more than they take encoded (a string's UTF-16 length
    /// is no more than its UTF-8 one; each node takes a byte at least).
    fn spend(&mut self, n: impl Into<f64>) -> Result<(), String> {
        let n = n.into();
        if n > self.left as f64 {
            return Err(format!(
                "is at least {} bytes as encoded, more than the {} left of {}",
                n as u64, self.left, self.past
            ));
        }
        self.left -= n as usize;
        Ok(())
    }

    fn encode(&mut self, v: &JsValue) -> Result<Value, String> {
        self.spend(1)?;
        if v.is_null() {
            return Ok(Value::Nil);
        }
        if v.is_undefined() {
            return Ok(Value::Ext(EXT_UNDEFINED, Vec::new()));
        }
        if let Some(b) = v.as_bool() {
            return Ok(Value::Boolean(b));
        }
        if let Some(n) = v.as_f64() {
            let negative_zero = n == 0.0 && n.is_sign_negative();
            let safe = n.fract() == 0.0 && n.abs() <= super::options::MAX_SAFE_INTEGER;
            return Ok(if safe && !negative_zero {
                Value::int(n as i64)
            } else {
                Value::F64(n)
            });
        }
        if let Some(s) = v.dyn_ref::<js_sys::JsString>() {
            self.spend(s.length())?;
        }
        if let Some(s) = v.as_string() {
            return Ok(string_value(v, s));
        }
        if v.is_bigint() {
            let digits = v
                .dyn_ref::<js_sys::BigInt>()
                .and_then(|b| b.to_string(10).ok());
            if let Some(d) = &digits {
                self.spend(d.length())?;
            }
            let digits = digits.map(String::from).unwrap_or_default();
            return Ok(Value::Ext(EXT_BIGINT, digits.into_bytes()));
        }
        if v.is_symbol() {
            return Err("is a symbol, which cannot be stored".into());
        }
        if v.is_function() {
            return Err("is a function, which cannot be stored".into());
        }
        if self.open.has(v) {
            return Err("is a cycle: it holds an object it is inside of".into());
        }
        // A value is stored as a tree: an object met again is written
        // again (and comes back as a copy). A value whose parts share each
        // other at every level would take the walk exponentially long
        // before its size refused it: past so many repeats it is refused.
        if self.seen.has(v) {
            self.repeats += 1;
            // Many times more than its own objects: a value holding one
            // object in each of its 100,000 rows is fine.
            if self.repeats > MAX_REPEATS.max(16 * self.objects) {
                return Err(format!("repeats objects met before in this value more than {} times (each is written again, as a copy); store a value that shares fewer of its parts", self.repeats - 1));
            }
        } else if v.is_object() {
            self.seen.add(v);
            self.objects += 1;
        }
        // Bytes first where they say so (no getter is tried on every object).
        let bytes_like = ArrayBuffer::is_view(v)
            || v.is_instance_of::<ArrayBuffer>()
            || v.is_instance_of::<Uint8Array>();
        if bytes_like {
            if let Some(bytes) = exact_bytes(v, true)? {
                return self.bytes(bytes);
            }
        }
        if let Some(d) = v.dyn_ref::<Date>() {
            let ms = try_time(d).map_err(threw)?;
            if !ms.is_finite() {
                return Err("is an invalid Date".into());
            }
            return Ok(Value::Ext(EXT_TIMESTAMP, timestamp96(ms)));
        }
        let is_array = try_is_array(v).map_err(threw)?;
        let is_map = v.has_type::<js_sys::Map>();
        let is_set = v.has_type::<js_sys::Set>();
        if !(is_array || is_map || is_set || is_plain_object(v)) {
            // A buffer from another realm (a vm context, an iframe) is one all the same.
            if !bytes_like {
                if let Some(bytes) = exact_bytes(v, true)? {
                    return self.bytes(bytes);
                }
            }
            let what = describe(v);
            return Err(format!(
                "is {what}, which cannot be stored; store plain objects, arrays, Map, Set, Date (this realm's: structuredClone() another's), BigInt, ArrayBuffer or typed arrays"
            ));
        }
        if self.path.len() >= MAX_VALUE_DEPTH {
            return Err(format!("nests deeper than {MAX_VALUE_DEPTH} levels"));
        }
        self.open.add(v);
        let inner = if is_array {
            self.array(v.unchecked_ref())
        } else if is_map {
            self.map(v)
        } else if is_set {
            self.set(v)
        } else {
            self.object(v)
        };
        self.open.delete(v);
        inner
    }

    /// A buffer or a view, as `exact_bytes` read it.
    fn bytes(&mut self, bytes: Bytes) -> Result<Value, String> {
        self.spend(bytes.len)?;
        let data = bytes.view.to_vec();
        Ok(match bytes.kind {
            None => Value::Ext(EXT_ARRAY_BUFFER, data),
            Some(UINT8) => Value::Binary(data),
            Some(kind) => Value::Ext(EXT_VIEW, [&[kind][..], &data].concat()),
        })
    }

    /// Descends into one part, and comes back only if it encoded.
    fn part(&mut self, seg: Seg, v: &JsValue) -> Result<Value, String> {
        self.path.push(seg);
        let value = self.encode(v)?;
        self.path.pop();
        Ok(value)
    }

    fn array(&mut self, arr: &Array) -> Result<Value, String> {
        let n = Reflect::get(arr, &"length".into())
            .map_err(threw)?
            .as_f64()
            .unwrap_or(0.0) as u32;
        if n > MAX_ARRAY_ITEMS {
            return Err(format!(
                "is an array of {n} items, more than the {MAX_ARRAY_ITEMS} a value may hold"
            ));
        }
        // Own keys list indices first, in order, then other properties: the
        // last one tells whether there are others, which would be lost.
        let keys = try_keys(arr).map_err(threw)?;
        if let Some(last) = keys.get(keys.length().wrapping_sub(1)).as_string() {
            if last
                .parse::<u32>()
                .map_or(true, |i| i >= n || i.to_string() != last)
            {
                return Err(format!(
                    "is an array with a property besides its items ({}), which would be lost",
                    Quoted(&last)
                ));
            }
        }
        // Fewer own keys than items: holes, which stay holes.
        let sparse = keys.length() < n;
        let mut items = Vec::with_capacity((n as usize).min(1024));
        for i in 0..n {
            if sparse && !Reflect::has(arr, &JsValue::from(i)).unwrap_or(true) {
                items.push(Value::Ext(EXT_HOLE, Vec::new()));
                continue;
            }
            let item = Reflect::get_u32(arr, i).map_err(threw)?;
            items.push(self.part(Seg::Index(i), &item)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, map: &JsValue) -> Result<Value, String> {
        let pairs = try_array_from(map).map_err(threw)?;
        let mut items = Vec::with_capacity(2 * pairs.length() as usize);
        for (i, pair) in pairs.iter().enumerate() {
            let key = Reflect::get_u32(&pair, 0).map_err(threw)?;
            let value = Reflect::get_u32(&pair, 1).map_err(threw)?;
            items.push(self.part(Seg::Entry(i as u32), &key)?);
            items.push(self.part(Seg::Entry(i as u32), &value)?);
        }
        Ok(Value::Ext(EXT_MAP, packed(&Value::Array(items))))
    }

    fn set(&mut self, set: &JsValue) -> Result<Value, String> {
        let values = try_array_from(set).map_err(threw)?;
        let mut items = Vec::with_capacity(values.length() as usize);
        for (i, item) in values.iter().enumerate() {
            items.push(self.part(Seg::Entry(i as u32), &item)?);
        }
        Ok(Value::Ext(EXT_SET, packed(&Value::Array(items))))
    }

    fn object(&mut self, v: &JsValue) -> Result<Value, String> {
        let mut fields = Vec::new();
        for pair in try_entries(v).map_err(threw)?.iter() {
            let pair: Array = pair.unchecked_into();
            let name = pair.get(0);
            // The key, copied in (and again for the path).
            if let Some(k) = name.dyn_ref::<js_sys::JsString>() {
                self.spend(k.length())?;
            }
            let key = name.as_string().unwrap_or_default();
            let key_value = string_value(&name, key.clone());
            let item = self.part(Seg::Key(key), &pair.get(1))?;
            fields.push((key_value, item));
        }
        Ok(Value::Map(fields))
    }
}

/// Whether the JS string `v`, which reached Rust as `s`, held a lone
/// surrogate (Rust got U+FFFD for it; only then is the original checked).
pub fn lone_surrogate(v: &JsValue, s: &str) -> bool {
    // U+FFFD's UTF-8, sought as bytes: a char pattern's searcher cost about
    // 620 bytes of gzipped wasm here.
    s.as_bytes().windows(3).any(|w| w == [0xef, 0xbf, 0xbd])
        && v.dyn_ref::<js_sys::JsString>()
            .is_some_and(|js| !js.is_valid_utf16())
}

/// A string as MessagePack: UTF-8 if it is well-formed, else its UTF-16.
fn string_value(v: &JsValue, s: String) -> Value {
    if lone_surrogate(v, &s) {
        if let Some(js) = v.dyn_ref::<js_sys::JsString>() {
            let units: Vec<u8> = js.iter().flat_map(u16::to_le_bytes).collect();
            return Value::Ext(EXT_UTF16, units);
        }
    }
    Value::from(s)
}

/// The MessagePack timestamp 96 format: nanoseconds (u32) then seconds (i64).
fn timestamp96(ms: f64) -> Vec<u8> {
    let secs = (ms / 1000.0).floor();
    let nanos = ((ms - secs * 1000.0) * 1_000_000.0).round() as u32;
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&nanos.min(999_999_999).to_be_bytes());
    out.extend_from_slice(&(secs as i64).to_be_bytes());
    out
}

fn timestamp_ms(data: &[u8]) -> Option<f64> {
    match data.len() {
        4 => Some(u32::from_be_bytes(data.try_into().ok()?) as f64 * 1000.0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            Some((v & 0x3_ffff_ffff) as f64 * 1000.0 + (v >> 34) as f64 / 1_000_000.0)
        }
        12 => {
            let nanos = u32::from_be_bytes(data[..4].try_into().ok()?);
            let secs = i64::from_be_bytes(data[4..].try_into().ok()?);
            Some(secs as f64 * 1000.0 + nanos as f64 / 1_000_000.0)
        }
        _ => None,
    }
}

/// Decodes a stored value for `get`.
pub fn from_stored(v: &StoredValue) -> Result<JsValue, String> {
    match v {
        StoredValue::Bytes(b) => Ok(Uint8Array::from(&b[..]).into()),
        StoredValue::MsgPack(b) => from_packed(b),
    }
}

fn from_packed(b: &[u8]) -> Result<JsValue, String> {
    let mut rd = b;
    // Every level counts one, the innermost scalar too (see `mpv::read_value`).
    let value = mpv::read_value(&mut rd, MAX_VALUE_DEPTH + 8)
        .map_err(|e| format!("stored value could not be decoded: {e}"))?;
    from_msgpack(&value, MAX_VALUE_DEPTH + 8)
}

/// The items of an extension that holds a MessagePack array, read within
/// the depth left to the value around it.
fn packed_items(data: &[u8], depth: usize) -> Result<Vec<Value>, String> {
    let mut rd = data;
    match mpv::read_value(&mut rd, depth + 1) {
        Ok(Value::Array(items)) => Ok(items),
        _ => Err("stored value holds a malformed or too deep Map or Set".into()),
    }
}

/// A stored value as JS, at most `depth` levels deep (the levels of Map and
/// Set extensions count: each is read on its own).
fn from_msgpack(v: &Value, depth: usize) -> Result<JsValue, String> {
    let Some(depth) = depth.checked_sub(1) else {
        return Err("stored value nests too deep".into());
    };
    let from_msgpack = |v: &Value| from_msgpack(v, depth);
    Ok(match v {
        Value::Nil => JsValue::NULL,
        Value::Boolean(b) => JsValue::from_bool(*b),
        Value::Uint(n) => JsValue::from_f64(*n as f64),
        Value::Int(n) => JsValue::from_f64(*n as f64),
        Value::F32(f) => JsValue::from_f64(*f as f64),
        Value::F64(f) => JsValue::from_f64(*f),
        Value::String(_) => match v.as_str() {
            Some(s) => JsValue::from_str(s),
            None => return Err("stored value holds a string that is not UTF-8".into()),
        },
        Value::Binary(b) => Uint8Array::from(&b[..]).into(),
        Value::Array(items) => {
            let arr = Array::new_with_length(items.len() as u32);
            for (i, item) in items.iter().enumerate() {
                if matches!(item, Value::Ext(EXT_HOLE, _)) {
                    continue;
                }
                arr.set(i as u32, from_msgpack(item)?);
            }
            arr.into()
        }
        Value::Map(fields) => {
            let obj = Object::new();
            for (k, item) in fields {
                let key = from_msgpack(k)?;
                let item = from_msgpack(item)?;
                if key.as_string().as_deref() == Some("__proto__") {
                    // An own property, as it was: assigning would set the prototype.
                    let desc = Object::new();
                    for (name, value) in [
                        ("value", item.clone()),
                        ("writable", JsValue::TRUE),
                        ("enumerable", JsValue::TRUE),
                        ("configurable", JsValue::TRUE),
                    ] {
                        let _ = Reflect::set(&desc, &name.into(), &value);
                    }
                    Object::define_property(&obj, &key, &desc);
                } else {
                    Reflect::set(&obj, &key, &item)
                        .map_err(|_| "could not build the stored object")?;
                }
            }
            obj.into()
        }
        Value::Ext(EXT_TIMESTAMP, data) => match timestamp_ms(data) {
            Some(ms) => Date::new(&JsValue::from_f64(ms)).into(),
            None => return Err("stored value holds a malformed timestamp".into()),
        },
        Value::Ext(EXT_UNDEFINED, _) => JsValue::UNDEFINED,
        Value::Ext(EXT_ARRAY_BUFFER, data) => Uint8Array::from(&data[..]).buffer().into(),
        Value::Ext(EXT_MAP, data) => {
            let map = js_sys::Map::new();
            let items = packed_items(data, depth)?;
            for pair in items.chunks(2) {
                let [k, v] = pair else {
                    return Err("stored value holds a malformed Map".into());
                };
                map.set(&from_msgpack(k)?, &from_msgpack(v)?);
            }
            map.into()
        }
        Value::Ext(EXT_SET, data) => {
            let set = js_sys::Set::new(&JsValue::UNDEFINED);
            for item in packed_items(data, depth)? {
                set.add(&from_msgpack(&item)?);
            }
            set.into()
        }
        Value::Ext(EXT_BIGINT, data) => {
            let digits = core::str::from_utf8(data).map_err(|_| "stored value holds a malformed BigInt")?;
            js_sys::BigInt::new(&JsValue::from_str(digits))
                .map_err(|_| "stored value holds a malformed BigInt")?
                .into()
        }
        Value::Ext(EXT_VIEW, data) => {
            let (&kind, bytes) = data
                .split_first()
                .ok_or("stored value holds a malformed typed array")?;
            let name = VIEWS
                .get(kind as usize)
                .ok_or("stored value holds an unknown kind of typed array")?;
            let ctor: js_sys::Function = Reflect::get(&js_sys::global(), &(*name).into())
                .ok()
                .and_then(|c| c.dyn_into().ok())
                .ok_or_else(|| format!("this runtime has no {name}"))?;
            let buffer = Uint8Array::from(bytes).buffer();
            Reflect::construct(&ctor, &Array::of1(&buffer))
                .map_err(|_| format!("stored value holds a malformed {name}"))?
        }
        Value::Ext(EXT_UTF16, data) => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            // By pieces: the glue spreads its argument into a call, and
            // 125,000 units overflowed the stack.
            let mut out = js_sys::JsString::from("");
            for piece in units.chunks(8192) {
                out = out.concat(&js_sys::JsString::from_char_code(piece).into());
            }
            out.into()
        }
        Value::Ext(tag, _) => {
            return Err(format!(
                "stored value holds an unknown kind of value (extension {tag}): written by a newer release?"
            ))
        }
    })
}
