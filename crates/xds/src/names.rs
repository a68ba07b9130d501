//! Resource names as the server keeps them.
//!
//! Every scope's name begins with the same 67 bytes
//! (`xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/`), and there are
//! ~9 scopes per Route: that prefix alone would be a large part of the snapshot's names
//! (and pushed each name into a larger allocation). Inside the server a name keeps one mark
//! byte in its place. Names come in through [`internal`] (requests) and go out through
//! [`wire`] (responses, status, logs); between them the mapping is one-to-one, so the server
//! compares, sorts and matches globs on its own form alone.

use std::borrow::Cow;

/// The xdstp prefix of every scoped-route name the server serves.
pub const SCOPES: &str = "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/";

/// Stands for [`SCOPES`] at the start of a kept name.
const MARK: char = '\u{1}';
/// Starts a kept name whose wire form itself began with a mark or an escape (a client may
/// name anything): keeps the mapping one-to-one.
const ESCAPE: char = '\u{2}';

/// The kept form of a name from the wire.
pub fn internal(name: &str) -> Cow<'_, str> {
    if let Some(rest) = name.strip_prefix(SCOPES) {
        Cow::Owned(format!("{MARK}{rest}"))
    } else if name.starts_with([MARK, ESCAPE]) {
        Cow::Owned(format!("{ESCAPE}{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The wire form of a kept name, as the two pieces it is written from (no copy is made):
/// the one place that reads a kept name.
pub fn wire_parts(name: &str) -> (&'static str, &str) {
    if let Some(rest) = name.strip_prefix(MARK) {
        (SCOPES, rest)
    } else if let Some(rest) = name.strip_prefix(ESCAPE) {
        ("", rest)
    } else {
        ("", name)
    }
}

/// The wire form of a kept name.
pub fn wire(name: &str) -> Cow<'_, str> {
    match wire_parts(name) {
        ("", rest) => Cow::Borrowed(rest),
        (prefix, rest) => Cow::Owned(format!("{prefix}{rest}")),
    }
}

/// The length of [`wire`]`(name)`, without building it.
pub fn wire_len(name: &str) -> usize {
    let (prefix, rest) = wire_parts(name);
    prefix.len() + rest.len()
}

/// [`internal`] for an owned name (`String` or `Arc<str>`): no copy when it is kept as it is.
pub fn into_internal<S: AsRef<str> + From<String>>(name: S) -> S {
    let kept = match internal(name.as_ref()) {
        Cow::Owned(kept) => Some(kept),
        Cow::Borrowed(_) => None,
    };
    kept.map_or(name, S::from)
}

/// [`wire`] for an owned name (`String` or `Arc<str>`): no copy when it is sent as it is.
pub fn into_wire<S: AsRef<str> + From<String>>(name: S) -> S {
    if wire_parts(name.as_ref()) == ("", name.as_ref()) {
        return name;
    }
    S::from(wire(name.as_ref()).into_owned())
}

/// The kept name of a listener's scope for one host.
pub fn scope(listener: &str, key: &str) -> String {
    format!("{MARK}{listener}/{key}")
}

/// An xdstp glob (`xdstp://authority/type/path/*`, kept form) selects every resource under
/// `path/` (Envoy subscribes to scoped-route sets this way); returns the prefix, in kept form.
pub fn glob_prefix(name: &str) -> Option<&str> {
    if !name.starts_with(MARK) {
        // Someone else's xdstp names are kept as they are.
        name.strip_prefix("xdstp://")?;
    }
    name.strip_suffix('*').filter(|p| p.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_map_one_to_one_and_back() {
        let names = [
            "ns/svc:80",
            "external",
            "",
            "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/external/a.b",
            "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/internal/*",
            "xdstp://other/envoy.config.route.v3.ScopedRouteConfiguration/external/a.b",
            "\u{1}external/a.b",
            "\u{2}x",
            "\u{2}\u{1}x",
        ];
        let kept: Vec<String> = names.iter().map(|n| internal(n).into_owned()).collect();
        for (n, k) in names.iter().zip(&kept) {
            assert_eq!(wire(k), *n, "{n:?}");
            assert_eq!(wire_len(k), n.len(), "{n:?}");
            let (a, b) = wire_parts(k);
            assert_eq!(format!("{a}{b}"), *n);
        }
        let mut distinct = kept.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            names.len(),
            "two names kept the same: {kept:?}"
        );
        // Our scopes shed the prefix; a client's name that looks like a kept one does not
        // become one of ours.
        assert_eq!(kept[3], scope("external", "a.b"));
        assert_ne!(kept[6], kept[3]);
    }

    #[test]
    fn globs_in_kept_form() {
        let ours = internal(
            "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/internal/*",
        );
        assert_eq!(glob_prefix(&ours), Some("\u{1}internal/"));
        assert!(scope("internal", "a.b").starts_with(glob_prefix(&ours).unwrap()));
        assert!(!scope("external", "a.b").starts_with(glob_prefix(&ours).unwrap()));
        assert_eq!(
            glob_prefix("xdstp://other/t/x/*"),
            Some("xdstp://other/t/x/")
        );
        assert_eq!(glob_prefix(&internal("\u{1}internal/*")), None);
        assert_eq!(glob_prefix("ns/*"), None);
    }
}
