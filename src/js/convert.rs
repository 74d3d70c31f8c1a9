//! JsValue ⇄ option trees and JsValue ⇄ stored values (MessagePack), with
//! depth limits so cyclic or hostile input gives an error, not a stack overflow.

use js_sys::{Array, ArrayBuffer, Date, Object, Reflect, Uint8Array};
use rmpv::Value;
use wasm_bindgen::{JsCast, JsValue};

use super::options::OptValue;
use crate::codec::StoredValue;

/// How deep a value or an options object may nest.
const MAX_DEPTH: usize = 100;
/// MessagePack extension type of timestamps (the spec's -1).
const EXT_TIMESTAMP: i8 = -1;

/// Converts an options argument into a tree the native parser checks.
pub fn to_opt(v: &JsValue) -> Result<OptValue, String> {
    to_opt_at(v, 0)
}

fn to_opt_at(v: &JsValue, depth: usize) -> Result<OptValue, String> {
    if depth > MAX_DEPTH {
        return Err(format!("options nest deeper than {MAX_DEPTH} levels"));
    }
    Ok(if v.is_undefined() {
        OptValue::Undefined
    } else if v.is_null() {
        OptValue::Null
    } else if let Some(b) = v.as_bool() {
        OptValue::Bool(b)
    } else if let Some(n) = v.as_f64() {
        OptValue::Number(n)
    } else if let Some(s) = v.as_string() {
        OptValue::String(s)
    } else if v.is_function() {
        OptValue::Function
    } else if Array::is_array(v) {
        let arr: &Array = v.unchecked_ref();
        let mut items = Vec::with_capacity(arr.length() as usize);
        for item in arr.iter() {
            items.push(to_opt_at(&item, depth + 1)?);
        }
        OptValue::Array(items)
    } else if is_plain_object(v) {
        let mut fields = Vec::new();
        for pair in Object::entries(v.unchecked_ref()).iter() {
            let pair: Array = pair.unchecked_into();
            let key = pair.get(0).as_string().unwrap_or_default();
            fields.push((key, to_opt_at(&pair.get(1), depth + 1)?));
        }
        OptValue::Object(fields)
    } else {
        OptValue::Other(type_name(v))
    })
}

/// An object literal, `Object.create(null)`, or a class instance that is not a built-in we know.
fn is_plain_object(v: &JsValue) -> bool {
    if !v.is_object() {
        return false;
    }
    let proto = Object::get_prototype_of(v);
    let proto: &JsValue = proto.as_ref();
    proto.is_null()
        || Reflect::get(proto, &"constructor".into()).is_ok_and(|c| {
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
        format!("{s:?}")
    } else if v.is_function() {
        "a function".into()
    } else if Array::is_array(v) {
        "an array".into()
    } else {
        let name = type_name(v);
        let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) {
            "an"
        } else {
            "a"
        };
        if name == "Object" || name == "value" {
            "an object".into()
        } else {
            format!("{article} {name}")
        }
    }
}

/// A number the way JavaScript prints it (`1.5`, `-0` prints as `0`).
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n == n.trunc() && n.abs() < 9.2e18 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

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
        .unwrap_or_else(|| "value".into())
}

/// Encodes a value given to `put`: a `Uint8Array` is stored as bytes, anything
/// else as MessagePack.
pub fn to_stored(v: &JsValue) -> Result<StoredValue, String> {
    if v.is_undefined() {
        return Err("value is undefined; store null to record an empty value".into());
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(StoredValue::Bytes(bytes.to_vec()));
    }
    let value = to_msgpack(v, 0, "value")?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value)
        .map_err(|e| format!("value could not be encoded: {e}"))?;
    Ok(StoredValue::MsgPack(out))
}

fn to_msgpack(v: &JsValue, depth: usize, path: &str) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{path} nests deeper than {MAX_DEPTH} levels (is it cyclic?)"
        ));
    }
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Nil);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Boolean(b));
    }
    if let Some(n) = v.as_f64() {
        let safe = n.fract() == 0.0 && n.abs() <= super::options::MAX_SAFE_INTEGER;
        return Ok(if safe {
            Value::from(n as i64)
        } else {
            Value::F64(n)
        });
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::from(s));
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Binary(bytes.to_vec()));
    }
    if let Some(buf) = v.dyn_ref::<ArrayBuffer>() {
        return Ok(Value::Binary(Uint8Array::new(buf).to_vec()));
    }
    if let Some(d) = v.dyn_ref::<Date>() {
        let ms = d.get_time();
        if !ms.is_finite() {
            return Err(format!("{path} is an invalid Date"));
        }
        return Ok(Value::Ext(EXT_TIMESTAMP, timestamp96(ms)));
    }
    if Array::is_array(v) {
        let arr: &Array = v.unchecked_ref();
        let mut items = Vec::with_capacity(arr.length() as usize);
        for (i, item) in arr.iter().enumerate() {
            items.push(to_msgpack(&item, depth + 1, &format!("{path}[{i}]"))?);
        }
        return Ok(Value::Array(items));
    }
    if is_plain_object(v) {
        let mut fields = Vec::new();
        for pair in Object::entries(v.unchecked_ref()).iter() {
            let pair: Array = pair.unchecked_into();
            let item = pair.get(1);
            if item.is_undefined() || item.is_function() {
                continue; // as JSON.stringify does
            }
            let key = pair.get(0).as_string().unwrap_or_default();
            let encoded = to_msgpack(&item, depth + 1, &format!("{path}.{key}"))?;
            fields.push((Value::from(key), encoded));
        }
        return Ok(Value::Map(fields));
    }
    Err(format!(
        "{path} is a {}, which kvsweep cannot store; use plain objects, arrays, strings, numbers, booleans, null, Date or Uint8Array",
        type_name(v)
    ))
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
        StoredValue::MsgPack(b) => {
            let mut rd = &b[..];
            let value = rmpv::decode::read_value_with_max_depth(&mut rd, 1024)
                .map_err(|e| format!("stored value could not be decoded: {e}"))?;
            from_msgpack(&value)
        }
    }
}

fn from_msgpack(v: &Value) -> Result<JsValue, String> {
    Ok(match v {
        Value::Nil => JsValue::NULL,
        Value::Boolean(b) => JsValue::from_bool(*b),
        Value::Integer(i) => JsValue::from_f64(i.as_f64().unwrap_or(f64::NAN)),
        Value::F32(f) => JsValue::from_f64(*f as f64),
        Value::F64(f) => JsValue::from_f64(*f),
        Value::String(s) => match s.as_str() {
            Some(s) => JsValue::from_str(s),
            None => return Err("stored value holds a string that is not UTF-8".into()),
        },
        Value::Binary(b) => Uint8Array::from(&b[..]).into(),
        Value::Array(items) => {
            let arr = Array::new_with_length(items.len() as u32);
            for (i, item) in items.iter().enumerate() {
                arr.set(i as u32, from_msgpack(item)?);
            }
            arr.into()
        }
        Value::Map(fields) => {
            let obj = Object::new();
            for (k, item) in fields {
                let key = match k {
                    Value::String(s) => JsValue::from_str(s.as_str().unwrap_or_default()),
                    other => JsValue::from_str(&other.to_string()),
                };
                Reflect::set(&obj, &key, &from_msgpack(item)?)
                    .map_err(|_| "could not build the stored object")?;
            }
            obj.into()
        }
        Value::Ext(EXT_TIMESTAMP, data) => match timestamp_ms(data) {
            Some(ms) => Date::new(&JsValue::from_f64(ms)).into(),
            None => return Err("stored value holds a malformed timestamp".into()),
        },
        Value::Ext(tag, data) => {
            let obj = Object::new();
            let _ = Reflect::set(&obj, &"type".into(), &JsValue::from(*tag));
            let _ = Reflect::set(&obj, &"data".into(), &Uint8Array::from(&data[..]));
            obj.into()
        }
    })
}
