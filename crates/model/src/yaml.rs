//! Reading one YAML document into a type: a fast path for the YAML manifests are nearly
//! always written in, and serde-saphyr for everything else.
//!
//! The fast path reads block mappings and sequences of plain or quoted scalars, flow
//! sequences of scalars and comments, and gives up on anything else (anchors, tags, block
//! scalars, multi-line scalars, flow mappings, values whose type YAML resolves in ways not
//! copied here, and any type error). Giving up is not an error: the document is then read by
//! serde-saphyr, so results and error messages are serde-saphyr's. Where the fast path
//! answers, it answers what serde-saphyr would (the tests compare the two). It exists because
//! a general YAML parser is several times slower on manifests, and parsing is most of a cold
//! start (docs/performance.md has the comparison and the command that measures it).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use smallvec::SmallVec;

/// A document that could not be read into its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// 1-based, within the document, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How documents are read into types: [`Shipped`] everywhere; the benchmarks compare
/// other readers through the same file parsing.
pub trait Reader {
    fn read<T: DeserializeOwned>(&self, text: &str) -> Result<T, Error>;
}

/// The fast path, else serde-saphyr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shipped;

impl Reader for Shipped {
    fn read<T: DeserializeOwned>(&self, text: &str) -> Result<T, Error> {
        from_str(text)
    }
}

/// Reads `text` as one YAML document into `T`: the fast path, else serde-saphyr.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    match fast(text) {
        Some(v) => Ok(v),
        None => full(text),
    }
}

/// serde-saphyr's options, set to read what Kubernetes reads: YAML 1.2 booleans only (`yes`
/// and `on` stay strings), numbers with leading zeros or underscores stay strings where the
/// type is open (an `IntOrString` port), a blank value read into a string is `""`, and
/// errors on one line.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        null_as_string: true,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// Reads `text` with serde-saphyr alone (the fast path's fallback and oracle).
pub fn full<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    if let Ok(v) = serde_saphyr::from_str_with_options::<T>(text, options()) {
        return Ok(v);
    }
    // Kubernetes reads a key with nothing after it (`spec:`) as absent; serde-saphyr refuses
    // it where a struct, list or map is expected. Read again with such keys dropped (rare:
    // only on an error); if that does not help, the first error stands.
    if let Ok(mut v) = serde_saphyr::from_str_with_options::<serde_json::Value>(text, options()) {
        if drop_nulls(&mut v) {
            if let Ok(t) = serde_json::from_value(v) {
                return Ok(t);
            }
        }
    }
    Err(explain::<T>(text))
}

/// The error reading `text` into `T`, read again to name the field (`spec.ports[0].port`);
/// its line is the document's, so the location serde-saphyr appends to its message is left
/// out but for the column.
fn explain<T: DeserializeOwned>(text: &str) -> Error {
    let mut path = None;
    let e = match serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    }) {
        Ok(_) => {
            return Error {
                line: None,
                message: "unreadable YAML".into(),
            }
        }
        Err(e) => e,
    };
    let location = e.location();
    let mut message = e.to_string();
    if let Some(l) = location {
        if let Some(head) =
            message.strip_suffix(&format!(" at line {}, column {}", l.line(), l.column()))
        {
            message = format!("{head} (column {})", l.column());
        }
    }
    // `?` stands for a key serde could not name (a duplicate key's).
    if let Some(path) = path
        .map(|p| p.trim_end_matches(".?").to_owned())
        .filter(|p| p != "." && p != "?")
    {
        message = format!("{path}: {message}");
    }
    Error {
        line: location.map(|l| l.line() as usize),
        message,
    }
}

/// Drops the mapping entries whose value is null, at any depth; whether any were.
fn drop_nulls(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => {
            let before = m.len();
            m.retain(|_, v| !v.is_null());
            let mut dropped = m.len() != before;
            for v in m.values_mut() {
                dropped |= drop_nulls(v);
            }
            dropped
        }
        serde_json::Value::Array(a) => a.iter_mut().fold(false, |d, v| drop_nulls(v) | d),
        _ => false,
    }
}

/// Parses `text` as one YAML document into `T` on the fast path, or `None` when the
/// document is outside the subset this reads (or does not fit `T`): then use [`full`].
///
/// The document is deserialized as it is read, without building a tree of it first: block
/// mappings and sequences are walked line by line as `T` asks for their entries, so the
/// objects' own fields are nearly all it allocates.
pub fn fast<T: DeserializeOwned>(text: &str) -> Option<T> {
    let mut p = Parser {
        lines: lines(text)?,
        pos: 0,
    };
    let first = p.lines.first()?.indent;
    let value = T::deserialize(Value {
        p: &mut p,
        val: Val::Block(first),
    })
    .ok()?;
    // Whatever `T` did not read would be a value this did not check.
    (p.pos == p.lines.len()).then_some(value)
}

/// An inline value (on its key's or `-`'s line); scalars borrow from the text unless they
/// had escapes.
#[derive(Debug, PartialEq)]
enum Node<'a> {
    /// A key or `-` with nothing after it (YAML's empty plain scalar).
    Empty,
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
    },
    /// A flow sequence of scalars.
    Seq(Vec<Node<'a>>),
    /// `{}`.
    EmptyMap,
}

/// Outside the subset.
#[derive(Debug)]
struct GiveUp;

type R<T> = Result<T, GiveUp>;

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The document's lines that hold something, or `None` when one is outside the subset.
fn lines(text: &str) -> Option<Vec<Line<'_>>> {
    let bytes = text.as_bytes();
    // One SIMD scan finds every line end (LF or CRLF), and any tab or other CR (outside the
    // subset).
    let mut lines = Vec::new();
    let mut begin = 0;
    for end in memchr::memchr3_iter(b'\n', b'\t', b'\r', bytes).chain([bytes.len()]) {
        if end < begin {
            continue; // the LF of a CRLF
        }
        let next = match bytes.get(end) {
            None | Some(b'\n') => end + 1,
            Some(b'\r') if bytes.get(end + 1) == Some(&b'\n') => end + 2,
            Some(_) => return None,
        };
        let raw = &text[begin..end];
        begin = next;
        let text = raw.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if raw.starts_with(['-', '.', '%', '\u{feff}'])
            && (raw.starts_with("---")
                || raw.starts_with("...")
                || raw.starts_with('%')
                || raw.starts_with('\u{feff}'))
        {
            return None;
        }
        lines.push(Line {
            indent: raw.len() - text.len(),
            text: text.trim_end_matches(' '),
        });
    }
    Some(lines)
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
}

/// A value yet to be read: inline (already read), or the block whose first line is at
/// this indent (read as it is deserialized).
enum Val<'a> {
    Inline(Node<'a>),
    Block(usize),
}

fn is_seq_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    /// Whether the block at `indent`, starting at the current line, is a sequence (else a
    /// mapping).
    fn block_is_seq(&self, indent: usize) -> R<bool> {
        let line = self.peek().ok_or(GiveUp)?;
        if line.indent != indent {
            return Err(GiveUp);
        }
        Ok(is_seq_entry(line.text))
    }

    /// How many items the sequence at `indent` starting at the current line has: the
    /// `size_hint` that lets a `Vec` be allocated at its final size, not grown (and left
    /// with up to 3 spare items, in every sequence of every object a cold start keeps).
    fn seq_len(&self, indent: usize) -> usize {
        self.lines[self.pos..]
            .iter()
            .take_while(|l| l.indent > indent || (l.indent == indent && is_seq_entry(l.text)))
            .filter(|l| l.indent == indent)
            .count()
    }

    /// The value of a key or `-` with nothing after it: a nested block, or empty.
    fn child(&self, indent: usize, seq_at_same_indent: bool) -> Val<'a> {
        match self.peek() {
            Some(l) if l.indent > indent => Val::Block(l.indent),
            Some(l) if seq_at_same_indent && l.indent == indent && is_seq_entry(l.text) => {
                Val::Block(indent)
            }
            _ => Val::Inline(Node::Empty),
        }
    }

    /// After an inline value nothing may be nested (that would be a multi-line scalar).
    fn no_continuation(&self, indent: usize) -> R<()> {
        match self.peek() {
            Some(l) if l.indent > indent => Err(GiveUp),
            _ => Ok(()),
        }
    }

    /// The next entry of the mapping at `indent`: its key and value, or `None` at its end.
    fn map_entry(&mut self, indent: usize) -> R<Option<(Cow<'a, str>, Val<'a>)>> {
        let Some(line) = self.peek() else {
            return Ok(None);
        };
        if line.indent != indent || is_seq_entry(line.text) {
            return Ok(None);
        }
        let (key, rest) = split_key(line.text)?.ok_or(GiveUp)?;
        self.pos += 1;
        let value = if rest.is_empty() {
            self.child(indent, true)
        } else {
            let v = inline(rest)?;
            self.no_continuation(indent)?;
            Val::Inline(v)
        };
        Ok(Some((key, value)))
    }

    /// The next item of the sequence at `indent`, or `None` at its end.
    fn seq_item(&mut self, indent: usize) -> R<Option<Val<'a>>> {
        let Some(line) = self.peek() else {
            return Ok(None);
        };
        if line.indent != indent || !is_seq_entry(line.text) {
            return Ok(None);
        }
        let after = &line.text[1..];
        let rest = after.trim_start_matches(' ');
        Ok(Some(if rest.is_empty() || rest.starts_with('#') {
            self.pos += 1;
            self.child(indent, false)
        } else if is_seq_entry(rest) || split_key(rest)?.is_some() {
            // `- key: v` or `- - v`: the rest of the line opens a block at its column.
            let column = indent + 1 + (after.len() - rest.len());
            self.lines[self.pos] = Line {
                indent: column,
                text: rest,
            };
            Val::Block(column)
        } else {
            self.pos += 1;
            let v = inline(rest)?;
            self.no_continuation(indent)?;
            Val::Inline(v)
        }))
    }
}

/// `key: rest` (or `key:`): the key and the value text after it; `None` when the line is
/// not a mapping entry.
fn split_key(text: &str) -> R<Option<(Cow<'_, str>, &str)>> {
    let (key, after) = if text.starts_with(['"', '\'']) {
        let (key, after) = quoted(text)?;
        match after.trim_start_matches(' ').strip_prefix(':') {
            Some(a) => (key, a),
            None => return Ok(None),
        }
    } else {
        let bytes = text.as_bytes();
        // Keys are short: a plain loop beats a SIMD search's set-up.
        let Some(colon) = bytes.iter().position(|&b| b == b':') else {
            // Not a mapping entry (unless a comment hides one).
            return if find_pair(text, b" #").is_some() {
                Err(GiveUp)
            } else {
                Ok(None)
            };
        };
        // The first colon ends the key: one inside a key (`a:b: 1`, a URL) is outside the
        // subset.
        if bytes.get(colon + 1).is_some_and(|&b| b != b' ') {
            return Err(GiveUp);
        }
        let key = text[..colon].trim_end_matches(' ');
        if key.is_empty() || key.starts_with(INDICATORS) || find_pair(key, b" #").is_some() {
            return Err(GiveUp);
        }
        (Cow::Borrowed(key), &text[colon + 1..])
    };
    if !(after.is_empty() || after.starts_with(' ')) {
        return Err(GiveUp);
    }
    let rest = after.trim_start_matches(' ');
    let rest = if rest.starts_with('#') { "" } else { rest };
    Ok(Some((key, rest)))
}

/// Where `pair` (two ASCII bytes, so a char boundary) starts in `s`. A plain byte loop: the
/// texts are a line or less, where std's substring search costs more than it saves.
fn find_pair(s: &str, pair: &[u8; 2]) -> Option<usize> {
    s.as_bytes()
        .windows(2)
        .position(|w| w[0] == pair[0] && w[1] == pair[1])
}

/// Characters that start something other than a plain scalar.
const INDICATORS: [char; 17] = [
    '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '%', '@', '`',
];

/// An inline value: a quoted or plain scalar, a flow sequence of scalars, or `{}`.
fn inline(text: &str) -> R<Node<'_>> {
    if text.starts_with(['"', '\'']) {
        let (s, after) = quoted(text)?;
        end_of_value(after)?;
        return Ok(Node::Scalar {
            text: s,
            plain: false,
        });
    }
    if let Some(body) = text.strip_prefix('[') {
        return flow_seq(body);
    }
    if let Some(body) = text.strip_prefix('{') {
        let after = body
            .trim_start_matches(' ')
            .strip_prefix('}')
            .ok_or(GiveUp)?;
        end_of_value(after)?;
        return Ok(Node::EmptyMap);
    }
    plain(text)
}

/// A plain scalar, up to a comment: one scan for both `: ` (outside the subset) and ` #`.
fn plain(text: &str) -> R<Node<'_>> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    for i in memchr::memchr2_iter(b':', b'#', bytes) {
        if bytes[i] == b'#' {
            if i > 0 && bytes[i - 1] == b' ' {
                end = i;
                break;
            }
        } else if bytes.get(i + 1).is_none_or(|&b| b == b' ') {
            return Err(GiveUp); // `a: b`, or a value ending in `:`
        }
    }
    let value = text[..end].trim_end_matches(' ');
    if value.is_empty() || value.starts_with(INDICATORS) {
        return Err(GiveUp);
    }
    Ok(Node::Scalar {
        text: Cow::Borrowed(value),
        plain: true,
    })
}

/// Only spaces or a comment may follow a complete value.
fn end_of_value(after: &str) -> R<()> {
    let trimmed = after.trim_start_matches(' ');
    // A comment needs a space before it.
    if trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < after.len()) {
        Ok(())
    } else {
        Err(GiveUp)
    }
}

/// `[a, "b", 'c']` on one line.
fn flow_seq(mut body: &str) -> R<Node<'_>> {
    let mut items = Vec::new();
    loop {
        body = body.trim_start_matches(' ');
        if let Some(after) = body.strip_prefix(']') {
            end_of_value(after)?;
            return Ok(Node::Seq(items));
        }
        let rest = if body.starts_with(['"', '\'']) {
            let (s, after) = quoted(body)?;
            items.push(Node::Scalar {
                text: s,
                plain: false,
            });
            after.trim_start_matches(' ')
        } else {
            let end = body.find([',', ']']).ok_or(GiveUp)?;
            let value = body[..end].trim_end_matches(' ');
            if value.contains(['[', '{', '}', '"', '\'', '#', ':']) {
                return Err(GiveUp);
            }
            items.push(plain(value)?);
            &body[end..]
        };
        body = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.starts_with(']') => rest,
            None => return Err(GiveUp),
        };
    }
}

/// A quoted scalar at the start of `text` (one line): its value and the text after it.
fn quoted(text: &str) -> R<(Cow<'_, str>, &str)> {
    let q = text.as_bytes()[0];
    let body = &text[1..];
    if q == b'\'' {
        // `''` is a quote; nothing else is special.
        let mut out: Option<String> = None;
        let mut start = 0;
        let mut rest = body;
        while let Some(i) = rest.find('\'') {
            let at = body.len() - rest.len() + i;
            if body[at + 1..].starts_with('\'') {
                let s = out.get_or_insert_with(String::new);
                s.push_str(&body[start..=at]);
                start = at + 2;
                rest = &body[start..];
                continue;
            }
            let value = match out {
                Some(mut s) => {
                    s.push_str(&body[start..at]);
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(&body[..at]),
            };
            return Ok((value, &body[at + 1..]));
        }
        return Err(GiveUp);
    }
    let mut out: Option<String> = None;
    let mut start = 0;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = match out {
                    Some(mut s) => {
                        s.push_str(&body[start..i]);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(&body[..i]),
                };
                return Ok((value, &body[i + 1..]));
            }
            '\\' => {
                let s = out.get_or_insert_with(String::new);
                s.push_str(&body[start..i]);
                let escaped = match chars.next().ok_or(GiveUp)?.1 {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    _ => return Err(GiveUp),
                };
                s.push(escaped);
                start = i + 2;
            }
            _ => {}
        }
    }
    Err(GiveUp)
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outside the fast YAML subset")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> GiveUp {
        GiveUp
    }
}

/// Plain scalars YAML reads as null.
fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// Plain scalars whose YAML type this does not resolve (booleans other than `true`/`false`,
/// numbers other than plain decimal integers): these give up.
fn is_unsure(s: &str) -> bool {
    let decimal = s.strip_prefix('-').unwrap_or(s);
    let digits = !decimal.is_empty() && decimal.bytes().all(|b| b.is_ascii_digit());
    if digits {
        return decimal.len() > 1 && decimal.starts_with('0');
    }
    s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        || ["true", "false", "yes", "no", "on", "off", "y", "n"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w))
            && !matches!(s, "true" | "false")
}

struct De<'n, 'a>(&'n Node<'a>);

impl<'n, 'a> De<'n, 'a> {
    fn plain(&self) -> R<&'n str> {
        match self.0 {
            Node::Scalar { text, plain: true } if !is_unsure(text) => Ok(text),
            _ => Err(GiveUp),
        }
    }
}

macro_rules! ints {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            let s = self.plain()?;
            if s.starts_with('-') {
                v.visit_i64(s.parse::<i64>().map_err(|_| GiveUp)?)
            } else {
                v.visit_u64(s.parse::<u64>().map_err(|_| GiveUp)?)
            }
        }
    )*};
}

macro_rules! give_up {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, _: V) -> R<V::Value> {
            Err(GiveUp)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::Empty => v.visit_unit(),
            Node::Scalar { text, plain: false } => v.visit_str(text),
            Node::Scalar { text, plain: true } => {
                if is_null(text) {
                    v.visit_unit()
                } else if text == "true" || text == "false" {
                    v.visit_bool(text == "true")
                } else if is_unsure(text) {
                    Err(GiveUp)
                } else if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    self.deserialize_i64(v)
                } else {
                    v.visit_str(text)
                }
            }
            Node::Seq(items) => v.visit_seq(Seq(items.iter())),
            Node::EmptyMap => v.visit_map(EmptyMap),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::Empty => v.visit_none(),
            Node::Scalar { text, plain: true } if is_null(text) => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::Scalar { text, .. } => v.visit_str(text),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        self.deserialize_str(v)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.plain()? {
            "true" => v.visit_bool(true),
            "false" => v.visit_bool(false),
            _ => Err(GiveUp),
        }
    }

    ints!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
          deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    give_up!(deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
             deserialize_byte_buf);

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::Empty => v.visit_unit(),
            Node::Scalar { text, plain: true } if is_null(text) => v.visit_unit(),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::Seq(items) => v.visit_seq(Seq(items.iter())),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> R<V::Value> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> R<V::Value> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.0 {
            Node::EmptyMap => v.visit_map(EmptyMap),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> R<V::Value> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> R<V::Value> {
        Err(GiveUp)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        v.visit_unit()
    }
}

struct Seq<'n, 'a>(std::slice::Iter<'n, Node<'a>>);

impl<'de> de::SeqAccess<'de> for Seq<'_, '_> {
    type Error = GiveUp;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
        self.0.next().map(|n| seed.deserialize(De(n))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The entries of `{}`.
struct EmptyMap;

impl<'de> de::MapAccess<'de> for EmptyMap {
    type Error = GiveUp;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, _: K) -> R<Option<K::Value>> {
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, _: V) -> R<V::Value> {
        Err(GiveUp)
    }
}

/// A value of the document being read: inline values go to [`De`]; blocks are read from
/// the parser as the visitor asks for their entries.
struct Value<'p, 'a> {
    p: &'p mut Parser<'a>,
    val: Val<'a>,
}

/// Scalars: an inline value answers as [`De`] does; a block is not one.
macro_rules! inline_only {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            match self.val {
                Val::Inline(n) => De(&n).$m(v),
                Val::Block(_) => Err(GiveUp),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Value<'_, '_> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.val {
            Val::Inline(n) => De(&n).deserialize_any(v),
            Val::Block(indent) => {
                if self.p.block_is_seq(indent)? {
                    v.visit_seq(SeqStream::new(self.p, indent))
                } else {
                    v.visit_map(MapStream::new(self.p, indent))
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.val {
            Val::Inline(n) => De(&n).deserialize_option(v),
            Val::Block(_) => v.visit_some(self),
        }
    }

    inline_only!(deserialize_str deserialize_string deserialize_identifier deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit);

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> R<V::Value> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.val {
            Val::Inline(n) => De(&n).deserialize_seq(v),
            Val::Block(indent) if self.p.block_is_seq(indent)? => {
                v.visit_seq(SeqStream::new(self.p, indent))
            }
            Val::Block(_) => Err(GiveUp),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> R<V::Value> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> R<V::Value> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.val {
            Val::Inline(n) => De(&n).deserialize_map(v),
            Val::Block(indent) if !self.p.block_is_seq(indent)? => {
                v.visit_map(MapStream::new(self.p, indent))
            }
            Val::Block(_) => Err(GiveUp),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> R<V::Value> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> R<V::Value> {
        Err(GiveUp)
    }

    /// A block is still read through (and checked), entry by entry, into nothing: `v` is
    /// serde's `IgnoredAny`, which takes any map or sequence and asks the same of each value.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.val {
            Val::Inline(_) => v.visit_unit(),
            Val::Block(_) => self.deserialize_any(v),
        }
    }
}

struct SeqStream<'p, 'a> {
    p: &'p mut Parser<'a>,
    indent: usize,
    /// Items not read yet.
    left: usize,
}

impl<'p, 'a> SeqStream<'p, 'a> {
    fn new(p: &'p mut Parser<'a>, indent: usize) -> SeqStream<'p, 'a> {
        let left = p.seq_len(indent);
        SeqStream { p, indent, left }
    }
}

impl<'de> de::SeqAccess<'de> for SeqStream<'_, '_> {
    type Error = GiveUp;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
        match self.p.seq_item(self.indent)? {
            Some(val) => {
                self.left = self.left.saturating_sub(1);
                seed.deserialize(Value { p: self.p, val }).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct MapStream<'p, 'a> {
    p: &'p mut Parser<'a>,
    indent: usize,
    /// The keys read so far: a repeated key gives up (serde-saphyr rejects it).
    keys: SmallVec<[Cow<'a, str>; 8]>,
    /// The value of the key just read.
    value: Option<Val<'a>>,
}

impl<'p, 'a> MapStream<'p, 'a> {
    fn new(p: &'p mut Parser<'a>, indent: usize) -> MapStream<'p, 'a> {
        MapStream {
            p,
            indent,
            keys: SmallVec::new(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapStream<'_, '_> {
    type Error = GiveUp;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        let Some((key, value)) = self.p.map_entry(self.indent)? else {
            return Ok(None);
        };
        if self.keys.contains(&key) {
            return Err(GiveUp);
        }
        self.value = Some(value);
        let k: de::value::StrDeserializer<'_, GiveUp> = key.as_ref().into_deserializer();
        let k = seed.deserialize(k)?;
        self.keys.push(key);
        Ok(Some(k))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> R<V::Value> {
        let val = self.value.take().ok_or(GiveUp)?;
        seed.deserialize(Value { p: self.p, val })
    }
}

#[cfg(test)]
mod tests {
    use super::{fast as from_str, full};
    use crate::objects::*;
    use crate::Kind;
    use serde_json::Value;

    /// Where the fast path answers, it answers what serde-saphyr does.
    fn agrees<T>(doc: &str) -> Option<T>
    where
        T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let fast = from_str::<T>(doc)?;
        let slow = full::<T>(doc)
            .unwrap_or_else(|e| panic!("fast path read what serde-saphyr rejects ({e}):\n{doc}"));
        assert_eq!(fast, slow, "for:\n{doc}");
        Some(fast)
    }

    /// Every document of every file a generated workload has, typed and untyped: the fast
    /// path takes each (or the cold start would not be faster) and agrees with serde-saphyr.
    #[test]
    fn generated_workload_takes_the_fast_path() {
        let w = workload::generate(80, 3);
        let mut kinds = std::collections::BTreeSet::new();
        for (path, text) in &w.files {
            for doc in text.split("\n---\n") {
                let v: Value = agrees(doc).unwrap_or_else(|| panic!("{path}: gave up on\n{doc}"));
                let field = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("");
                let kind = Kind::from_api(field("apiVersion"), field("kind"));
                kinds.insert(kind);
                let typed = match kind {
                    Some(Kind::KService) => agrees::<KService>(doc).map(drop),
                    Some(Kind::Revision) => agrees::<Revision>(doc).map(drop),
                    Some(Kind::Route) => agrees::<Route>(doc).map(drop),
                    Some(Kind::Configuration) => agrees::<Configuration>(doc).map(drop),
                    Some(Kind::Service) => agrees::<Service>(doc).map(drop),
                    Some(Kind::EndpointSlice) => agrees::<EndpointSlice>(doc).map(drop),
                    Some(Kind::DomainMapping) => agrees::<DomainMapping>(doc).map(drop),
                    _ => Some(()),
                };
                assert!(typed.is_some(), "{path}: typed gave up on\n{doc}");
            }
        }
        assert!(kinds.len() >= 5, "only {kinds:?}");
    }

    /// The repository's own manifests (examples, deploy, test fixtures): wherever the fast
    /// path answers, it agrees.
    #[test]
    fn repository_manifests_agree() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    out.push(p);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        for d in ["examples", "deploy", "tests/fixtures", "envoy"] {
            walk(&root.join(d), &mut files);
        }
        assert!(files.len() > 10, "{files:?}");
        let (mut fast, mut docs) = (0, 0);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in text.split("\n---\n") {
                docs += 1;
                if full::<Value>(doc).is_ok() && agrees::<Value>(doc).is_some() {
                    fast += 1;
                }
            }
        }
        // Most are in the subset (the rest use block scalars and the like).
        assert!(fast * 2 > docs, "{fast} of {docs}");
    }

    #[test]
    fn scalars_resolve_as_serde_saphyr_does_or_give_up() {
        let cases = [
            "a: 1",
            "a: -7",
            "a: 0",
            "a: 007",
            "a: 1.5",
            "a: 0x1f",
            "a: +3",
            "a: true",
            "a: True",
            "a: yes",
            "a: null",
            "a: ~",
            "a:",
            "a: ''",
            "a: \"\"",
            "a: \"say \\\"hi\\\"\\n\"",
            "a: 'it''s'",
            "a: 'x' # comment",
            "a: x#y",
            "a: x #y",
            "a: \"x\"#y",
            "a: [1, \"b\", 'c', d]",
            "a: []",
            "a: {}",
            "a: {b: 1}",
            "a: &x 1",
            "a: *x",
            "a: !!str 1",
            "a: |\n  text",
            "a: >\n  text",
            "a: b: c",
            "a: b\n  c",
            "\"a b\": 1",
            "'a': 1",
            "a:b: 1",
            "? a\n: 1",
            "a: 1\na: 2",
            "a:\n- 1\n- 2",
            "a:\n  - 1\n  -\n    b: 2",
            "- - 1\n  - 2\n- 3",
            "- a: 1\n  b: 2\n- c: 3",
            "a:\n  b:\n    c: d\n  e: f",
            "a:\n    b: 1\n  c: 2",
            "a:\n\tb: 1",
            "a: 1\r\nb: 2",
            "a: -\n",
            "a: - b",
            "# only a comment",
            "a: 18446744073709551616",
            "a: 9223372036854775808",
            "a: x:y",
            "a: x:",
            "a: x: #c",
            "a: x #c: d",
            "a:b",
            "a:b #c",
            "http://x: 1",
            "- http://x",
            "- a:b",
            "- a: b:c",
            "a: 1\rb: 2",
            "a: 1\r",
            "a: 1\r\n",
            "a:\r\n- 1\r\n- 'x' # c\r\n",
            "\u{feff}a: 1",
            "a: 1\n\u{feff}b: 2",
        ];
        for doc in cases {
            agrees::<Value>(doc);
        }
        // The common forms are in the subset.
        for doc in [
            "a: 1",
            "a: x#y",
            "a: 'it''s'",
            "a: [1, \"b\", 'c', d]",
            "a:\n- 1\n- 2",
            "- a: 1\n  b: 2\n- c: 3",
            "a: \"say \\\"hi\\\"\\n\"",
            "a: x:y",
            "a: x #c: d",
            "a: 1\r\nb: 2",
            "a:\r\n- 1\r\n- 'x' # c\r\n",
        ] {
            assert!(agrees::<Value>(doc).is_some(), "gave up on {doc:?}");
        }
        // What it does not copy, it leaves to serde-saphyr.
        for doc in [
            "a: 1.5",
            "a: True",
            "a: yes",
            "a: &x 1",
            "a: |\n  t",
            "a: b\n  c",
            "a: 007",
            "a: 1\na: 2",
            "a: x: #c",
            "a:b",
            "a: 1\rb: 2",
        ] {
            assert!(from_str::<Value>(doc).is_none(), "answered {doc:?}");
        }
    }

    /// A block sequence tells its length up front, so a `Vec` is allocated once at its size:
    /// grown instead, it keeps spare room for as long as the object lives.
    #[test]
    fn block_sequences_fill_vecs_exactly() {
        #[derive(serde::Deserialize)]
        struct Doc {
            a: Vec<Vec<u32>>,
            b: Vec<Service>,
        }
        let doc = "a:\n- - 1\n  - 2\n- - 3\n  - 4\n  - 5\n- [6]\n- []\n- - 7\nb:\n- metadata:\n    name: x\n  spec:\n    ports:\n    - port: 1\n    - port: 2\n- metadata:\n    name: y\n";
        let d: Doc = from_str(doc).expect("in the subset");
        assert_eq!(d.a, [vec![1, 2], vec![3, 4, 5], vec![6], vec![], vec![7]]);
        assert_eq!(d.a.capacity(), d.a.len());
        for v in &d.a {
            assert_eq!(v.capacity(), v.len(), "{v:?}");
        }
        assert_eq!(d.b.capacity(), 2);
        assert_eq!(d.b[0].spec.ports.len(), 2);
        assert_eq!(d.b[0].spec.ports.capacity(), 2);
    }

    #[test]
    fn typed_fields_agree_or_give_up() {
        let docs = [
            "metadata:\n  name: 123\n  namespace: default\nspec:\n  ports:\n  - port: 80\n    targetPort: http",
            "metadata:\n  name: a\nspec:\n  ports:\n  - port: \"80\"",
            "metadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n    name: null",
            "metadata:\n  name: a\n  labels:\n    x: 1\n    y: true\n    z: ''\nspec:\n  type: ExternalName\n  externalName: x.example.com",
            "metadata:\n  name: a\nspec:\n  ports: x",
            "metadata:\n  name: a\nspec:",
        ];
        for doc in docs {
            agrees::<Service>(doc);
        }
        for doc in [
            "endpoints:\n- addresses: [\"10.0.0.1\"]\n  conditions:\n    ready: false\nports:\n- port: 8012",
            "endpoints:\n- addresses:\n  - 10.0.0.1\n  conditions: {}\n",
            "endpoints:\n- addresses: [10.0.0.1]\n  conditions:\n    ready: yes\n",
        ] {
            agrees::<EndpointSlice>(doc);
        }
        assert!(
            from_str::<Service>("metadata:\n  name: a\nspec:\n  ports:\n  - port: \"80\"")
                .is_none()
        );
    }

    /// Kubernetes reads `key:` with nothing after it as absent, and so does this; errors
    /// name the field.
    #[test]
    fn blank_values_are_absent_and_errors_name_the_field() {
        let s: Service = full("metadata:\n  name: a\n  labels:\nspec:\n  ports:\n").unwrap();
        assert_eq!(&*s.metadata.name, "a");
        assert!(s.spec.ports.is_empty());
        let s: Service = full("metadata:\n  name: a\nspec:\n").unwrap();
        assert!(s.spec.ports.is_empty());
        let e =
            full::<Service>("metadata:\n  name: a\nspec:\n  ports:\n  - port: abc\n").unwrap_err();
        assert_eq!(e.line, Some(5));
        assert!(
            e.message.starts_with("spec.ports[0].port: "),
            "{}",
            e.message
        );
        assert!(!e.message.contains("line"), "{}", e.message);
        let e = full::<Service>("metadata:\n  name: a\n  name: b\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.message
                .starts_with("metadata: duplicate mapping key: name"),
            "{}",
            e.message
        );
    }
}
