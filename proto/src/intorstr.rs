//! `IntOrString` appears in manifests as a bare integer or a string ("25%", "http").

use crate::v1::{int_or_string::Value, IntOrString};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

impl IntOrString {
    /// An integer value.
    pub fn int(v: i32) -> Self {
        IntOrString {
            value: Some(Value::IntVal(v)),
        }
    }

    /// A string value.
    pub fn string(v: impl Into<String>) -> Self {
        IntOrString {
            value: Some(Value::StrVal(v.into())),
        }
    }

    /// Resolves the value against `total` as Kubernetes does for maxUnavailable/maxSurge:
    /// a percentage is scaled, rounding up or down as asked.
    pub fn scaled(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match &self.value {
            None => Ok(0),
            Some(Value::IntVal(v)) => Ok(*v),
            Some(Value::StrVal(s)) => {
                let pct = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse::<i64>().ok())
                    .ok_or_else(|| {
                        format!("invalid value {s:?}: must be an integer or a percentage")
                    })?;
                let product = pct * i64::from(total);
                let v = if round_up {
                    (product + 99) / 100
                } else {
                    product / 100
                };
                Ok(v as i32)
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            None => Ok(()),
            Some(Value::IntVal(v)) => write!(f, "{v}"),
            Some(Value::StrVal(s)) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            None => s.serialize_none(),
            Some(Value::IntVal(v)) => s.serialize_i32(*v),
            Some(Value::StrVal(v)) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::int)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i32::try_from(v)
                    .map(IntOrString::int)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::string(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_as_asked() {
        let p = IntOrString::string("25%");
        assert_eq!(p.scaled(10, true), Ok(3));
        assert_eq!(p.scaled(10, false), Ok(2));
        assert_eq!(IntOrString::int(4).scaled(10, true), Ok(4));
        assert!(IntOrString::string("x").scaled(10, true).is_err());
    }

    #[test]
    fn json_round_trip() {
        let v: IntOrString = serde_json::from_str("3").unwrap();
        assert_eq!(v, IntOrString::int(3));
        let v: IntOrString = serde_json::from_str("\"10%\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"10%\"");
    }
}
