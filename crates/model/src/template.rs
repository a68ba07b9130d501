//! The subset of Go's text/template that Knative's `domain-template` and `tag-template`
//! use: literal text, `{{.Field}}` and `{{index .Annotations "key"}}` / `.Labels`.
//! Anything else is refused with a message rather than guessed at.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    Index(String, String),
}

/// A parsed template; `Display` gives back its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Values a template may refer to.
#[derive(Debug, Default)]
pub struct TemplateData<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub domain: &'a str,
    pub tag: &'a str,
    pub annotations: Option<&'a super::StrMap>,
    pub labels: Option<&'a super::StrMap>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {source:?}"))?;
            let action = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            parts.push(parse_action(action).map_err(|e| format!("{e} in template {source:?}"))?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// Renders; `index` of a missing map key gives the empty string (Go's `index` returns
    /// the map's zero value).
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(match f.as_str() {
                    "Name" => data.name,
                    "Namespace" => data.namespace,
                    "Domain" => data.domain,
                    "Tag" => data.tag,
                    other => return Err(format!("template field .{other} is not available")),
                }),
                Part::Index(map, key) => {
                    let m = match map.as_str() {
                        "Annotations" => data.annotations,
                        _ => data.labels,
                    };
                    if let Some(v) = m.and_then(|m| m.get(key)) {
                        out.push_str(v);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Knative's check at load (`checkDomainTemplate`): rendered for a sample Route without
    /// annotations or labels, the template must give a non-empty host and no path. Whether
    /// a Route's host is a fully qualified domain name is checked per Route.
    pub fn check_domain_template(&self) -> Result<(), String> {
        let sample = self.render(&TemplateData {
            name: "foo",
            namespace: "bar",
            domain: "baz.com",
            ..Default::default()
        })?;
        let host = sample.split(':').next().unwrap_or("");
        if host.is_empty()
            || sample
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "template {:?} gives {sample:?}, which is not a host name",
                self.source
            ));
        }
        if !self.parts.iter().any(|p| *p == Part::Field("Name".into())) {
            return Err(format!(
                "template {:?} must contain {{{{.Name}}}}",
                self.source
            ));
        }
        Ok(())
    }

    /// Knative's check at load: a tag template must use both `.Name` and `.Tag`.
    pub fn check_tag_template(&self) -> Result<(), String> {
        for f in ["Name", "Tag"] {
            if !self.parts.iter().any(|p| *p == Part::Field(f.into())) {
                return Err(format!(
                    "template {:?} must contain {{{{.{f}}}}}",
                    self.source
                ));
            }
        }
        self.render(&TemplateData {
            name: "foo",
            tag: "v1",
            ..Default::default()
        })
        .map(|_| ())
    }
}

fn parse_action(action: &str) -> Result<Part, String> {
    if let Some(field) = action.strip_prefix('.') {
        if !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(Part::Field(field.to_string()));
        }
    }
    let words: Vec<&str> = action.split_whitespace().collect();
    if let ["index", map @ (".Annotations" | ".Labels"), key] = words.as_slice() {
        if key.len() >= 2 && key.starts_with('"') && key.ends_with('"') {
            return Ok(Part::Index(
                map[1..].to_string(),
                key[1..key.len() - 1].to_string(),
            ));
        }
    }
    Err(format!("unsupported action {{{{{action}}}}}"))
}

/// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', labels start and end
/// alphanumeric, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1035 label (Knative's rule for tags): like DNS-1123 but starting with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_domain_template_renders_name_namespace_domain() {
        let t = Template::parse("{{.Name}}.{{.Namespace}}.{{.Domain}}").unwrap();
        let out = t
            .render(&TemplateData {
                name: "hello",
                namespace: "default",
                domain: "example.com",
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out, "hello.default.example.com");
    }

    #[test]
    fn index_annotations_renders_the_value() {
        let t = Template::parse(r#"{{index .Annotations "sub"}}-{{.Name}}.{{.Domain}}"#).unwrap();
        let ann = super::super::StrMap::from([("sub".to_string(), "team".to_string())]);
        let out = t
            .render(&TemplateData {
                name: "a",
                domain: "x.io",
                annotations: Some(&ann),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out, "team-a.x.io");
    }

    #[test]
    fn unsupported_action_is_refused() {
        assert!(Template::parse("{{if .Name}}x{{end}}").is_err());
        assert!(Template::parse("{{.Name").is_err());
    }

    #[test]
    fn domain_template_with_a_path_is_refused() {
        let t = Template::parse("{{.Name}}.{{.Domain}}/path").unwrap();
        assert!(t.check_domain_template().is_err());
    }

    #[test]
    fn tag_template_needs_name_and_tag() {
        assert!(Template::parse("{{.Name}}")
            .unwrap()
            .check_tag_template()
            .is_err());
        assert!(Template::parse("{{.Name}}-{{.Tag}}")
            .unwrap()
            .check_tag_template()
            .is_ok());
    }
}
