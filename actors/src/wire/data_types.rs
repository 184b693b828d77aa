//! Data types of `[D]` entries (PROTOCOL 2.4): raw bytes <-> JSON values.
//!
//! A data type is 3 printable ASCII characters naming a fixed-length record
//! of big-endian integers, each with a scale (`value = raw * scale`). The
//! built-ins are `GPS`, `TMP`, `HUM` and `BAT`; a data-type file (TOML
//! `[[type]]` tables or JSON) declares more, and may override a built-in.
//!
//! Decoding never fails the frame: an entry of an unknown type is
//! [`Decoded::Unknown`] (the caller keeps and shows its raw bytes as hex;
//! edge and client programs may agree on types the switch does not know),
//! and an entry whose length disagrees with its type is
//! [`Decoded::LengthMismatch`], which the caller counts and drops while
//! keeping the frame's other entries.
//!
//! Values: a field with scale 1 decodes to a JSON integer; any other scale
//! to a JSON float rounded to the decimals the scale implies (0.01 -> 2,
//! 1e-4 -> 4, 0.5 -> 1), so `-12.34` comes out as `-12.34`, not
//! `-12.340000000000002`. [`DataTypes::encode`] is the inverse (rounding
//! to the nearest raw integer) and is used by the simulated mesh.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::mesh::is_valid_data_type;

/// A big-endian integer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntKind {
    U8,
    I8,
    U16,
    I16,
    U24,
    I24,
    U32,
    I32,
}

impl IntKind {
    /// Size on the wire in bytes.
    pub fn size(self) -> usize {
        match self {
            IntKind::U8 | IntKind::I8 => 1,
            IntKind::U16 | IntKind::I16 => 2,
            IntKind::U24 | IntKind::I24 => 3,
            IntKind::U32 | IntKind::I32 => 4,
        }
    }

    pub fn is_signed(self) -> bool {
        matches!(
            self,
            IntKind::I8 | IntKind::I16 | IntKind::I24 | IntKind::I32
        )
    }

    /// Smallest and largest raw value.
    pub fn range(self) -> (i64, i64) {
        let bits = 8 * self.size() as u32;
        if self.is_signed() {
            (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
        } else {
            (0, (1i64 << bits) - 1)
        }
    }

    /// Read `bytes` (exactly `size()` of them), sign-extending signed kinds.
    pub fn read(self, bytes: &[u8]) -> i64 {
        let mut v: u64 = 0;
        for &b in bytes {
            v = (v << 8) | b as u64;
        }
        if self.is_signed() {
            let shift = 64 - 8 * bytes.len() as u32;
            ((v << shift) as i64) >> shift
        } else {
            v as i64
        }
    }

    /// Write `v` big-endian; `None` if it is out of range for the kind.
    pub fn write(self, v: i64, out: &mut Vec<u8>) -> Option<()> {
        let (lo, hi) = self.range();
        if v < lo || v > hi {
            return None;
        }
        let bytes = v.to_be_bytes();
        out.extend_from_slice(&bytes[8 - self.size()..]);
        Some(())
    }
}

fn one() -> f64 {
    1.0
}

/// One field of a data type: a name in the decoded JSON object, an integer
/// kind on the wire, and a scale (`value = raw * scale`, default 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub kind: IntKind,
    #[serde(default = "one")]
    pub scale: f64,
}

impl FieldSpec {
    pub fn new(name: impl Into<String>, kind: IntKind, scale: f64) -> Self {
        FieldSpec {
            name: name.into(),
            kind,
            scale,
        }
    }
}

/// A data type: 3-character name, total length in bytes, and its fields in
/// wire order (their sizes add up to `len`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataTypeSpec {
    pub name: String,
    pub len: usize,
    pub fields: Vec<FieldSpec>,
}

impl DataTypeSpec {
    /// Check the rules of a data type: name of 3 printable ASCII characters,
    /// 1..=255 bytes, at least one field, unique non-empty field names,
    /// finite non-zero scales, field sizes adding up to `len`.
    pub fn validate(&self) -> Result<(), DataTypeError> {
        if !is_valid_data_type(&self.name) {
            return Err(DataTypeError::BadName(self.name.clone()));
        }
        if self.fields.is_empty() {
            return Err(DataTypeError::NoFields(self.name.clone()));
        }
        if self.len == 0 || self.len > 255 {
            return Err(DataTypeError::BadLen {
                name: self.name.clone(),
                len: self.len,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            if f.name.is_empty() || !seen.insert(f.name.as_str()) {
                return Err(DataTypeError::BadField {
                    name: self.name.clone(),
                    field: f.name.clone(),
                    why: if f.name.is_empty() {
                        "empty name"
                    } else {
                        "duplicate name"
                    },
                });
            }
            if !f.scale.is_finite() || f.scale == 0.0 {
                return Err(DataTypeError::BadField {
                    name: self.name.clone(),
                    field: f.name.clone(),
                    why: "scale must be a finite non-zero number",
                });
            }
        }
        let total: usize = self.fields.iter().map(|f| f.kind.size()).sum();
        if total != self.len {
            return Err(DataTypeError::SizeMismatch {
                name: self.name.clone(),
                len: self.len,
                fields: total,
            });
        }
        Ok(())
    }
}

/// The result of decoding one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A JSON object with one member per field, in declaration order.
    Value(Value),
    /// No such data type: keep the raw bytes.
    Unknown,
    /// Known type, wrong length: the entry is rejected and counted.
    LengthMismatch { expected: usize, got: usize },
}

/// A data-type file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataTypeError {
    #[error("data-type file is not valid TOML: {0}")]
    Toml(String),
    #[error("data-type file is not valid JSON: {0}")]
    Json(String),
    #[error("data type name {0:?} is not 3 printable ASCII characters")]
    BadName(String),
    #[error("data type {name}: length {len} is not 1..=255")]
    BadLen { name: String, len: usize },
    #[error("data type {0} has no fields")]
    NoFields(String),
    #[error("data type {name}: field {field:?}: {why}")]
    BadField {
        name: String,
        field: String,
        why: &'static str,
    },
    #[error("data type {name}: length {len} but the fields add up to {fields} bytes")]
    SizeMismatch {
        name: String,
        len: usize,
        fields: usize,
    },
    #[error("data type {0} is declared twice")]
    Duplicate(String),
}

/// TOML form: `[[type]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(rename = "type", default)]
    types: Vec<DataTypeSpec>,
}

/// JSON form: `{"types": [...]}` or a bare list.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFile {
    Wrapped { types: Vec<DataTypeSpec> },
    Bare(Vec<DataTypeSpec>),
}

/// Validate each spec and refuse a name declared twice in one list.
fn check_list(specs: &[DataTypeSpec]) -> Result<(), DataTypeError> {
    let mut seen = std::collections::HashSet::new();
    for s in specs {
        s.validate()?;
        if !seen.insert(s.name.as_str()) {
            return Err(DataTypeError::Duplicate(s.name.clone()));
        }
    }
    Ok(())
}

/// The known data types, by name.
#[derive(Debug, Clone)]
pub struct DataTypes {
    types: BTreeMap<String, DataTypeSpec>,
}

impl DataTypes {
    /// The built-in types of PROTOCOL 2.4: GPS, TMP, HUM, BAT.
    pub fn builtin() -> Self {
        let specs = [
            DataTypeSpec {
                name: "GPS".into(),
                len: 6,
                fields: vec![
                    FieldSpec::new("lon", IntKind::I24, 1e-4),
                    FieldSpec::new("lat", IntKind::I24, 1e-4),
                ],
            },
            DataTypeSpec {
                name: "TMP".into(),
                len: 2,
                fields: vec![FieldSpec::new("celsius", IntKind::I16, 0.01)],
            },
            DataTypeSpec {
                name: "HUM".into(),
                len: 1,
                fields: vec![FieldSpec::new("percent", IntKind::U8, 1.0)],
            },
            DataTypeSpec {
                name: "BAT".into(),
                len: 2,
                fields: vec![FieldSpec::new("millivolts", IntKind::U16, 1.0)],
            },
        ];
        DataTypes {
            types: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    /// No types at all (every entry decodes as `Unknown`).
    pub fn empty() -> Self {
        DataTypes {
            types: BTreeMap::new(),
        }
    }

    /// Parse and validate a TOML data-type file:
    ///
    /// ```toml
    /// [[type]]
    /// name = "PRS"
    /// len = 4
    /// fields = [{ name = "hpa", kind = "u32", scale = 0.01 }]
    /// ```
    pub fn from_toml_str(s: &str) -> Result<Vec<DataTypeSpec>, DataTypeError> {
        let file: TomlFile = toml::from_str(s).map_err(|e| DataTypeError::Toml(e.to_string()))?;
        check_list(&file.types)?;
        Ok(file.types)
    }

    /// Parse and validate a JSON data-type file: `{"types": [...]}` or a
    /// bare list of `{"name", "len", "fields": [{"name", "kind", "scale"}]}`.
    pub fn from_json_str(s: &str) -> Result<Vec<DataTypeSpec>, DataTypeError> {
        let file: JsonFile = serde_json::from_str(s).map_err(|e| {
            // Untagged enums hide the real error; say which forms are accepted
            // and, when the text is not JSON at all, why.
            match serde_json::from_str::<Value>(s) {
                Err(syntax) => DataTypeError::Json(syntax.to_string()),
                Ok(_) => DataTypeError::Json(format!(
                    "expected {{\"types\": [...]}} or a list of data types \
                     ({{name, len, fields: [{{name, kind, scale}}]}}): {e}"
                )),
            }
        })?;
        let types = match file {
            JsonFile::Wrapped { types } | JsonFile::Bare(types) => types,
        };
        check_list(&types)?;
        Ok(types)
    }

    /// Add user types (validated); a user type with a built-in's name
    /// replaces it.
    pub fn with(mut self, specs: Vec<DataTypeSpec>) -> Result<Self, DataTypeError> {
        check_list(&specs)?;
        for s in specs {
            self.types.insert(s.name.clone(), s);
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&DataTypeSpec> {
        self.types.get(name)
    }

    /// Every known type name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    /// Every known type, sorted by name.
    pub fn specs(&self) -> impl Iterator<Item = &DataTypeSpec> {
        self.types.values()
    }

    /// Decode one entry's raw bytes.
    pub fn decode(&self, data_type: &str, raw: &[u8]) -> Decoded {
        let Some(spec) = self.types.get(data_type) else {
            return Decoded::Unknown;
        };
        if raw.len() != spec.len {
            return Decoded::LengthMismatch {
                expected: spec.len,
                got: raw.len(),
            };
        }
        let mut obj = Map::with_capacity(spec.fields.len());
        let mut pos = 0;
        for f in &spec.fields {
            let n = f.kind.size();
            let v = f.kind.read(&raw[pos..pos + n]);
            pos += n;
            obj.insert(f.name.clone(), scaled(v, f.scale));
        }
        Decoded::Value(Value::Object(obj))
    }

    /// The inverse of [`DataTypes::decode`]: the raw bytes for a JSON object
    /// with one number per field (scaled values rounded to the nearest raw
    /// integer). `None` for an unknown type, a missing or non-numeric field,
    /// or a value out of range for its field.
    pub fn encode(&self, data_type: &str, value: &Value) -> Option<Vec<u8>> {
        let spec = self.types.get(data_type)?;
        let obj = value.as_object()?;
        let mut out = Vec::with_capacity(spec.len);
        for f in &spec.fields {
            let n = obj.get(&f.name)?;
            let raw = if let (Some(i), true) = (n.as_i64(), f.scale == 1.0) {
                i
            } else {
                let x = n.as_f64()? / f.scale;
                let r = x.round();
                // A value past i64 saturates in the cast, and every field's
                // range is far inside i64, so the field refuses it below;
                // only what is not a number at all is refused here.
                if !r.is_finite() {
                    return None;
                }
                r as i64
            };
            f.kind.write(raw, &mut out)?;
        }
        Some(out)
    }
}

impl Default for DataTypes {
    fn default() -> Self {
        DataTypes::builtin()
    }
}

/// The number of decimals a scale implies: the fewest `d` (up to 12) with
/// `scale * 10^d` an integer, or `None` if there is none (e.g. 1/3).
fn decimals(scale: f64) -> Option<(u32, i64)> {
    for d in 0..=12u32 {
        let m = scale * 10f64.powi(d as i32);
        let r = m.round();
        if (m - r).abs() < 1e-6 && r.abs() < (1i64 << 52) as f64 {
            return Some((d, r as i64));
        }
    }
    None
}

/// `raw * scale` as JSON: an integer for scale 1, else a float rounded to
/// the scale's decimals.
fn scaled(raw: i64, scale: f64) -> Value {
    if scale == 1.0 {
        return Value::Number(raw.into());
    }
    let x = match decimals(scale) {
        // raw * k and 10^d are exact in f64, so the division gives the
        // double nearest the decimal value (which prints as that decimal).
        Some((d, k)) => match raw.checked_mul(k) {
            Some(n) if n.unsigned_abs() < (1u64 << 53) => n as f64 / 10f64.powi(d as i32),
            _ => raw as f64 * scale,
        },
        None => raw as f64 * scale,
    };
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn dec(t: &str, raw: &[u8]) -> Decoded {
        DataTypes::builtin().decode(t, raw)
    }

    fn val(v: Value) -> Decoded {
        Decoded::Value(v)
    }

    #[test]
    fn int_kinds() {
        assert_eq!(IntKind::I24.size(), 3);
        assert_eq!(IntKind::U32.size(), 4);
        assert_eq!(IntKind::I24.read(&[0xFF, 0xFF, 0xFF]), -1);
        assert_eq!(IntKind::I24.read(&[0x80, 0x00, 0x00]), -8_388_608);
        assert_eq!(IntKind::I24.read(&[0x7F, 0xFF, 0xFF]), 8_388_607);
        assert_eq!(IntKind::U24.read(&[0xFF, 0xFF, 0xFF]), 16_777_215);
        assert_eq!(IntKind::I8.read(&[0x80]), -128);
        assert_eq!(IntKind::U8.read(&[0x80]), 128);
        assert_eq!(IntKind::I32.read(&[0xFF, 0xFF, 0xFF, 0xFE]), -2);
        assert_eq!(IntKind::U32.read(&[0xFF, 0xFF, 0xFF, 0xFE]), 4_294_967_294);
        assert_eq!(IntKind::I16.range(), (-32768, 32767));
        assert_eq!(IntKind::U24.range(), (0, 16_777_215));
        let mut out = vec![];
        assert_eq!(IntKind::I24.write(-2, &mut out), Some(()));
        assert_eq!(out, [0xFF, 0xFF, 0xFE]);
        assert_eq!(IntKind::I24.write(8_388_608, &mut out), None);
        // The range's ends are in it: the largest and smallest values fit.
        out.clear();
        assert_eq!(IntKind::I24.write(8_388_607, &mut out), Some(()));
        assert_eq!(IntKind::I24.write(-8_388_608, &mut out), Some(()));
        assert_eq!(out, [0x7F, 0xFF, 0xFF, 0x80, 0x00, 0x00]);
        assert_eq!(IntKind::I24.write(-8_388_609, &mut out), None);
        assert_eq!(IntKind::U8.write(-1, &mut out), None);
        assert_eq!(serde_json::to_string(&IntKind::I24).unwrap(), "\"i24\"");
    }

    #[test]
    fn gps() {
        // lon = 0x01E240 = 123456 -> 12.3456; lat = 0xFE1DC0 = -123456 -> -12.3456
        assert_eq!(
            dec("GPS", &[0x01, 0xE2, 0x40, 0xFE, 0x1D, 0xC0]),
            val(json!({"lon": 12.3456, "lat": -12.3456}))
        );
        // Sign extension of i24: 0xFFFFFF is -1, 0x800000 the minimum.
        assert_eq!(
            dec("GPS", &[0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00]),
            val(json!({"lon": -0.0001, "lat": -838.8608}))
        );
        // Realistic: Helsinki, 24.9384 E 60.1699 N.
        assert_eq!(
            dec("GPS", &[0x03, 0xCE, 0x28, 0x09, 0x2E, 0x63]),
            val(json!({"lon": 24.9384, "lat": 60.1699}))
        );
        // Longitude first in the object, as on the wire.
        let Decoded::Value(Value::Object(o)) = dec("GPS", &[0; 6]) else {
            panic!()
        };
        assert_eq!(o.keys().collect::<Vec<_>>(), ["lon", "lat"]);
        assert_eq!(o["lon"], json!(0.0));
    }

    #[test]
    fn tmp() {
        assert_eq!(dec("TMP", &[0x09, 0xC4]), val(json!({"celsius": 25.0})));
        assert_eq!(dec("TMP", &[0x09, 0xCE]), val(json!({"celsius": 25.1})));
        assert_eq!(dec("TMP", &[0xFB, 0x2E]), val(json!({"celsius": -12.34})));
        assert_eq!(dec("TMP", &[0xFF, 0xFF]), val(json!({"celsius": -0.01})));
        assert_eq!(dec("TMP", &[0x80, 0x00]), val(json!({"celsius": -327.68})));
        // Printed as the short decimal, not 0.1 * 3 noise.
        let Decoded::Value(v) = dec("TMP", &[0x00, 0x1D]) else {
            panic!()
        };
        assert_eq!(v.to_string(), r#"{"celsius":0.29}"#);
    }

    #[test]
    fn hum_and_bat_are_integers() {
        assert_eq!(dec("HUM", &[0x37]), val(json!({"percent": 55})));
        assert_eq!(dec("HUM", &[0xFF]), val(json!({"percent": 255})));
        assert_eq!(dec("BAT", &[0x0E, 0x74]), val(json!({"millivolts": 3700})));
        assert_eq!(dec("BAT", &[0xFF, 0xFE]), val(json!({"millivolts": 65534})));
        let Decoded::Value(v) = dec("BAT", &[0x0E, 0x74]) else {
            panic!()
        };
        assert!(v["millivolts"].is_u64());
    }

    #[test]
    fn unknown_and_length_mismatch() {
        assert_eq!(dec("XYZ", &[1, 2]), Decoded::Unknown);
        assert_eq!(dec("gps", &[0; 6]), Decoded::Unknown);
        assert_eq!(
            dec("GPS", &[0; 5]),
            Decoded::LengthMismatch {
                expected: 6,
                got: 5
            }
        );
        assert_eq!(
            dec("HUM", &[]),
            Decoded::LengthMismatch {
                expected: 1,
                got: 0
            }
        );
        assert_eq!(
            dec("TMP", &[0; 3]),
            Decoded::LengthMismatch {
                expected: 2,
                got: 3
            }
        );
        assert!(DataTypes::empty().names().is_empty());
    }

    #[test]
    fn builtin_names() {
        let t = DataTypes::default();
        assert_eq!(t.names(), ["BAT", "GPS", "HUM", "TMP"]);
        assert_eq!(t.get("GPS").unwrap().len, 6);
        let specs: Vec<&DataTypeSpec> = t.specs().collect();
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            t.names()
        );
        for s in specs {
            s.validate().unwrap();
        }
    }

    const TOML: &str = r#"
        # pressure and wind
        [[type]]
        name = "PRS"
        len = 4
        fields = [{ name = "hpa", kind = "u32", scale = 0.01 }]

        [[type]]
        name = "WND"
        len = 3
        fields = [
            { name = "speed", kind = "u16", scale = 0.1 },
            { name = "dir", kind = "u8" },
        ]
    "#;

    #[test]
    fn user_types_from_toml() {
        let specs = DataTypes::from_toml_str(TOML).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].fields[1].scale, 1.0);
        let t = DataTypes::builtin().with(specs).unwrap();
        assert_eq!(t.names(), ["BAT", "GPS", "HUM", "PRS", "TMP", "WND"]);
        assert_eq!(
            t.decode("PRS", &[0x00, 0x01, 0x8B, 0xCD]),
            val(json!({"hpa": 1013.25}))
        );
        assert_eq!(
            t.decode("WND", &[0x00, 0x7B, 0xB4]),
            val(json!({"speed": 12.3, "dir": 180}))
        );
        assert_eq!(
            t.encode("WND", &json!({"speed": 12.3, "dir": 180})),
            Some(vec![0x00, 0x7B, 0xB4])
        );
        // Built-ins still there.
        assert_eq!(t.decode("HUM", &[1]), val(json!({"percent": 1})));
        // An empty file is no types.
        assert!(DataTypes::from_toml_str("").unwrap().is_empty());
    }

    #[test]
    fn user_types_from_json() {
        let wrapped = r#"{"types": [{"name": "ACC", "len": 6, "fields": [
            {"name": "x", "kind": "i16", "scale": 0.001},
            {"name": "y", "kind": "i16", "scale": 0.001},
            {"name": "z", "kind": "i16", "scale": 0.001}]}]}"#;
        let bare = r#"[{"name": "ACC", "len": 6, "fields": [
            {"name": "x", "kind": "i16", "scale": 0.001},
            {"name": "y", "kind": "i16", "scale": 0.001},
            {"name": "z", "kind": "i16", "scale": 0.001}]}]"#;
        let a = DataTypes::from_json_str(wrapped).unwrap();
        let b = DataTypes::from_json_str(bare).unwrap();
        assert_eq!(a, b);
        let t = DataTypes::builtin().with(a).unwrap();
        assert_eq!(
            t.decode("ACC", &[0x03, 0xE8, 0xFC, 0x18, 0x00, 0x01]),
            val(json!({"x": 1.0, "y": -1.0, "z": 0.001}))
        );
    }

    #[test]
    fn user_type_overrides_builtin() {
        let specs = DataTypes::from_json_str(
            r#"[{"name": "TMP", "len": 2, "fields": [{"name": "kelvin", "kind": "u16", "scale": 0.1}]}]"#,
        )
        .unwrap();
        let t = DataTypes::builtin().with(specs).unwrap();
        assert_eq!(
            t.decode("TMP", &[0x0B, 0x8D]),
            val(json!({"kelvin": 295.7}))
        );
        assert_eq!(t.names().len(), 4);
    }

    #[test]
    fn bad_files_rejected() {
        let toml_bad = |s: &str| DataTypes::from_toml_str(s).unwrap_err();
        let json_bad = |s: &str| DataTypes::from_json_str(s).unwrap_err();

        assert!(matches!(toml_bad("[[type]\nname="), DataTypeError::Toml(_)));
        assert!(matches!(json_bad("{"), DataTypeError::Json(_)));
        assert!(matches!(
            json_bad(r#"{"kinds": []}"#),
            DataTypeError::Json(_)
        ));
        // Unknown kind.
        assert!(matches!(
            json_bad(r#"[{"name": "ABC", "len": 2, "fields": [{"name": "a", "kind": "u12"}]}]"#),
            DataTypeError::Json(_)
        ));
        // Typo in a key is not silently ignored (scale would default to 1).
        assert!(matches!(
            toml_bad("[[type]]\nname = \"ABC\"\nlen = 1\nfields = [{ name = \"a\", kind = \"u8\", scal = 0.1 }]"),
            DataTypeError::Toml(_)
        ));
        // Bad names.
        for name in ["AB", "ABCD", "AÉ", "A\tB", ""] {
            let s = format!(
                r#"[{{"name": {name:?}, "len": 1, "fields": [{{"name": "a", "kind": "u8"}}]}}]"#
            );
            assert!(
                matches!(json_bad(&s), DataTypeError::BadName(_)),
                "{name:?}"
            );
        }
        // Sizes that do not add up.
        let e = toml_bad(
            "[[type]]\nname = \"ABC\"\nlen = 3\nfields = [{ name = \"a\", kind = \"u16\" }]",
        );
        assert!(
            matches!(
                e,
                DataTypeError::SizeMismatch {
                    len: 3,
                    fields: 2,
                    ..
                }
            ),
            "{e}"
        );
        // Duplicate types in one file.
        let e = json_bad(
            r#"[{"name": "ABC", "len": 1, "fields": [{"name": "a", "kind": "u8"}]},
                {"name": "ABC", "len": 1, "fields": [{"name": "b", "kind": "u8"}]}]"#,
        );
        assert!(
            matches!(e, DataTypeError::Duplicate(ref n) if n == "ABC"),
            "{e}"
        );
        // Duplicate fields, bad scale, no fields, zero or huge length.
        assert!(matches!(
            json_bad(
                r#"[{"name": "ABC", "len": 2, "fields": [{"name": "a", "kind": "u8"}, {"name": "a", "kind": "u8"}]}]"#
            ),
            DataTypeError::BadField { .. }
        ));
        assert!(matches!(
            json_bad(
                r#"[{"name": "ABC", "len": 1, "fields": [{"name": "a", "kind": "u8", "scale": 0}]}]"#
            ),
            DataTypeError::BadField { .. }
        ));
        assert!(matches!(
            json_bad(r#"[{"name": "ABC", "len": 0, "fields": []}]"#),
            DataTypeError::NoFields(_)
        ));
        let many: Vec<Value> = (0..64)
            .map(|i| json!({"name": format!("f{i}"), "kind": "u32"}))
            .collect();
        let s = json!([{"name": "BIG", "len": 256, "fields": many}]).to_string();
        assert!(matches!(
            json_bad(&s),
            DataTypeError::BadLen { len: 256, .. }
        ));
        // 255 bytes, the most a one-byte length can say, is a valid type.
        let most: Vec<Value> = (0..255)
            .map(|i| json!({"name": format!("f{i}"), "kind": "u8"}))
            .collect();
        let s = json!([{"name": "MAX", "len": 255, "fields": most}]).to_string();
        assert_eq!(DataTypes::from_json_str(&s).unwrap()[0].len, 255);
        // `with` validates specs built in code too.
        let bad = DataTypeSpec {
            name: "X".into(),
            len: 1,
            fields: vec![FieldSpec::new("a", IntKind::U8, 1.0)],
        };
        assert!(DataTypes::builtin().with(vec![bad]).is_err());
        // Every error has a message.
        assert!(!json_bad("{").to_string().is_empty());
    }

    #[test]
    fn encode_builtins() {
        let t = DataTypes::builtin();
        assert_eq!(
            t.encode("GPS", &json!({"lon": 12.3456, "lat": -12.3456})),
            Some(vec![0x01, 0xE2, 0x40, 0xFE, 0x1D, 0xC0])
        );
        assert_eq!(
            t.encode("TMP", &json!({"celsius": -12.34})),
            Some(vec![0xFB, 0x2E])
        );
        // Rounded to the nearest raw unit.
        assert_eq!(
            t.encode("TMP", &json!({"celsius": 25.004})),
            Some(vec![0x09, 0xC4])
        );
        assert_eq!(t.encode("HUM", &json!({"percent": 55})), Some(vec![0x37]));
        // A whole number of a scaled field is scaled too: 20 degrees is 2000.
        assert_eq!(
            t.encode("TMP", &json!({"celsius": 20})),
            Some(vec![0x07, 0xD0])
        );
        assert_eq!(t.encode("HUM", &json!({"percent": 55.4})), Some(vec![0x37]));
        assert_eq!(
            t.encode("BAT", &json!({"millivolts": 3700})),
            Some(vec![0x0E, 0x74])
        );
        // Out of range, missing, wrong shape, unknown type.
        assert_eq!(t.encode("HUM", &json!({"percent": 256})), None);
        assert_eq!(t.encode("HUM", &json!({"percent": -1})), None);
        assert_eq!(t.encode("TMP", &json!({"celsius": 400.0})), None);
        assert_eq!(t.encode("GPS", &json!({"lon": 1.0})), None);
        assert_eq!(t.encode("GPS", &json!({"lon": "1", "lat": 1})), None);
        assert_eq!(t.encode("HUM", &json!(55)), None);
        assert_eq!(t.encode("XYZ", &json!({})), None);
    }

    #[test]
    fn decimals_of_scales() {
        assert_eq!(decimals(1e-4), Some((4, 1)));
        assert_eq!(decimals(0.01), Some((2, 1)));
        assert_eq!(decimals(0.5), Some((1, 5)));
        assert_eq!(decimals(0.25), Some((2, 25)));
        assert_eq!(decimals(2.0), Some((0, 2)));
        assert_eq!(decimals(1.0 / 3.0), None);
        // A scale with no finite decimals still decodes.
        assert_eq!(scaled(3, 1.0 / 3.0), json!(1.0));
        assert_eq!(scaled(-7, 2.0), json!(-14.0));
        // Past 2^53 the exact decimal route is left for the plain product.
        assert_eq!(scaled(10_000_000, 1e9), json!(1e16));
    }

    fn arb_kind() -> impl Strategy<Value = IntKind> {
        prop_oneof![
            Just(IntKind::U8),
            Just(IntKind::I8),
            Just(IntKind::U16),
            Just(IntKind::I16),
            Just(IntKind::U24),
            Just(IntKind::I24),
            Just(IntKind::U32),
            Just(IntKind::I32),
        ]
    }

    proptest! {
        #[test]
        fn builtin_round_trip(t in prop_oneof![Just("GPS"), Just("TMP"), Just("HUM"), Just("BAT")],
                              raw in prop::collection::vec(any::<u8>(), 6)) {
            let types = DataTypes::builtin();
            let raw = &raw[..types.get(t).unwrap().len];
            let Decoded::Value(v) = types.decode(t, raw) else { panic!("not decoded") };
            // Through JSON text too, as the monitor and history log carry it.
            let v: Value = serde_json::from_str(&v.to_string()).unwrap();
            prop_assert_eq!(types.encode(t, &v), Some(raw.to_vec()));
        }

        #[test]
        fn user_type_round_trip(
            fields in prop::collection::vec(
                (arb_kind(), prop_oneof![Just(1.0), Just(0.1), Just(0.01), Just(0.001), Just(1e-4), Just(0.5), Just(2.0), Just(0.25)]),
                1..6),
            seed in prop::collection::vec(any::<u8>(), 24),
        ) {
            let fields: Vec<FieldSpec> = fields.iter().enumerate()
                .map(|(i, (k, s))| FieldSpec::new(format!("f{i}"), *k, *s)).collect();
            let len = fields.iter().map(|f| f.kind.size()).sum();
            let types = DataTypes::empty()
                .with(vec![DataTypeSpec { name: "USR".into(), len, fields }])
                .unwrap();
            let raw = &seed[..len];
            let Decoded::Value(v) = types.decode("USR", raw) else { panic!("not decoded") };
            let v: Value = serde_json::from_str(&v.to_string()).unwrap();
            prop_assert_eq!(types.encode("USR", &v), Some(raw.to_vec()));
        }
    }
}
