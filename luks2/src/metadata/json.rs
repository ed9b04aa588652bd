//! A JSON reader that accepts exactly what cryptsetup accepts in a LUKS2 JSON area.
//!
//! cryptsetup parses the area with json-c's non-strict tokener (`json_tokener_parse_ex` with the
//! default depth of 32). That tokener is more lenient than RFC 8259: it takes `/* */` and `//`
//! comments, single-quoted strings, trailing commas, case-insensitive `true`/`false`/`null`,
//! `NaN` and `Infinity`, leading zeros, raw control bytes and bytes that are not UTF-8. An
//! object key given twice keeps its first position and its last value. This module reproduces
//! those rules (from json-c 0.16, the version cryptsetup 2.6 is built with), so that a header
//! loads here exactly when it loads there. Nesting is limited to json-c's 32 levels, so the
//! recursive parser cannot overflow the stack.
//!
//! It also reproduces the json-c accessors cryptsetup uses to read values
//! (`json_object_get_int`, `json_object_get_int64`, C-string views of strings) and the length of
//! json-c's plain serialization, which cryptsetup compares with the JSON area size.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// json-c's default maximum nesting depth (`JSON_TOKENER_DEFAULT_DEPTH`).
const MAX_DEPTH: usize = 32;

/// A parsed JSON value, typed as json-c types it (public as [`JsonValue`](super::JsonValue)).
#[derive(Debug, Clone)]
pub enum JVal {
    /// `null` (any letter case).
    Null,
    /// `true` / `false` (any letter case).
    Bool(bool),
    /// An integer that fits `i64` (json-c `json_type_int`, int64 flavour).
    Int(i64),
    /// A non-negative integer above `i64::MAX` (json-c `json_type_int`, uint64 flavour).
    UInt(u64),
    /// A number with a fraction or exponent, `NaN` or `Infinity` (json-c `json_type_double`).
    Double {
        /// The value.
        value: f64,
        /// The text as written (serialized back verbatim); `None` for `NaN`/`Infinity`.
        text: Option<Box<str>>,
    },
    /// A string: raw bytes (json-c neither validates UTF-8 nor stops at an escaped NUL).
    Str(Vec<u8>),
    /// An array.
    Array(Vec<JVal>),
    /// An object (boxed: keeps every value small, since a 4 MiB JSON area can hold millions).
    Object(Box<JObject>),
}

/// The json-c type of a value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    /// `null`
    Null,
    /// a boolean
    Boolean,
    /// an integer
    Int,
    /// a number with a fraction or exponent
    Double,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Int => "integer",
            JsonType::Double => "fractional number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        })
    }
}

/// An object: entries in insertion order, keys as C strings (cut at the first NUL, as json-c's
/// `strdup` does), a repeated key replacing the value in place. Objects with many keys get a
/// hash index so that lookups and duplicate detection stay linear overall (public as
/// [`JsonObject`](super::JsonObject)).
#[derive(Debug, Clone, Default)]
pub struct JObject {
    entries: Vec<(Box<[u8]>, JVal)>,
    index: Option<HashMap<Box<[u8]>, usize>>,
}

/// Objects with more keys than this get a hash index.
const INDEX_FROM: usize = 16;

impl PartialEq for JObject {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for JObject {}

/// Values are equal when they are the same json-c value: doubles compare by their bits and
/// text (so `NaN` equals itself and the relation is an equivalence).
impl PartialEq for JVal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JVal::Null, JVal::Null) => true,
            (JVal::Bool(a), JVal::Bool(b)) => a == b,
            (JVal::Int(a), JVal::Int(b)) => a == b,
            (JVal::UInt(a), JVal::UInt(b)) => a == b,
            (JVal::Double { value: a, text: ta }, JVal::Double { value: b, text: tb }) => {
                a.to_bits() == b.to_bits() && ta == tb
            }
            (JVal::Str(a), JVal::Str(b)) => a == b,
            (JVal::Array(a), JVal::Array(b)) => a == b,
            (JVal::Object(a), JVal::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for JVal {}

impl JObject {
    /// Position of `key` among the entries.
    fn find(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| &**k == key),
        }
    }

    /// Inserts like `json_object_object_add`: a new key goes last, a known key keeps its place.
    fn insert(&mut self, key: Vec<u8>, value: JVal) {
        if let Some(i) = self.find(&key) {
            if let Some(slot) = self.entries.get_mut(i) {
                slot.1 = value;
            }
            return;
        }
        let key: Box<[u8]> = key.into_boxed_slice();
        let pos = self.entries.len();
        if let Some(ix) = &mut self.index {
            ix.insert(key.clone(), pos);
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > INDEX_FROM {
            self.rebuild_index();
        }
    }

    fn rebuild_index(&mut self) {
        self.index = (self.entries.len() > INDEX_FROM).then(|| {
            self.entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect()
        });
    }

    /// The value of `key`, if present (`json_object_object_get_ex`).
    pub fn get(&self, key: &str) -> Option<&JVal> {
        self.get_bytes(key.as_bytes())
    }

    /// The value of a key given as bytes (a C string: cut at the first NUL before lookup).
    pub fn get_bytes(&self, key: &[u8]) -> Option<&JVal> {
        let i = self.find(cstr(key))?;
        self.entries.get(i).map(|e| &e.1)
    }

    /// Entries in json-c iteration order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &JVal)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the keys for which `keep` returns false (used by cryptsetup's keyslot repair).
    pub(crate) fn retain_keys(&mut self, keep: impl Fn(&[u8]) -> bool) {
        self.entries.retain(|(k, _)| keep(k));
        self.rebuild_index();
    }

    /// Mutable access to a value.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut JVal> {
        let i = self.find(key.as_bytes())?;
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// An object of `entries` in their order (`json_object_object_add` one after the other).
    pub(crate) fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, JVal)>) -> JObject {
        let mut o = JObject::default();
        for (k, v) in entries {
            o.set(k, v);
        }
        o
    }

    /// Sets `key` to `value`: a new key goes last, a known key keeps its place.
    pub(crate) fn set(&mut self, key: impl AsRef<[u8]>, value: JVal) {
        self.insert(key.as_ref().to_vec(), value);
    }

    /// Removes `key` if present.
    pub(crate) fn remove(&mut self, key: &str) {
        self.retain_keys(|k| k != key.as_bytes());
    }

    /// Mutable access to every value, in order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut JVal> {
        self.entries.iter_mut().map(|e| &mut e.1)
    }
}

impl From<&str> for JVal {
    fn from(s: &str) -> JVal {
        JVal::Str(s.as_bytes().to_vec())
    }
}

impl From<String> for JVal {
    fn from(s: String) -> JVal {
        JVal::Str(s.into_bytes())
    }
}

impl From<u64> for JVal {
    fn from(n: u64) -> JVal {
        i64::try_from(n).map_or(JVal::UInt(n), JVal::Int)
    }
}

impl From<u32> for JVal {
    fn from(n: u32) -> JVal {
        JVal::Int(i64::from(n))
    }
}

impl From<usize> for JVal {
    fn from(n: usize) -> JVal {
        JVal::from(n as u64)
    }
}

impl From<JObject> for JVal {
    fn from(o: JObject) -> JVal {
        JVal::Object(Box::new(o))
    }
}

/// The part of a byte string a C function sees: up to the first NUL.
pub(crate) fn cstr(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => s.get(..n).unwrap_or(s),
        None => s,
    }
}

impl JVal {
    /// Its json-c type.
    pub fn json_type(&self) -> JsonType {
        match self {
            JVal::Null => JsonType::Null,
            JVal::Bool(_) => JsonType::Boolean,
            JVal::Int(_) | JVal::UInt(_) => JsonType::Int,
            JVal::Double { .. } => JsonType::Double,
            JVal::Str(_) => JsonType::String,
            JVal::Array(_) => JsonType::Array,
            JVal::Object(_) => JsonType::Object,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&JObject> {
        match self {
            JVal::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[JVal]> {
        match self {
            JVal::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object, mutable, if this is one.
    pub(crate) fn as_object_mut(&mut self) -> Option<&mut JObject> {
        match self {
            JVal::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, mutable, if this is one.
    pub(crate) fn as_array_mut(&mut self) -> Option<&mut Vec<JVal>> {
        match self {
            JVal::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The full string bytes, if this is a string.
    pub fn as_str_bytes(&self) -> Option<&[u8]> {
        match self {
            JVal::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string as C code sees it (`json_object_get_string` then `strcmp`): up to the first
    /// NUL. `None` if this is not a string.
    pub fn as_cstr(&self) -> Option<&[u8]> {
        self.as_str_bytes().map(cstr)
    }

    /// `json_object_get_int64`: integers as they are (uint64 above `i64::MAX` clamps), doubles
    /// truncated and clamped, booleans 0/1, strings parsed by `strtoll`, anything else 0.
    pub fn get_int64(&self) -> i64 {
        match self {
            JVal::Int(i) => *i,
            JVal::UInt(_) => i64::MAX,
            JVal::Double { value, .. } => double_to_i64(*value),
            JVal::Bool(b) => i64::from(*b),
            JVal::Str(s) => strtoll(cstr(s)).unwrap_or(0),
            JVal::Null | JVal::Array(_) | JVal::Object(_) => 0,
        }
    }

    /// `json_object_get_int`: like [`JVal::get_int64`] but clamped to the `i32` range (a string
    /// that does not parse gives 0).
    pub fn get_int(&self) -> i32 {
        match self {
            JVal::Double { value, .. } => {
                let v = *value;
                if v <= f64::from(i32::MIN) {
                    i32::MIN
                } else if v >= f64::from(i32::MAX) {
                    i32::MAX
                } else if v.is_nan() {
                    // x86 cvttsd2si gives the "integer indefinite" value for NaN.
                    i32::MIN
                } else {
                    // In range: truncation toward zero, as a C cast does.
                    #[allow(clippy::cast_possible_truncation)]
                    let t = v as i32;
                    t
                }
            }
            JVal::Null | JVal::Array(_) | JVal::Object(_) => 0,
            other => {
                let v = other.get_int64();
                i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
            }
        }
    }

    /// Whether the value is a JSON integer within `0..=u32::MAX` (cryptsetup's
    /// `validate_json_uint32` on a value already known to be `json_type_int`).
    pub(crate) fn valid_u32(&self) -> Option<u32> {
        match self {
            JVal::Int(i) => u32::try_from(*i).ok(),
            _ => None,
        }
    }

    /// The length of json-c's `JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE` text.
    #[cfg(test)]
    pub(crate) fn plain_len(&self) -> u64 {
        let mut n = 0u64;
        self.serialize(Layout::Plain, &mut |b: &[u8]| {
            n = n.saturating_add(b.len() as u64)
        });
        n
    }

    /// json-c's plain serialization, as bytes.
    pub fn to_plain_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.serialize(Layout::Plain, &mut |b: &[u8]| out.extend_from_slice(b));
        out
    }

    /// `json_object_get_string`: a string as C code sees it (up to the first NUL), any other
    /// value as its plain serialization; `None` for `null` (json-c's NULL object).
    pub fn get_string(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            JVal::Null => None,
            JVal::Str(s) => Some(Cow::Borrowed(cstr(s))),
            other => Some(Cow::Owned(other.to_plain_bytes())),
        }
    }

    fn serialize(&self, layout: Layout, out: &mut dyn FnMut(&[u8])) {
        match self {
            JVal::Null => out(b"null"),
            JVal::Bool(true) => out(b"true"),
            JVal::Bool(false) => out(b"false"),
            JVal::Int(i) => out(i.to_string().as_bytes()),
            JVal::UInt(u) => out(u.to_string().as_bytes()),
            JVal::Double { value, text } => match text {
                Some(t) => out(t.as_bytes()),
                None if value.is_nan() => out(b"NaN"),
                None if *value > 0.0 => out(b"Infinity"),
                None => out(b"-Infinity"),
            },
            JVal::Str(s) => {
                out(b"\"");
                escape(s, out);
                out(b"\"");
            }
            JVal::Array(a) => {
                serialize_container(*b"[]", a.iter().map(|v| (None, v)), layout, out);
            }
            JVal::Object(o) => o.serialize(layout, out),
        }
    }
}

/// How json-c lays a value out: `JSON_C_TO_STRING_PLAIN`, or `JSON_C_TO_STRING_PRETTY` at a
/// nesting level (both with `JSON_C_TO_STRING_NOSLASHESCAPE`).
#[derive(Debug, Clone, Copy)]
enum Layout {
    Plain,
    Pretty(usize),
}

/// An array's or object's members between `brackets`, as json-c's `json_object_array_to_
/// json_string` and `json_object_object_to_json_string` write them: plain, `[1,2]`; pretty, a
/// line break after the opening bracket, each member on its own line two spaces deeper, and
/// the closing bracket on a line at the container's own depth (also when it is empty).
fn serialize_container<'a>(
    brackets: [u8; 2],
    members: impl Iterator<Item = (Option<&'a [u8]>, &'a JVal)>,
    layout: Layout,
    out: &mut dyn FnMut(&[u8]),
) {
    let [open, close] = brackets;
    let indent = |out: &mut dyn FnMut(&[u8]), level: usize| {
        for _ in 0..level {
            out(b"  ");
        }
    };
    out(&[open]);
    let inner = match layout {
        Layout::Plain => Layout::Plain,
        Layout::Pretty(level) => {
            out(b"\n");
            Layout::Pretty(level.saturating_add(1))
        }
    };
    let mut had_children = false;
    for (key, v) in members {
        if had_children {
            out(b",");
            if let Layout::Pretty(_) = layout {
                out(b"\n");
            }
        }
        had_children = true;
        if let Layout::Pretty(level) = inner {
            indent(out, level);
        }
        if let Some(k) = key {
            out(b"\"");
            escape(k, out);
            out(b"\":");
        }
        v.serialize(inner, out);
    }
    if let Layout::Pretty(level) = layout {
        if had_children {
            out(b"\n");
        }
        indent(out, level);
    }
    out(&[close]);
}

impl JObject {
    /// The length of json-c's plain serialization of this object.
    pub(crate) fn plain_len(&self) -> u64 {
        let mut n = 0u64;
        self.serialize(Layout::Plain, &mut |b: &[u8]| {
            n = n.saturating_add(b.len() as u64)
        });
        n
    }

    /// json-c's `JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE` text of this object
    /// (two spaces a level, no space after a colon, no final line break): what `cryptsetup
    /// luksDump --dump-json-metadata` prints.
    pub fn to_pretty_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.serialize(Layout::Pretty(0), &mut |b: &[u8]| out.extend_from_slice(b));
        out
    }

    fn serialize(&self, layout: Layout, out: &mut dyn FnMut(&[u8])) {
        serialize_container(*b"{}", self.iter().map(|(k, v)| (Some(k), v)), layout, out);
    }
}

/// json-c's `json_escape_str` with `JSON_C_TO_STRING_NOSLASHESCAPE`.
fn escape(s: &[u8], out: &mut dyn FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (pos, &c) in s.iter().enumerate() {
        let short: &[u8] = match c {
            0x08 => b"\\b",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x0c => b"\\f",
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            c if c < 0x20 => b"",
            _ => continue,
        };
        out(s.get(start..pos).unwrap_or_default());
        if short.is_empty() {
            let hi = HEX.get(usize::from(c >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(c & 0xf)).copied().unwrap_or(b'0');
            out(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out(short);
        }
        start = pos + 1;
    }
    out(s.get(start..).unwrap_or_default());
}

fn double_to_i64(v: f64) -> i64 {
    // json-c: `>= (double)INT64_MAX` → INT64_MAX, `<= INT64_MIN` → INT64_MIN, else a C cast.
    if v.is_nan() {
        i64::MIN
    } else {
        // `as` saturates, which equals json-c's explicit clamping for out-of-range values.
        #[allow(clippy::cast_possible_truncation)]
        let t = v as i64;
        t
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtoll(s, &end, 10)` as json-c's `json_parse_int64` uses it: leading white space, an
/// optional sign, at least one digit, trailing text ignored, saturating on overflow.
pub(crate) fn strtoll(s: &[u8]) -> Option<i64> {
    let mut i = s.iter().position(|&b| !is_c_space(b)).unwrap_or(s.len());
    let mut neg = false;
    match s.get(i) {
        Some(b'-') => {
            neg = true;
            i += 1;
        }
        Some(b'+') => i += 1,
        _ => {}
    }
    let digits = s.get(i..).unwrap_or_default();
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut acc: i64 = 0;
    for &d in digits.iter().take(n) {
        let d = i64::from(d.saturating_sub(b'0'));
        acc = if neg {
            match acc.checked_mul(10).and_then(|a| a.checked_sub(d)) {
                Some(a) => a,
                None => return Some(i64::MIN),
            }
        } else {
            match acc.checked_mul(10).and_then(|a| a.checked_add(d)) {
                Some(a) => a,
                None => return Some(i64::MAX),
            }
        };
    }
    Some(acc)
}

/// C `strtoull(s, &end, 10)` with cryptsetup's `json_str_to_uint64` checks: the whole string
/// must be consumed and no overflow may occur. Leading white space and a sign are accepted, and
/// a minus sign negates modulo 2^64, as `strtoull` does.
pub(crate) fn strtoull_whole(s: &[u8]) -> Option<u64> {
    let mut i = s.iter().position(|&b| !is_c_space(b)).unwrap_or(s.len());
    let mut neg = false;
    match s.get(i) {
        Some(b'-') => {
            neg = true;
            i += 1;
        }
        Some(b'+') => i += 1,
        _ => {}
    }
    let digits = s.get(i..).unwrap_or_default();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut acc: u64 = 0;
    for &d in digits {
        acc = acc
            .checked_mul(10)?
            .checked_add(u64::from(d.saturating_sub(b'0')))?;
    }
    Some(if neg { acc.wrapping_neg() } else { acc })
}

/// Why the JSON text could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// A byte that cannot start or continue the expected token.
    Unexpected,
    /// A NUL byte before the JSON text is complete.
    UnexpectedNul,
    /// The JSON area ends before the JSON text does.
    Truncated,
    /// A malformed string (bad escape).
    BadString,
    /// A malformed number.
    BadNumber,
    /// A malformed `true`/`false`/`null`/`NaN`/`Infinity`.
    BadLiteral,
    /// A malformed comment.
    BadComment,
    /// Nested deeper than json-c's limit of 32 levels.
    TooDeep,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonErrorKind::Unexpected => "unexpected character",
            JsonErrorKind::UnexpectedNul => "NUL byte inside the JSON text",
            JsonErrorKind::Truncated => "JSON text runs to the end of the JSON area",
            JsonErrorKind::BadString => "malformed string",
            JsonErrorKind::BadNumber => "malformed number",
            JsonErrorKind::BadLiteral => "malformed literal",
            JsonErrorKind::BadComment => "malformed comment",
            JsonErrorKind::TooDeep => "nested deeper than 32 levels",
        })
    }
}

/// A parse failure at a byte offset of the JSON area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) kind: JsonErrorKind,
    pub(crate) offset: usize,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

type PResult<T> = Result<T, ParseError>;

/// Parses the JSON value at the start of `area` as `json_tokener_parse_ex(tok, area, len)`
/// does. Returns the value and the offset where the tokener stopped (after trailing white space
/// and comments; cryptsetup requires only NUL bytes from there on).
pub(crate) fn parse(area: &[u8]) -> Result<(JVal, usize), ParseError> {
    let mut p = Parser { s: area, pos: 0 };
    p.eat_ws()?;
    let v = p.value(0)?;
    // After the top-level value json-c eats white space and comments, then stops at any other
    // byte (or at the end of the area).
    p.eat_ws_top()?;
    Ok((v, p.pos))
}

impl Parser<'_> {
    fn err<T>(&self, kind: JsonErrorKind) -> PResult<T> {
        Err(ParseError {
            kind,
            offset: self.pos,
        })
    }

    /// The current byte; the end of the area is "incomplete input" (an error for json-c unless
    /// the top-level value is complete).
    fn cur(&self) -> PResult<u8> {
        match self.s.get(self.pos) {
            Some(&c) => Ok(c),
            None => self.err(JsonErrorKind::Truncated),
        }
    }

    /// An error for byte `c` where it does not fit: a NUL gets its own kind.
    fn unexpected<T>(&self, c: u8) -> PResult<T> {
        if c == 0 {
            self.err(JsonErrorKind::UnexpectedNul)
        } else {
            self.err(JsonErrorKind::Unexpected)
        }
    }

    /// json-c's `eatws` state: spaces, tabs, CR, LF and comments between tokens.
    fn eat_ws(&mut self) -> PResult<()> {
        loop {
            let c = self.cur()?;
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else if c == b'/' {
                self.comment()?;
            } else {
                return Ok(());
            }
        }
    }

    /// `eatws` after the top-level value: reaching the end of the area is success here.
    fn eat_ws_top(&mut self) -> PResult<()> {
        while let Some(&c) = self.s.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else if c == b'/' {
                self.comment()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn comment(&mut self) -> PResult<()> {
        self.pos += 1; // '/'
        match self.cur()? {
            b'*' => {
                self.pos += 1;
                loop {
                    let c = self.cur()?;
                    if c == 0 {
                        return self.err(JsonErrorKind::UnexpectedNul);
                    }
                    self.pos += 1;
                    if c == b'*' {
                        // comment_end: a '/' closes, anything else (even '*') continues.
                        loop {
                            let c = self.cur()?;
                            if c == 0 {
                                return self.err(JsonErrorKind::UnexpectedNul);
                            }
                            self.pos += 1;
                            if c == b'/' {
                                return Ok(());
                            }
                            if c != b'*' {
                                break;
                            }
                        }
                    }
                }
            }
            b'/' => {
                self.pos += 1;
                loop {
                    let c = self.cur()?;
                    if c == 0 {
                        return self.err(JsonErrorKind::UnexpectedNul);
                    }
                    self.pos += 1;
                    if c == b'\n' {
                        return Ok(());
                    }
                }
            }
            0 => self.err(JsonErrorKind::UnexpectedNul),
            _ => self.err(JsonErrorKind::BadComment),
        }
    }

    /// A value at nesting `depth` (the top-level value has depth 0). White space before it has
    /// been eaten.
    fn value(&mut self, depth: usize) -> PResult<JVal> {
        let c = self.cur()?;
        match c {
            b'{' => {
                self.pos += 1;
                self.object(depth)
            }
            b'[' => {
                self.pos += 1;
                self.array(depth)
            }
            b'I' | b'i' => self.infinity(false),
            b'N' | b'n' => self.null_or_nan(),
            b'"' | b'\'' => {
                self.pos += 1;
                Ok(JVal::Str(self.string(c)?))
            }
            b'T' | b't' | b'F' | b'f' => self.boolean(),
            b'0'..=b'9' | b'-' => self.number(),
            _ => self.unexpected(c),
        }
    }

    /// json-c refuses to descend into a value when the container is at depth 31 or more.
    fn check_depth(&self, container_depth: usize) -> PResult<()> {
        if container_depth >= MAX_DEPTH - 1 {
            self.err(JsonErrorKind::TooDeep)
        } else {
            Ok(())
        }
    }

    fn object(&mut self, depth: usize) -> PResult<JVal> {
        let mut obj = JObject::default();
        self.eat_ws()?;
        loop {
            // object_field_start (also after a ',': json-c accepts a trailing comma).
            let c = self.cur()?;
            match c {
                b'}' => {
                    self.pos += 1;
                    return Ok(JVal::Object(Box::new(obj)));
                }
                b'"' | b'\'' => {
                    self.pos += 1;
                    let mut key = self.string(c)?;
                    // strdup() keeps the key only up to its first NUL.
                    let n = cstr(&key).len();
                    key.truncate(n);
                    self.eat_ws()?;
                    let c = self.cur()?;
                    if c != b':' {
                        return self.unexpected(c);
                    }
                    self.pos += 1;
                    self.eat_ws()?;
                    self.check_depth(depth)?;
                    let v = self.value(depth + 1)?;
                    obj.insert(key, v);
                    self.eat_ws()?;
                    let c = self.cur()?;
                    match c {
                        b'}' => {
                            self.pos += 1;
                            return Ok(JVal::Object(Box::new(obj)));
                        }
                        b',' => {
                            self.pos += 1;
                            self.eat_ws()?;
                        }
                        _ => return self.unexpected(c),
                    }
                }
                _ => return self.unexpected(c),
            }
        }
    }

    fn array(&mut self, depth: usize) -> PResult<JVal> {
        let mut arr = Vec::new();
        self.eat_ws()?;
        loop {
            let c = self.cur()?;
            if c == b']' {
                self.pos += 1;
                return Ok(JVal::Array(arr));
            }
            self.check_depth(depth)?;
            arr.push(self.value(depth + 1)?);
            self.eat_ws()?;
            let c = self.cur()?;
            match c {
                b']' => {
                    self.pos += 1;
                    return Ok(JVal::Array(arr));
                }
                b',' => {
                    self.pos += 1;
                    self.eat_ws()?;
                }
                _ => return self.unexpected(c),
            }
        }
    }

    /// A string body after its opening quote `q` (`"` or `'`), up to and including the closing
    /// quote. Raw bytes other than NUL are taken as they are.
    fn string(&mut self, q: u8) -> PResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut high: Option<u32> = None;
        loop {
            let c = self.cur()?;
            if let Some(h) = high.take() {
                // After a high surrogate json-c wants "\u" and a low surrogate.
                if c != b'\\' {
                    push_replacement(&mut out);
                    continue; // reprocess c normally
                }
                self.pos += 1;
                let c2 = self.cur()?;
                if c2 != b'u' {
                    push_replacement(&mut out);
                    // c2 is handled as the escape character of a normal escape.
                    self.escape_char(c2, &mut out, &mut high)?;
                    continue;
                }
                self.pos += 1;
                let u = self.hex4()?;
                if (0xdc00..=0xdfff).contains(&u) {
                    let cp = 0x10000 + ((h - 0xd800) << 10) + (u - 0xdc00);
                    push_utf8(&mut out, cp);
                } else {
                    push_replacement(&mut out);
                    self.unicode(u, &mut out, &mut high);
                }
                continue;
            }
            if c == q {
                self.pos += 1;
                return Ok(out);
            }
            match c {
                0 => return self.err(JsonErrorKind::UnexpectedNul),
                b'\\' => {
                    self.pos += 1;
                    let e = self.cur()?;
                    self.escape_char(e, &mut out, &mut high)?;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// Handles the character `e` after a backslash (the cursor is on `e`).
    fn escape_char(&mut self, e: u8, out: &mut Vec<u8>, high: &mut Option<u32>) -> PResult<()> {
        let lit = match e {
            b'"' | b'\\' | b'/' => e,
            b'b' => 0x08,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'f' => 0x0c,
            b'u' => {
                self.pos += 1;
                let u = self.hex4()?;
                self.unicode(u, out, high);
                return Ok(());
            }
            0 => return self.err(JsonErrorKind::UnexpectedNul),
            _ => return self.err(JsonErrorKind::BadString),
        };
        out.push(lit);
        self.pos += 1;
        Ok(())
    }

    /// Four hex digits of a `\u` escape; the cursor ends after them.
    fn hex4(&mut self) -> PResult<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.cur()?;
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                0 => return self.err(JsonErrorKind::UnexpectedNul),
                _ => return self.err(JsonErrorKind::BadString),
            };
            v = (v << 4) | u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// Appends a `\u` code unit the way json-c does (lone surrogates become U+FFFD).
    fn unicode(&mut self, u: u32, out: &mut Vec<u8>, high: &mut Option<u32>) {
        if (0xd800..=0xdbff).contains(&u) {
            *high = Some(u);
        } else if (0xdc00..=0xdfff).contains(&u) {
            push_replacement(out);
        } else {
            push_utf8(out, u);
        }
    }

    /// `Infinity` in any letter case (after an optional '-' already consumed by `number`).
    fn infinity(&mut self, negative: bool) -> PResult<JVal> {
        for &w in b"infinity" {
            let c = self.cur()?;
            if c.to_ascii_lowercase() != w {
                return self.err(JsonErrorKind::BadLiteral);
            }
            self.pos += 1;
        }
        // json-c needs one more byte before it completes the token.
        self.cur()?;
        Ok(JVal::Double {
            value: if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
            text: None,
        })
    }

    /// Reads a case-insensitive keyword; json-c needs one more byte after it.
    fn keyword(&mut self, word: &[u8]) -> PResult<bool> {
        let end = self.pos.saturating_add(word.len());
        match self.s.get(self.pos..end) {
            Some(got) if got.eq_ignore_ascii_case(word) => {
                self.pos = end;
                self.cur()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn null_or_nan(&mut self) -> PResult<JVal> {
        if self.keyword(b"null")? {
            return Ok(JVal::Null);
        }
        if self.keyword(b"nan")? {
            return Ok(JVal::Double {
                value: f64::NAN,
                text: None,
            });
        }
        self.literal_error()
    }

    fn boolean(&mut self) -> PResult<JVal> {
        if self.keyword(b"true")? {
            return Ok(JVal::Bool(true));
        }
        if self.keyword(b"false")? {
            return Ok(JVal::Bool(false));
        }
        self.literal_error()
    }

    /// Reports a bad literal at the first byte json-c rejects (or "truncated" at the area end).
    fn literal_error<T>(&mut self) -> PResult<T> {
        // Advance over the longest case-insensitive prefix of any keyword, for the offset.
        let words: [&[u8]; 4] = [b"null", b"nan", b"true", b"false"];
        let rest = self.s.get(self.pos..).unwrap_or_default();
        let longest = words
            .iter()
            .map(|w| {
                w.iter()
                    .zip(rest)
                    .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                    .count()
            })
            .max()
            .unwrap_or(0);
        self.pos += longest;
        let c = self.cur()?;
        if c == 0 {
            self.err(JsonErrorKind::UnexpectedNul)
        } else {
            self.err(JsonErrorKind::BadLiteral)
        }
    }

    /// json-c's number state (non-strict), at a digit or '-'.
    fn number(&mut self) -> PResult<JVal> {
        let start = self.pos;
        let mut is_double = false;
        let mut is_exponent = false;
        let mut neg_ok = true;
        let mut pos_ok = false;
        loop {
            let c = self.cur()?;
            let accept = c.is_ascii_digit()
                || (!is_exponent && (c == b'e' || c == b'E'))
                || (neg_ok && c == b'-')
                || (pos_ok && c == b'+')
                || (!is_double && c == b'.');
            if !accept {
                break;
            }
            pos_ok = false;
            neg_ok = false;
            match c {
                b'.' => {
                    is_double = true;
                    pos_ok = true;
                    neg_ok = true;
                }
                b'e' | b'E' => {
                    is_exponent = true;
                    is_double = true;
                    pos_ok = true;
                    neg_ok = true;
                }
                _ => {}
            }
            self.pos += 1;
        }
        let end = self.pos;
        let c = self.cur()?;
        // Numbers are always inside the top-level object here (depth > 0).
        if !matches!(
            c,
            b',' | b']' | b'}' | b'/' | b'I' | b'i' | b' ' | b'\t' | b'\n' | b'\r'
        ) {
            return self.unexpected(c);
        }
        let mut text = self.s.get(start..end).unwrap_or_default();
        if text == b"-" && (c == b'I' || c == b'i') {
            return self.infinity(true);
        }
        if is_double {
            // Non-strict json-c trims a dangling exponent ("123e+" parses as 123).
            while text.len() > 1 {
                match text.last() {
                    Some(b'e' | b'E' | b'-' | b'+') => {
                        text = text.get(..text.len() - 1).unwrap_or(text)
                    }
                    _ => break,
                }
            }
            if !strtod_consumes_all(text) {
                return Err(ParseError {
                    kind: JsonErrorKind::BadNumber,
                    offset: start,
                });
            }
            let t = String::from_utf8_lossy(text);
            let value = rust_parse_f64(&t);
            return Ok(JVal::Double {
                value,
                text: Some(t.into()),
            });
        }
        if text.first() == Some(&b'-') {
            // json_parse_int64: strtoll, saturating.
            match strtoll(text) {
                Some(v) => Ok(JVal::Int(v)),
                None => Err(ParseError {
                    kind: JsonErrorKind::BadNumber,
                    offset: start,
                }),
            }
        } else {
            // json_parse_uint64: strtoull of plain digits, saturating at u64::MAX.
            let mut acc: u64 = 0;
            for &d in text {
                acc = acc
                    .checked_mul(10)
                    .and_then(|a| a.checked_add(u64::from(d.saturating_sub(b'0'))))
                    .unwrap_or(u64::MAX);
            }
            Ok(match i64::try_from(acc) {
                Ok(v) => JVal::Int(v),
                Err(_) => JVal::UInt(acc),
            })
        }
    }
}

/// Whether C `strtod` consumes all of `t` (made only of digits, '.', 'e', 'E', '+', '-', and
/// starting with a digit or '-'): `-? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
fn strtod_consumes_all(t: &[u8]) -> bool {
    let mut i = 0;
    if t.first() == Some(&b'-') {
        i = 1;
    }
    let digits = |from: usize| {
        t.get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_digits = digits(i);
    i += int_digits;
    let mut frac_digits = 0;
    if t.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(i);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(t.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = digits(j);
        if exp_digits == 0 {
            return false;
        }
        i = j + exp_digits;
    }
    i == t.len()
}

/// The value of a number text that [`strtod_consumes_all`] accepted.
fn rust_parse_f64(t: &str) -> f64 {
    // Rust's parser wants a digit before '.', and one after it before an exponent.
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let mut s = String::with_capacity(body.len() + 3);
    if neg {
        s.push('-');
    }
    if body.starts_with('.') {
        s.push('0');
    }
    let mut prev_dot = false;
    for ch in body.chars() {
        if prev_dot && !ch.is_ascii_digit() {
            s.push('0');
        }
        s.push(ch);
        prev_dot = ch == '.';
    }
    if prev_dot {
        s.push('0');
    }
    s.parse::<f64>().unwrap_or(f64::NAN)
}

fn push_replacement(out: &mut Vec<u8>) {
    out.extend_from_slice("\u{fffd}".as_bytes());
}

fn push_utf8(out: &mut Vec<u8>, cp: u32) {
    match char::from_u32(cp) {
        Some(ch) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        None => push_replacement(out),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<(JVal, usize), ParseError> {
        let mut v = s.as_bytes().to_vec();
        v.extend_from_slice(&[0; 8]);
        parse(&v)
    }

    fn obj(s: &str) -> JObject {
        match p(s).unwrap().0 {
            JVal::Object(o) => *o,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn plain_object_and_end_offset() {
        let (v, end) = p(r#"{"a":1,"b":"x"}  "#).unwrap();
        assert_eq!(end, 17);
        let o = v.as_object().unwrap();
        assert_eq!(o.get("a"), Some(&JVal::Int(1)));
        assert_eq!(o.get("b"), Some(&JVal::Str(b"x".to_vec())));
    }

    #[test]
    fn pretty_layout_is_json_c_s() {
        let o = obj(r#"{"keyslots":{},"tokens":{"0":{"type":"x","keyslots":["0"],"n":1}},"a":[]}"#);
        let want = "{\n  \"keyslots\":{\n  },\n  \"tokens\":{\n    \"0\":{\n      \"type\":\"x\",\n      \"keyslots\":[\n        \"0\"\n      ],\n      \"n\":1\n    }\n  },\n  \"a\":[\n  ]\n}";
        assert_eq!(String::from_utf8(o.to_pretty_bytes()).unwrap(), want);
        assert_eq!(obj("{}").to_pretty_bytes(), b"{\n}");
    }

    #[test]
    fn pretty_and_plain_escape_as_json_c() {
        // Structural characters in strings stay, `/` is not escaped, `\u0041` is written back
        // as the byte it stands for, doubles keep their text.
        let o = obj(r#"{"a":"x\"{,}[]\\/\u0041","d":1.50}"#);
        assert_eq!(
            String::from_utf8(o.to_pretty_bytes()).unwrap(),
            "{\n  \"a\":\"x\\\"{,}[]\\\\/A\",\n  \"d\":1.50\n}"
        );
        assert_eq!(
            JVal::Object(Box::new(o)).to_plain_bytes(),
            br#"{"a":"x\"{,}[]\\/A","d":1.50}"#
        );
    }

    #[test]
    fn get_string_as_json_c() {
        let o = obj(r#"{"s":"ab\u0000c","n":4096,"z":null,"a":[1, 2]}"#);
        let g = |k: &str| o.get(k).and_then(JVal::get_string).map(|c| c.into_owned());
        assert_eq!(g("s"), Some(b"ab".to_vec()));
        assert_eq!(g("n"), Some(b"4096".to_vec()));
        assert_eq!(g("z"), None);
        assert_eq!(g("a"), Some(b"[1,2]".to_vec()));
    }

    #[test]
    fn json_c_leniencies() {
        let o = obj("{'a':TRUE,\"b\":nULL,\"c\":[1,2,],/*x*/\"d\":NaN,\"e\":-infinity,\"f\":064,}");
        assert_eq!(o.get("a"), Some(&JVal::Bool(true)));
        assert_eq!(o.get("b"), Some(&JVal::Null));
        assert_eq!(
            o.get("c"),
            Some(&JVal::Array(vec![JVal::Int(1), JVal::Int(2)]))
        );
        assert!(matches!(o.get("d"), Some(JVal::Double { value, .. }) if value.is_nan()));
        assert!(
            matches!(o.get("e"), Some(JVal::Double { value, .. }) if *value == f64::NEG_INFINITY)
        );
        assert_eq!(o.get("f"), Some(&JVal::Int(64)));
        let (_, end) = p("{}// c\n/* d */ ").unwrap();
        assert_eq!(end, 15);
    }

    #[test]
    fn duplicate_keys_keep_first_position_last_value() {
        let o = obj(r#"{"a":1,"b":2,"a":3}"#);
        let keys: Vec<&[u8]> = o.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a".as_slice(), b"b".as_slice()]);
        assert_eq!(o.get("a"), Some(&JVal::Int(3)));
        // Keys are cut at an escaped NUL.
        let o = obj(r#"{"a\u0000x":1}"#);
        assert_eq!(o.get("a"), Some(&JVal::Int(1)));
    }

    #[test]
    fn depth_limit_matches_json_c() {
        // Values may sit at depth 31 (the top-level object is depth 0): 31 nested arrays
        // under "a" are fine, 32 are not, and neither is a scalar inside 31 arrays.
        let nest =
            |n: usize, inner: &str| format!("{{\"a\":{}{inner}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(p(&nest(31, "")).is_ok());
        assert!(p(&nest(30, "1")).is_ok());
        assert_eq!(p(&nest(32, "")).unwrap_err().kind, JsonErrorKind::TooDeep);
        assert_eq!(p(&nest(31, "1")).unwrap_err().kind, JsonErrorKind::TooDeep);
        // Far deeper input fails without recursing further.
        let huge = format!("{{\"a\":{}", "[".repeat(100_000));
        assert_eq!(p(&huge).unwrap_err().kind, JsonErrorKind::TooDeep);
    }

    #[test]
    fn strings() {
        let o = obj(r#"{"a":"\ud83d\ude00","b":"\ud800x","c":"\udc00","d":"\u0000z","e":"\/"}"#);
        assert_eq!(o.get("a").unwrap().as_str_bytes().unwrap(), "😀".as_bytes());
        assert_eq!(
            o.get("b").unwrap().as_str_bytes().unwrap(),
            "\u{fffd}x".as_bytes()
        );
        assert_eq!(
            o.get("c").unwrap().as_str_bytes().unwrap(),
            "\u{fffd}".as_bytes()
        );
        assert_eq!(o.get("d").unwrap().as_str_bytes().unwrap(), b"\0z");
        assert_eq!(o.get("d").unwrap().as_cstr().unwrap(), b"");
        assert_eq!(o.get("e").unwrap().as_str_bytes().unwrap(), b"/");
        // Raw bytes that are not UTF-8, raw control characters.
        let mut raw = b"{\"a\":\"\xff\t\"}".to_vec();
        raw.push(0);
        let (v, _) = parse(&raw).unwrap();
        assert_eq!(
            v.as_object()
                .unwrap()
                .get("a")
                .unwrap()
                .as_str_bytes()
                .unwrap(),
            b"\xff\t"
        );
        assert_eq!(
            p(r#"{"a":"\x"}"#).unwrap_err().kind,
            JsonErrorKind::BadString
        );
        assert_eq!(
            parse(b"{\"a\":\"x\0\"}").unwrap_err().kind,
            JsonErrorKind::UnexpectedNul
        );
    }

    #[test]
    fn numbers() {
        let o = obj(
            r#"{"a":-0,"b":18446744073709551615,"c":99999999999999999999,"d":1e+,"e":1.5,"f":-99999999999999999999}"#,
        );
        assert_eq!(o.get("a"), Some(&JVal::Int(0)));
        assert_eq!(o.get("b"), Some(&JVal::UInt(u64::MAX)));
        assert_eq!(o.get("c"), Some(&JVal::UInt(u64::MAX)));
        assert_eq!(
            o.get("d"),
            Some(&JVal::Double {
                value: 1.0,
                text: Some("1".into())
            })
        );
        assert_eq!(
            o.get("e"),
            Some(&JVal::Double {
                value: 1.5,
                text: Some("1.5".into())
            })
        );
        assert_eq!(o.get("f"), Some(&JVal::Int(i64::MIN)));
        for bad in [
            r#"{"a":+1}"#,
            r#"{"a":1x}"#,
            r#"{"a":-}"#,
            r#"{"a":1.2.3}"#,
            r#"{"a":--1}"#,
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert!(p(r#"{"a":1.}"#).is_ok());
        assert!(p(r#"{"a":-.5}"#).is_ok());
    }

    #[test]
    fn literals_need_exact_words() {
        assert!(p(r#"{"a":tru}"#).is_err());
        assert!(p(r#"{"a":nul}"#).is_err());
        assert!(p(r#"{"a":truex}"#).is_err());
        assert!(p(r#"{"a":Infinit}"#).is_err());
    }

    #[test]
    fn truncated_and_trailing() {
        assert_eq!(
            parse(b"{\"a\":1").unwrap_err().kind,
            JsonErrorKind::Truncated
        );
        assert_eq!(parse(b"{\"a\":1}").unwrap().1, 7);
        assert_eq!(parse(b"{} x").unwrap().1, 3);
        assert_eq!(parse(b"{}/x").unwrap_err().kind, JsonErrorKind::BadComment);
    }

    #[test]
    fn accessors_follow_json_c() {
        assert_eq!(JVal::Str(b" 12abc".to_vec()).get_int64(), 12);
        assert_eq!(JVal::Str(b"x".to_vec()).get_int64(), 0);
        assert_eq!(JVal::Int(1 << 40).get_int(), i32::MAX);
        assert_eq!(JVal::Int(-(1 << 40)).get_int(), i32::MIN);
        assert_eq!(JVal::UInt(u64::MAX).get_int64(), i64::MAX);
        assert_eq!(JVal::Bool(true).get_int(), 1);
        assert_eq!(strtoull_whole(b"+12"), Some(12));
        assert_eq!(strtoull_whole(b" 12"), Some(12));
        assert_eq!(strtoull_whole(b"-1"), Some(u64::MAX));
        assert_eq!(strtoull_whole(b"12 "), None);
        assert_eq!(strtoull_whole(b"18446744073709551616"), None);
    }

    #[test]
    fn plain_serialization() {
        let src = r#"{ "a" : [ 1 , "x/\"\u0001\n" ], "b":1.50, "c":null,"d":{} }"#;
        let (v, _) = p(src).unwrap();
        let out = v.to_plain_bytes();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[1,"x/\"\u0001\n"],"b":1.50,"c":null,"d":{}}"#
        );
        assert_eq!(v.plain_len(), v.to_plain_bytes().len() as u64);
    }
}
