//! A strict reader of one flat JSON object, for the input contract (`docs/input.md`): the
//! payload must be UTF-8 JSON whose top level is an object; a key may appear once; each field
//! is kept as its raw JSON text, so numbers are read exactly from what was written (never
//! through f64).

use crate::Error;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A field's raw value.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Null,
    /// The decoded string (escapes resolved).
    Str(&'a str),
    /// The number exactly as written.
    Number(&'a str),
    /// true/false, an array or an object.
    Other(&'a str),
}

/// The fields of one object, in order.
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Strings that had escapes, decoded once.
    decoded: Vec<Option<String>>,
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE}{}",
                    crate::quote(&key)
                )));
            }
            if fields.len() >= MAX_FIELDS {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            let value: &'de RawValue = map.next_value()?;
            fields.push((key, value));
        }
        Ok(fields)
    }
}

const DUPLICATE: &str = "duplicate key ";
const TOO_MANY: &str = "too many keys";
/// An input object has a handful of fields; more is not a tick or a holding.
const MAX_FIELDS: usize = 32;

impl<'a> Object<'a> {
    /// Parses `payload` as one JSON object.
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(payload).map_err(|e| Error::NotUtf8(e.valid_up_to()))?;
        let first = text.trim_start().as_bytes().first().copied();
        if first.is_some() && first != Some(b'{') {
            // Valid JSON or not, it is not an object.
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
                return Err(Error::NotAnObject);
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = match de.deserialize_map(ObjectVisitor) {
            Ok(f) => f,
            Err(e) => {
                let msg = e.to_string();
                if let Some(rest) = msg.strip_prefix(DUPLICATE) {
                    let key = rest.split(" at line").next().unwrap_or(rest);
                    return Err(Error::DuplicateField(key.to_string()));
                }
                if e.is_data() && msg.starts_with("invalid type") {
                    return Err(Error::NotAnObject);
                }
                return Err(Error::MalformedJson(msg));
            }
        };
        de.end().map_err(|e| Error::MalformedJson(e.to_string()))?;
        let decoded = fields
            .iter()
            .map(|(_, raw)| {
                let t = raw.get();
                (t.starts_with('"') && t.contains('\\'))
                    .then(|| serde_json::from_str::<String>(t).ok())
                    .flatten()
            })
            .collect();
        Ok(Object { fields, decoded })
    }

    /// A field by exact (case-sensitive) name; absent and null are both `Null`.
    pub fn get(&self, name: &str) -> Field<'_> {
        let Some(i) = self.fields.iter().position(|(k, _)| k == name) else {
            return Field::Null;
        };
        let raw = self.fields[i].1.get();
        match raw.as_bytes().first() {
            Some(b'n') => Field::Null,
            Some(b'"') => match &self.decoded[i] {
                Some(s) => Field::Str(s),
                // No escapes: the text between the quotes is the string.
                None => Field::Str(&raw[1..raw.len().saturating_sub(1)]),
            },
            Some(b'-' | b'0'..=b'9') => Field::Number(raw),
            _ => Field::Other(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_as_written() -> Result<(), Error> {
        let o = Object::parse(br#"{"A":"x\ny","B":256.900000000000000001,"C":null,"D":[1]}"#)?;
        assert!(matches!(o.get("A"), Field::Str("x\ny")));
        assert!(matches!(
            o.get("B"),
            Field::Number("256.900000000000000001")
        ));
        assert!(matches!(o.get("C"), Field::Null));
        assert!(matches!(o.get("Z"), Field::Null));
        assert!(matches!(o.get("D"), Field::Other("[1]")));
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_one_clean_object() {
        let err = |p: &[u8]| Object::parse(p).err().map(|e| e.code());
        assert_eq!(err(br#"{"A":1,"A":2}"#), Some("duplicate_field"));
        assert_eq!(err(br#"[1,2]"#), Some("not_an_object"));
        assert_eq!(err(br#""text""#), Some("not_an_object"));
        assert_eq!(err(br#"{"A":1"#), Some("malformed_json"));
        assert_eq!(err(br#"{"A":1} {"B":2}"#), Some("malformed_json"));
        assert_eq!(err(b"{\"A\":\"\xff\"}"), Some("not_utf8"));
        assert_eq!(err(b""), Some("malformed_json"));
    }
}
