//! Reading a manifest file's text: its YAML documents, each into the object of a kind we
//! read (other kinds are skipped). The folder around it is the sources' business.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::yaml::{self, Reader, Shipped};
use crate::{Kind, Object};
use serde_json::Value;

/// A file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// One YAML document of a file.
struct Document<'a> {
    /// Its first line (1-based).
    start: usize,
    text: Cow<'a, str>,
    /// Its kind when its `apiVersion:` and `kind:` lines say it plainly (see [`Sniff`]).
    kind: Option<Option<Kind>>,
}

fn is_separator(line: &str) -> bool {
    // The first byte alone rules out nearly every line.
    line.starts_with('-')
        && (line == "---" || line.starts_with("--- ") || line.starts_with("---\t"))
}

/// Splits a multi-document YAML text at `---` lines. One pass over the lines, which also
/// sniffs each document's kind; the documents borrow from `text`.
fn documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut begin, mut start) = (0, 1);
    let mut sniff = Sniff::default();
    // A document end marker (`...`) is left out of its document: rare, so that one is copied.
    let mut marked = false;
    fn document<'a>(start: usize, text: &'a str, sniff: &Sniff<'_>, marked: bool) -> Document<'a> {
        let text = if marked {
            let lines = text.lines().filter(|l| *l != "...");
            Cow::Owned(lines.flat_map(|l| [l, "\n"]).collect())
        } else {
            Cow::Borrowed(text)
        };
        let kind = sniff.kind();
        Document { start, text, kind }
    }
    // Only lines starting with `-`, `.`, `a` or `k` can matter here: the rest are skipped
    // on their first byte (SIMD search for the line ends).
    let bytes = text.as_bytes();
    let mut at = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).map(Some).chain([None]);
    for (i, newline) in ends.enumerate() {
        let (end, next) = newline.map_or((bytes.len(), bytes.len()), |n| (n, n + 1));
        if matches!(bytes.get(at), Some(b'-' | b'.' | b'a' | b'k')) {
            let line = &text[at..end];
            let line = line.strip_suffix('\r').unwrap_or(line);
            if is_separator(line) {
                let (sniffed, was_marked) =
                    (std::mem::take(&mut sniff), std::mem::take(&mut marked));
                docs.push(document(start, &text[begin..at], &sniffed, was_marked));
                begin = next;
                start = i + 2;
            } else if line == "..." {
                marked = true;
            } else {
                sniff.line(line);
            }
        }
        at = next;
    }
    docs.push(document(start, &text[begin..], &sniff, marked));
    docs
}

/// Whether a file is a manifest by its name: `*.yaml`, `*.yml` or `*.json`.
pub fn is_manifest(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
}

/// Parses a file into the objects of the kinds we read; other kinds are skipped quietly.
/// A `*.json` file holds one object or a `List`; any other is YAML, of one or more
/// documents (each may be a `List` too).
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Object>, FileError> {
    if path.extension().is_some_and(|e| e == "json") {
        return parse_json(path, text);
    }
    parse_file_with(path, text, &Shipped)
}

/// A JSON manifest: one object or a `List` of them (what `kubectl get -o json` and kn's
/// `--target file.json` write).
fn parse_json(path: &Path, text: &str) -> Result<Vec<Object>, FileError> {
    let err = |line: Option<usize>, message: String| FileError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| err(Some(e.line()), e.to_string()))?;
    let mut out = Vec::new();
    from_value(value, &mut out).map_err(|m| err(None, m))?;
    Ok(out)
}

/// The objects of the kinds we read in one parsed object or `List` (others are skipped).
fn from_value(value: Value, out: &mut Vec<Object>) -> Result<(), String> {
    let field = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    if field(&value, "kind") == "List" {
        let Value::Object(mut list) = value else {
            return Ok(());
        };
        return match list.remove("items") {
            Some(Value::Array(items)) => items.into_iter().try_for_each(|i| from_value(i, out)),
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err("List: items: not a list".into()),
        };
    }
    let Some(kind) = Kind::from_api(&field(&value, "apiVersion"), &field(&value, "kind")) else {
        return Ok(());
    };
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    out.push(Object::decode_value(kind, value).map_err(|m| format!("{kind} {name}: {m}"))?);
    Ok(())
}

/// [`parse_file`] with another YAML reader (the benchmarks compare readers).
pub fn parse_file_with(
    path: &Path,
    text: &str,
    reader: &impl Reader,
) -> Result<Vec<Object>, FileError> {
    let mut out = Vec::new();
    let err = |line: Option<usize>, message: String| FileError {
        path: path.to_path_buf(),
        line,
        message,
    };
    for Document {
        start,
        text: doc,
        kind: sniffed,
    } in documents(text)
    {
        // Usually `apiVersion` and `kind` are plain top-level lines: then the document is
        // parsed once, straight into its type. Otherwise (or for kinds we do not read, to
        // report broken YAML all the same) it is parsed generically first.
        let kind = match sniffed {
            Some(Some(kind)) => kind,
            _ => {
                let value: Value = reader
                    .read(&doc)
                    .map_err(|e| err(Some(start + e.line.unwrap_or(1) - 1), e.message))?;
                if value.is_null() {
                    continue;
                }
                let field = |f: &str| value.get(f).and_then(|v| v.as_str()).unwrap_or("");
                if field("kind") == "List" {
                    from_value(value, &mut out).map_err(|m| err(Some(start), m))?;
                    continue;
                }
                match Kind::from_api(field("apiVersion"), field("kind")) {
                    Some(kind) => kind,
                    None => continue,
                }
            }
        };
        let obj = match Object::decode_yaml_with(kind, &doc, reader) {
            Ok(obj) => obj,
            Err(yaml::Error { line, message }) => {
                // Broken YAML is reported as such; otherwise the object and the field.
                let value: Value = reader
                    .read(&doc)
                    .map_err(|e| err(Some(start + e.line.unwrap_or(1) - 1), e.message))?;
                let name = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("<unnamed>");
                return Err(err(
                    Some(start + line.unwrap_or(1) - 1),
                    format!("{kind} {name}: {message}"),
                ));
            }
        };
        out.push(obj);
    }
    Ok(out)
}

/// The kind of a document from its top-level `apiVersion:` and `kind:` lines, fed one line
/// at a time (see [`Sniff::kind`]).
#[derive(Default)]
struct Sniff<'a> {
    api_version: Option<&'a str>,
    kind: Option<&'a str>,
    /// A line that is not in the simple form, or said twice.
    unclear: bool,
}

impl<'a> Sniff<'a> {
    fn line(&mut self, line: &'a str) {
        if !line.starts_with(['a', 'k']) {
            return; // nearly every line
        }
        let (slot, v) = if let Some(v) = line.strip_prefix("apiVersion:") {
            (&mut self.api_version, v)
        } else if let Some(v) = line.strip_prefix("kind:") {
            (&mut self.kind, v)
        } else {
            return;
        };
        let v = match v.split_once(" #") {
            Some((v, _)) => v,
            None => v,
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        if v.is_empty()
            || slot.is_some()
            || v.contains(['"', '\'', '\\', '{', '[', '&', '*', '!', '|', '>'])
        {
            self.unclear = true;
        }
        *slot = Some(v);
    }

    /// When both lines are there as plain or quoted scalars: `Some(None)` for a kind we do
    /// not read; `None` when they are not there in that simple form.
    fn kind(&self) -> Option<Option<Kind>> {
        if self.unclear {
            return None;
        }
        Some(Kind::from_api(self.api_version?, self.kind?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: r\nspec:\n  traffic:\n  - revisionName: a\n    percent: 100\n";

    #[test]
    fn documents_split_alike_with_crlf_or_end_markers() {
        let dm = "apiVersion: serving.knative.dev/v1beta1\nkind: DomainMapping\nmetadata:\n  name: d.example.com\nspec:\n  ref:\n    name: r\n";
        let plain = format!("{ROUTE}---\n{dm}");
        let crlf = plain.replace('\n', "\r\n");
        let marked = format!("{ROUTE}...\n---\n{dm}...\n");
        let expected = parse_file(Path::new("a.yaml"), &plain).unwrap();
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[1].kind(), Kind::DomainMapping);
        for text in [&crlf, &marked] {
            assert_eq!(parse_file(Path::new("a.yaml"), text).unwrap(), expected);
        }
        let docs = documents(&plain);
        assert_eq!(docs.len(), 2);
        assert!(matches!(docs[0].text, Cow::Borrowed(_)), "no copy");
        // Only a document with an end marker is copied (without it).
        let one_marked = format!("{ROUTE}---\n{dm}...\n");
        let one = documents(&one_marked);
        assert!(matches!(one[0].text, Cow::Borrowed(_)));
        assert_eq!(one[1].text, dm);
        assert_eq!(docs[1].start, 10);
        assert_eq!(docs[1].kind, Some(Some(Kind::DomainMapping)));
        // Said twice, or not plainly: the generic parse decides.
        let twice = format!("kind: Route\n{ROUTE}");
        assert_eq!(documents(&twice)[0].kind, None);
        assert_eq!(documents("kind: [Route]\n")[0].kind, None);
        // The same line numbers either way: the unclosed bracket's.
        let broken = format!("{ROUTE}---\n{dm}---\nmetadata: [\n");
        let e1 = parse_file(Path::new("b.yaml"), &broken).unwrap_err();
        let e2 = parse_file(Path::new("b.yaml"), &broken.replace('\n', "\r\n")).unwrap_err();
        assert_eq!((e1.line, e2.line), (Some(18), Some(18)), "{e1} / {e2}");
        assert!(e1.message.contains("unclosed bracket"), "{e1}");
    }

    /// JSON manifests (kn's `--target x.json`, `kubectl get -o json`): one object or a
    /// `List`; a YAML `List` too; errors name the object and the field.
    #[test]
    fn json_files_and_lists_are_read() {
        let svc = r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "creationTimestamp": null},
            "spec": {"template": {"metadata": {"name": "s-1"}}}}"#;
        let one = parse_file(Path::new("a.json"), svc).unwrap();
        assert_eq!(one.len(), 1);
        let Object::KService(k) = &one[0] else {
            panic!("{one:?}")
        };
        assert_eq!(k.spec.template.metadata.name.as_deref(), Some("s-1"));
        let list = format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [{svc},
            {{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "d"}}}},
            {{"apiVersion": "serving.knative.dev/v1", "kind": "Route", "metadata": {{"name": "r"}}}}]}}"#
        );
        let objs = parse_file(Path::new("l.json"), &list).unwrap();
        let kinds: Vec<Kind> = objs.iter().map(Object::kind).collect();
        assert_eq!(kinds, [Kind::KService, Kind::Route]);
        // The same List as YAML (JSON is YAML) reads the same.
        assert_eq!(parse_file(Path::new("l.yaml"), &list).unwrap(), objs);

        let bad = r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Route",
            "metadata": {"name": "r"}, "spec": {"traffic": [{"percent": "x"}]}}"#;
        let e = parse_file(Path::new("b.json"), bad).unwrap_err();
        assert!(
            e.message.contains("Route r") && e.message.contains("spec.traffic[0].percent"),
            "{e}"
        );
        let e = parse_file(Path::new("b.json"), "{\n  \"kind\": [\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }
}
