//! Reports as JavaScript values: a serde serializer that builds plain
//! objects, arrays, strings and numbers, the JSON-compatible shapes
//! serde-wasm-bindgen's `json_compatible()` gave (`None` is `null`, maps are
//! objects), in a third of its code. Whole numbers beyond 2^53 come out as
//! the nearest Number (see `serialize_u64`).

use core::fmt;

use js_sys::{Array, Object, Reflect};
use serde::ser::{self, Serialize};
use wasm_bindgen::JsValue;

/// Why a report could not be converted.
#[derive(Debug)]
pub struct ToJsError(String);

impl fmt::Display for ToJsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToJsError {}

impl ser::Error for ToJsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ToJsError(msg.to_string())
    }
}

type Result<T = JsValue> = core::result::Result<T, ToJsError>;

/// `v` as a JavaScript value.
pub fn to_js<T: Serialize + ?Sized>(v: &T) -> Result {
    v.serialize(ToJs)
}

/// The serializer: stateless, each value converted on its own.
#[derive(Clone, Copy)]
pub struct ToJs;

fn set(target: &Object, key: &JsValue, value: &JsValue) {
    // Setting a property of a plain object cannot fail.
    let _ = Reflect::set(target, key, value);
}

// The generic methods below only convert the value; what follows is
// compiled once, not into every report type's serializer.

#[inline(never)]
fn field(target: &Object, key: &'static str, value: Result) -> Result<()> {
    set(target, &name(key), &value?);
    Ok(())
}

std::thread_local! {
    /// The JS strings of field and variant names, by the address and length
    /// of their text, sorted: made once, not once per object (each entry
    /// action of a plan needed seven).
    static NAMES: core::cell::RefCell<Vec<((usize, usize), JsValue)>> =
        const { core::cell::RefCell::new(Vec::new()) };
}

/// A field or variant name as a JS string.
#[inline(never)]
fn name(text: &'static str) -> JsValue {
    // Text of another length at the same address is another string.
    let at = (text.as_ptr() as usize, text.len());
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        match names.binary_search_by_key(&at, |(a, _)| *a) {
            Ok(i) => names[i].1.clone(),
            Err(i) => {
                let js = JsValue::from_str(text);
                names.insert(i, (at, js.clone()));
                js
            }
        }
    })
}

#[inline(never)]
fn push(items: &Array, value: Result) -> Result<()> {
    items.push(&value?);
    Ok(())
}

/// An array or tuple being built; a tuple variant's name, to wrap it in.
pub struct Items(Array, Option<&'static str>);

impl Items {
    fn done(self) -> JsValue {
        match self.1 {
            None => self.0.into(),
            Some(name) => tagged(name, &self.0.into()),
        }
    }
}

/// An object being built; for a map, the key waiting for its value.
pub struct Fields {
    target: Object,
    key: Option<JsValue>,
    /// A struct variant's name: the object ends up as `{ [variant]: fields }`.
    variant: Option<&'static str>,
}

impl Fields {
    fn new(variant: Option<&'static str>) -> Fields {
        Fields {
            target: Object::new(),
            key: None,
            variant,
        }
    }

    fn done(self) -> JsValue {
        match self.variant {
            None => self.target.into(),
            Some(name) => tagged(name, &self.target.into()),
        }
    }
}

/// `{ [name]: value }`, serde's external tagging of an enum variant.
fn tagged(variant: &'static str, value: &JsValue) -> JsValue {
    let out = Object::new();
    set(&out, &name(variant), value);
    out.into()
}

impl ser::Serializer for ToJs {
    type Ok = JsValue;
    type Error = ToJsError;
    type SerializeSeq = Items;
    type SerializeTuple = Items;
    type SerializeTupleStruct = Items;
    type SerializeTupleVariant = Items;
    type SerializeMap = Fields;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Fields;

    fn serialize_bool(self, v: bool) -> Result {
        Ok(JsValue::from_bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    // Beyond 2^53 (byte totals past 8 PiB) the nearest Number: a report
    // whose count cannot be exact still reaches its caller, who is told of
    // a run's deletions rather than an error after them.
    fn serialize_i64(self, v: i64) -> Result {
        Ok(JsValue::from_f64(v as f64))
    }
    fn serialize_u8(self, v: u8) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result {
        Ok(JsValue::from_f64(v as f64))
    }
    fn serialize_f32(self, v: f32) -> Result {
        Ok(JsValue::from_f64(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result {
        Ok(JsValue::from_f64(v))
    }
    fn serialize_char(self, v: char) -> Result {
        Ok(JsValue::from_str(v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> Result {
        Ok(JsValue::from_str(v))
    }
    /// Bytes as an array of numbers, as JSON would hold them.
    fn serialize_bytes(self, v: &[u8]) -> Result {
        Ok(v.iter()
            .map(|b| JsValue::from_f64((*b).into()))
            .collect::<Array>()
            .into())
    }
    fn serialize_none(self) -> Result {
        Ok(JsValue::NULL)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        Ok(JsValue::NULL)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Ok(JsValue::NULL)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        Ok(name(variant))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        Ok(tagged(variant, &value.serialize(self)?))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Items> {
        Ok(Items(Array::new(), None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Items> {
        Ok(Items(Array::new(), None))
    }
    fn serialize_tuple_struct(self, _: &'static str, _len: usize) -> Result<Items> {
        Ok(Items(Array::new(), None))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Items> {
        Ok(Items(Array::new(), Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Fields> {
        Ok(Fields::new(None))
    }
    fn serialize_struct(self, _: &'static str, _len: usize) -> Result<Fields> {
        Ok(Fields::new(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Fields> {
        Ok(Fields::new(Some(variant)))
    }
}

impl ser::SerializeSeq for Items {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        push(&self.0, value.serialize(ToJs))
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeTuple for Items {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeTupleStruct for Items {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeTupleVariant for Items {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeMap for Fields {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        let key = key.serialize(ToJs)?;
        if !key.is_string() {
            return Err(ToJsError(
                "Map key is not a string and cannot be an object key".into(),
            ));
        }
        self.key = Some(key);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        let key = self.key.take().unwrap_or(JsValue::UNDEFINED);
        set(&self.target, &key, &value.serialize(ToJs)?);
        Ok(())
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        field(&self.target, key, value.serialize(ToJs))
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}

impl ser::SerializeStructVariant for Fields {
    type Ok = JsValue;
    type Error = ToJsError;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result {
        Ok(self.done())
    }
}
