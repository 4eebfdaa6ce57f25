//! The XML of WebDAV request bodies (RFC 4918 §14), read namespace-aware with
//! quick-xml, and the little escaping the responses need.
//!
//! Elements are matched by namespace and local name, never by prefix. A body that is
//! not well-formed XML, or whose root is not the expected `DAV:` element, is a 400
//! with a text that says which, before anything is looked up or changed.

use api::ApiError;
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

pub const DAV_NS: &str = "DAV:";

/// A property name: its namespace (empty for none) and local name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PropName {
    pub ns: String,
    pub name: String,
}

impl PropName {
    pub fn dav(name: &str) -> Self {
        PropName {
            ns: DAV_NS.to_string(),
            name: name.to_string(),
        }
    }

    /// The element with `inner` as content: `D:` for `DAV:`, otherwise a prefix of
    /// its own declared on the element (or the empty default namespace).
    pub fn element(&self, inner: &str) -> String {
        self.element_with("", inner)
    }

    /// [`PropName::element`] with extra namespace declarations on the element.
    pub fn element_with(&self, declarations: &str, inner: &str) -> String {
        let (open, close) = if self.ns == DAV_NS {
            (format!("D:{}", self.name), format!("D:{}", self.name))
        } else if self.ns.is_empty() {
            (format!("{} xmlns=\"\"", self.name), self.name.clone())
        } else {
            (
                format!("R:{} xmlns:R=\"{}\"", self.name, escape(&self.ns)),
                format!("R:{}", self.name),
            )
        };
        if inner.is_empty() {
            format!("<{open}{declarations}/>")
        } else {
            format!("<{open}{declarations}>{inner}</{close}>")
        }
    }
}

/// What a `PROPFIND` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropFind {
    /// Every property with a value (also an empty body).
    AllProp,
    /// The names of the properties, without values.
    PropName,
    /// These properties.
    Prop(Vec<PropName>),
}

pub const NOT_XML: &str = "The request body is not well-formed XML";

/// One element of a parsed body: its name, the elements inside, its text.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: PropName,
    pub children: Vec<Element>,
    pub text: String,
}

impl Default for PropName {
    fn default() -> Self {
        PropName::dav("")
    }
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name.ns == ns && self.name.name == name
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }
}

/// Parses a whole body into its root element (a small tree: bodies are bounded).
pub fn parse(body: &[u8]) -> Result<Element, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request(NOT_XML))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|_| ApiError::bad_request(NOT_XML))?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => ns.0.to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(_) => return Err(ApiError::bad_request(NOT_XML)),
        };
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(ApiError::bad_request(NOT_XML));
            }
            Event::Start(start) => {
                check_declarations(&start)?;
                stack.push(Element {
                    name: PropName {
                        ns,
                        name: start.local_name().as_ref().to_string(),
                    },
                    ..Element::default()
                });
            }
            Event::Empty(start) => {
                check_declarations(&start)?;
                let element = Element {
                    name: PropName {
                        ns,
                        name: start.local_name().as_ref().to_string(),
                    },
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| ApiError::bad_request(NOT_XML))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                match stack.last_mut() {
                    Some(parent) => parent.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(ApiError::bad_request(NOT_XML)),
                }
            }
            Event::CData(data) => match stack.last_mut() {
                Some(parent) => parent.text.push_str(&data.into_inner()),
                None => return Err(ApiError::bad_request(NOT_XML)),
            },
            Event::GeneralRef(_) if stack.is_empty() => {
                return Err(ApiError::bad_request(NOT_XML));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match (root, stack.is_empty()) {
        (Some(root), true) => Ok(root),
        _ => Err(ApiError::bad_request(NOT_XML)),
    }
}

/// `xmlns:p=""` is not allowed by Namespaces in XML 1.0 (§3, a prefix cannot be
/// undeclared); quick-xml accepts it, so it is refused here.
fn check_declarations(start: &quick_xml::events::BytesStart<'_>) -> Result<(), ApiError> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|_| ApiError::bad_request(NOT_XML))?;
        if attribute.key.0.starts_with("xmlns:") && attribute.value.is_empty() {
            return Err(ApiError::bad_request(NOT_XML));
        }
    }
    Ok(())
}

/// What a `PROPFIND` body asks for; an empty body is `allprop` (RFC 4918 §9.1).
pub fn propfind(body: &[u8]) -> Result<PropFind, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PropFind::AllProp);
    }
    let root = parse(body)?;
    if !root.is(DAV_NS, "propfind") {
        return Err(ApiError::bad_request(
            "The PROPFIND body must be a DAV:propfind element",
        ));
    }
    if let Some(prop) = root.child(DAV_NS, "prop") {
        return Ok(PropFind::Prop(
            prop.children.iter().map(|c| c.name.clone()).collect(),
        ));
    }
    if root.child(DAV_NS, "propname").is_some() {
        return Ok(PropFind::PropName);
    }
    if root.child(DAV_NS, "allprop").is_some() {
        return Ok(PropFind::AllProp);
    }
    Err(ApiError::bad_request(
        "The PROPFIND body must ask for allprop, propname or prop",
    ))
}

/// One change of a `PROPPATCH`, in request order: set a dead property to `xml` (the
/// property element with its value, self-contained: it declares every namespace that
/// was in scope where it was written), or remove it (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropChange {
    pub name: PropName,
    pub xml: Option<String>,
}

/// The changes of a `PROPPATCH` body (`DAV:propertyupdate` of `set` and `remove`).
pub fn propertyupdate(body: &[u8]) -> Result<Vec<PropChange>, ApiError> {
    // Well-formed and of the right shape first; then a second pass keeps the raw values.
    let root = parse(body)?;
    if !root.is(DAV_NS, "propertyupdate") {
        return Err(ApiError::bad_request(
            "The PROPPATCH body must be a DAV:propertyupdate element",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request(NOT_XML))?;
    let mut reader = NsReader::from_str(text);
    let bad = || ApiError::bad_request(NOT_XML);
    // Depth 1 = propertyupdate, 2 = set/remove, 3 = prop, 4 = a property.
    let mut depth = 0;
    let mut setting = false;
    let mut out = Vec::new();
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|_| bad())?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => ns.0.to_string(),
            _ => String::new(),
        };
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) if depth == 3 => {
                let name = PropName {
                    ns,
                    name: start.local_name().as_ref().to_string(),
                };
                let declarations = declarations_in_scope(&reader, "R", false);
                let inner = content(&mut reader, text, &start, empty)?;
                let xml = setting.then(|| name.element_with(&declarations, &inner));
                out.push(PropChange { name, xml });
            }
            Event::Start(start) => {
                depth += 1;
                if depth == 2 {
                    setting = start.local_name().as_ref() == "set";
                }
            }
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The namespace declarations in scope at the reader's position, as attributes
/// (` xmlns:p="…"`) for an element copied out of its document, so that it means the
/// same on its own: every prefix but `own` (the one the copy's name uses), and with
/// `default` the default namespace too (for a copy whose name declares none).
fn declarations_in_scope(reader: &NsReader<&[u8]>, own: &str, default: bool) -> String {
    let mut declarations = String::new();
    for (prefix, namespace) in reader.resolver().bindings() {
        let namespace = escape(namespace.0);
        match prefix {
            quick_xml::name::PrefixDeclaration::Named(p)
                if p != "xml" && p != "xmlns" && p != own =>
            {
                declarations.push_str(&format!(" xmlns:{p}=\"{namespace}\""));
            }
            quick_xml::name::PrefixDeclaration::Default if default => {
                declarations.push_str(&format!(" xmlns=\"{namespace}\""));
            }
            _ => {}
        }
    }
    declarations
}

/// The content of the element `start` just read, as written (empty for `<x/>`).
fn content(
    reader: &mut NsReader<&[u8]>,
    text: &str,
    start: &quick_xml::events::BytesStart<'_>,
    empty: bool,
) -> Result<String, ApiError> {
    if empty {
        return Ok(String::new());
    }
    let span = reader
        .read_to_end(start.name())
        .map_err(|_| ApiError::bad_request(NOT_XML))?;
    Ok(text[span.start as usize..span.end as usize].to_string())
}

/// What a `LOCK` body (`DAV:lockinfo`) asks for: a shared or an exclusive write lock,
/// and the `DAV:owner` element to show in lock discovery, self-contained (the
/// namespaces in scope declared on it). An empty body asks for an exclusive lock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockInfo {
    pub shared: bool,
    pub owner: Option<String>,
}

pub const BAD_LOCKINFO: &str =
    "The LOCK body must be a DAV:lockinfo asking for an exclusive or a shared write lock";

pub fn lockinfo(body: &[u8]) -> Result<LockInfo, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(LockInfo::default());
    }
    let root = parse(body)?;
    let scope = root.child(DAV_NS, "lockscope");
    let shared = scope.is_some_and(|s| s.child(DAV_NS, "shared").is_some());
    let exclusive = scope.is_some_and(|s| s.child(DAV_NS, "exclusive").is_some());
    let write = root
        .child(DAV_NS, "locktype")
        .is_some_and(|t| t.child(DAV_NS, "write").is_some());
    if !root.is(DAV_NS, "lockinfo") || shared == exclusive || !write {
        return Err(ApiError::bad_request(BAD_LOCKINFO));
    }
    // Well-formed and of the right shape; a second pass keeps the owner as written.
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request(NOT_XML))?;
    let mut reader = NsReader::from_str(text);
    let mut depth = 0;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|_| ApiError::bad_request(NOT_XML))?;
        let in_dav = matches!(resolved, ResolveResult::Bound(ns) if ns.0 == DAV_NS);
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start)
                if depth == 1 && in_dav && start.local_name().as_ref() == "owner" =>
            {
                let declarations = declarations_in_scope(&reader, "D", true);
                let inner = content(&mut reader, text, &start, empty)?;
                let owner = PropName::dav("owner").element_with(&declarations, &inner);
                return Ok(LockInfo {
                    shared,
                    owner: Some(owner),
                });
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth -= 1,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(LockInfo {
        shared,
        owner: None,
    })
}

/// Text and attribute values escaped for XML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(result: Result<PropFind, ApiError>) -> String {
        match result {
            Ok(found) => format!("{found:?}"),
            Err(ApiError::Client(status, text)) => format!("{} {text}", status.as_u16()),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn propfind_bodies() {
        assert_eq!(status(propfind(b"")), "AllProp");
        assert_eq!(
            status(propfind(
                br#"<?xml version="1.0"?><a:propfind xmlns:a="DAV:"><a:propname/></a:propfind>"#
            )),
            "PropName"
        );
        let found = propfind(
            br#"<propfind xmlns="DAV:"><prop><getetag/><x:foo xmlns:x="urn:x"/><bar xmlns=""/></prop></propfind>"#,
        );
        let Ok(PropFind::Prop(names)) = found else {
            panic!("{found:?}")
        };
        assert_eq!(
            names,
            vec![
                PropName::dav("getetag"),
                PropName {
                    ns: "urn:x".into(),
                    name: "foo".into()
                },
                PropName {
                    ns: String::new(),
                    name: "bar".into()
                },
            ]
        );
    }

    #[test]
    fn lockinfo_bodies() {
        assert_eq!(lockinfo(b"").unwrap(), LockInfo::default());
        let litmus = br#"<?xml version="1.0" encoding="utf-8"?>
<lockinfo xmlns='DAV:'><lockscope><shared/></lockscope><locktype><write/></locktype><owner>litmus test suite</owner></lockinfo>"#;
        assert_eq!(
            lockinfo(litmus).unwrap(),
            LockInfo {
                shared: true,
                owner: Some(r#"<D:owner xmlns="DAV:">litmus test suite</D:owner>"#.into()),
            }
        );
        let prefixed = br#"<a:lockinfo xmlns:a="DAV:" xmlns:x="urn:x"><a:lockscope><a:exclusive/></a:lockscope><a:locktype><a:write/></a:locktype><a:owner><a:href>mailto:me@example.org</a:href><x:n>Me</x:n></a:owner></a:lockinfo>"#;
        assert_eq!(
            lockinfo(prefixed).unwrap(),
            LockInfo {
                shared: false,
                owner: Some(
                    r#"<D:owner xmlns:a="DAV:" xmlns:x="urn:x"><a:href>mailto:me@example.org</a:href><x:n>Me</x:n></D:owner>"#
                        .into()
                ),
            }
        );
        for bad in [
            &b"<lockinfo xmlns='DAV:'><locktype><write/></locktype></lockinfo>"[..],
            b"<lockinfo xmlns='DAV:'><lockscope><exclusive/><shared/></lockscope><locktype><write/></locktype></lockinfo>",
            b"<lockinfo xmlns='DAV:'><lockscope><exclusive/></lockscope><locktype><read/></locktype></lockinfo>",
            b"<lockinfo xmlns='urn:x'><lockscope><exclusive/></lockscope><locktype><write/></locktype></lockinfo>",
        ] {
            assert!(lockinfo(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(lockinfo(b"not xml").is_err());
    }

    #[test]
    fn bodies_that_are_not_xml_are_400() {
        for body in [
            &b"this is not xml"[..],
            b"<propfind xmlns=\"DAV:\"><prop>",
            b"<propfind xmlns=\"DAV:\"></prop>",
            b"<D:propfind xmlns:D=\"DAV:\"><D:prop><bar:foo xmlns:bar=\"\"/></D:prop></D:propfind>",
            b"<x:propfind><x:prop/></x:propfind>",
            b"<propfind xmlns=\"DAV:\"/><second/>",
        ] {
            assert_eq!(
                status(propfind(body)),
                format!("400 {NOT_XML}"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(status(propfind(b"<foo/>")).starts_with("400 The PROPFIND body must be"));
    }
}
