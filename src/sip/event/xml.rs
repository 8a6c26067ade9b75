//! A small, bounded XML tree for event bodies (PIDF, dialog-info), read with quick-xml.
//!
//! Why quick-xml: it is small (one dependency, memchr), maintained, and never fetches or
//! expands anything: no DTD processing, no external entities, no user-defined entities (an
//! unknown `&name;` is an error here), so a hostile NOTIFY cannot make it read files or blow
//! up memory ("billion laughs"). On top of it this module bounds what it keeps: the body size,
//! the nesting depth, the number of elements and the text per element. Names are kept without
//! their namespace prefix (`rpid:on-the-phone` is `on-the-phone`): presence documents from
//! different servers pick different prefixes for the same namespaces.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Larger bodies are refused before parsing (a PIDF or dialog-info document is a few KiB).
pub const MAX_XML_BYTES: usize = 64 * 1024;
/// Deeper nesting is refused.
pub const MAX_DEPTH: usize = 24;
/// More elements in one document are refused.
pub const MAX_ELEMENTS: usize = 1024;
/// Text kept per element (the rest is dropped).
pub const MAX_TEXT_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// The local name (no prefix).
    pub name: String,
    /// Attributes by local name, values unescaped.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own text, trimmed, entities resolved.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    #[error("XML body larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("XML with more than {MAX_ELEMENTS} elements")]
    TooManyElements,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML without a root element")]
    Empty,
}

impl Element {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Every element below this one (depth first), this one included.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while let Some(element) = out.get(i).copied() {
            out.extend(element.children.iter());
            i += 1;
        }
        out
    }
}

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => name.into_owned(),
    }
}

fn push_text(element: &mut Element, text: &str) {
    let room = MAX_TEXT_CHARS.saturating_sub(element.text.chars().count());
    element.text.extend(text.chars().take(room));
}

/// Parses `body` into its root element, within the bounds above.
pub fn parse(body: &[u8]) -> Result<Element, XmlError> {
    if body.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::Malformed("not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(XmlError::Malformed("content after the root element".into()));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let mut element = Element {
                    name: local(start.name().as_ref()),
                    ..Element::default()
                };
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| malformed(&e))?;
                    let value = attribute.unescape_value().map_err(|e| malformed(&e))?;
                    element.attributes.push((
                        local(attribute.key.as_ref()),
                        value.chars().take(MAX_TEXT_CHARS).collect(),
                    ));
                }
                if matches!(event, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => root = Some(element),
                    }
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let Some(mut element) = stack.pop() else {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                };
                element.text = element.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                if let Some(element) = stack.last_mut() {
                    let decoded = text.decode().map_err(|e| malformed(&e))?;
                    push_text(element, &decoded);
                }
            }
            Event::CData(data) => {
                if let Some(element) = stack.last_mut() {
                    push_text(element, &String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                let Some(element) = stack.last_mut() else {
                    continue;
                };
                // Character references and the five predefined entities only: nothing is
                // defined by the document itself (no DTD), so nothing else can expand.
                if let Some(c) = reference.resolve_char_ref().map_err(|e| malformed(&e))? {
                    push_text(element, &c.to_string());
                    continue;
                }
                let name = reference.decode().map_err(|e| malformed(&e))?;
                let c = match name.as_ref() {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    other => return Err(XmlError::Malformed(format!("unknown entity &{other};"))),
                };
                push_text(element, &c.to_string());
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and DOCTYPE carry nothing we
            // use; a DOCTYPE's internal subset is not interpreted.
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or(XmlError::Empty)
}

/// Text for an XML element or attribute value.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_lose_their_prefixes_and_keep_text_and_attributes() {
        let root = parse(
            br#"<?xml version="1.0"?><a:presence xmlns:a="urn:x" entity="sip:b@h"><a:note>Tom &amp; Jerry &#x263A;</a:note><x:y/></a:presence>"#,
        )
        .expect("parses");
        assert_eq!(root.name, "presence");
        assert_eq!(root.attribute("entity"), Some("sip:b@h"));
        assert_eq!(
            root.child("note").map(|n| n.text.as_str()),
            Some("Tom & Jerry ☺")
        );
        assert!(root.child("y").is_some());
    }

    #[test]
    fn hostile_documents_are_refused_within_bounds() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooDeep));
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        assert_eq!(parse(wide.as_bytes()), Err(XmlError::TooManyElements));
        assert_eq!(
            parse(&vec![b' '; MAX_XML_BYTES + 1]),
            Err(XmlError::TooLarge)
        );
        // A document-defined entity never expands (billion laughs).
        let laughs = br#"<!DOCTYPE a [<!ENTITY lol "lol">]><a>&lol;&lol;</a>"#;
        assert!(matches!(parse(laughs), Err(XmlError::Malformed(_))));
        assert!(matches!(parse(b"<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse(b"<a></a><b/>"), Err(XmlError::Malformed(_))));
        assert_eq!(parse(b""), Err(XmlError::Empty));
        let long = format!("<a>{}</a>", "x".repeat(MAX_TEXT_CHARS * 3));
        assert_eq!(
            parse(long.as_bytes()).map(|e| e.text.len()),
            Ok(MAX_TEXT_CHARS)
        );
    }
}
