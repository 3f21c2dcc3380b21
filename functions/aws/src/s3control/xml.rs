//! S3 Control's XML bodies ⇄ the JSON documents the `/jobs` routes take and give, in one place,
//! driven by botocore's own shapes (`shapes.json`, written by `scripts/s3control_shapes.py`):
//! a structure's members are elements named as the member (or its `locationName`), a list's
//! items are `<member>` elements, a map's are `<entry><key/><value/></entry>`, numbers and
//! booleans are typed in JSON and text in XML.
//!
//! Reading refuses what S3 would: an element the shape does not have, a repeated member, a
//! number or boolean that is not one; each error names the element's path
//! (`Operation.S3PutObjectCopy.TargetResource`, the same as the JSON path). Writing keeps only
//! what the shape has: batchops' extensions to the JSON (e.g. `NumberOfBytesCopied`) have no
//! place in S3's XML, and S3 clients would not read them.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The namespace of every S3 Control body.
pub const NAMESPACE: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";

#[derive(Debug, Deserialize)]
struct Model {
    shapes: BTreeMap<String, Shape>,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: BTreeMap<String, ShapeRef>,
    member: Option<ShapeRef>,
    key: Option<ShapeRef>,
    value: Option<ShapeRef>,
}

#[derive(Debug, Deserialize)]
struct ShapeRef {
    shape: String,
    #[serde(rename = "locationName")]
    location_name: Option<String>,
}

impl ShapeRef {
    fn element<'a>(&'a self, default: &'a str) -> &'a str {
        self.location_name.as_deref().unwrap_or(default)
    }
}

static MODEL: LazyLock<Model> = LazyLock::new(|| {
    // A test (`the_model_loads`) reads it, so a bad file fails the suite, not a request.
    serde_json::from_str(include_str!("shapes.json")).unwrap_or_else(|e| {
        tracing::error!(error = %e, "s3control/shapes.json does not parse");
        Model {
            shapes: BTreeMap::new(),
        }
    })
});

fn shape(name: &str) -> Result<&'static Shape, String> {
    MODEL
        .shapes
        .get(name)
        .ok_or_else(|| format!("the S3 Control model has no shape {name}"))
}

/// One parsed XML element: its local name (namespace prefixes dropped), child elements, text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub name: String,
    pub children: Vec<Element>,
    pub text: String,
}

/// Parses an XML document into its root element.
pub fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("the XML body does not parse: {e}"))?;
        match event {
            Event::Start(start) => stack.push(Element {
                name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                ..Element::default()
            }),
            Event::Empty(start) => {
                let element = Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                if let Some(done) = close(&mut stack, element) {
                    return finish(&mut reader, done);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or("the XML body closes an element it never opened")?;
                if let Some(done) = close(&mut stack, element) {
                    return finish(&mut reader, done);
                }
            }
            Event::Text(text) => {
                if let Some(open) = stack.last_mut() {
                    let text = text
                        .decode()
                        .map_err(|e| format!("the XML body's text does not decode: {e}"))?;
                    open.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(open) = stack.last_mut() {
                    let text = data
                        .decode()
                        .map_err(|e| format!("the XML body's CDATA does not decode: {e}"))?;
                    open.text.push_str(&text);
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference
                    .decode()
                    .map_err(|e| format!("the XML body's entity does not decode: {e}"))?;
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("the XML body uses an unknown entity &{name};"))?
                        .to_string(),
                    Err(e) => return Err(format!("the XML body's &{name}; is not valid: {e}")),
                };
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&resolved);
                }
            }
            Event::Eof => return Err("the XML body ends before its root element closes".into()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Adds a closed element to its parent; the root comes back.
fn close(stack: &mut [Element], element: Element) -> Option<Element> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(element);
            None
        }
        None => Some(element),
    }
}

/// Only comments and whitespace may follow the root element.
fn finish(reader: &mut Reader<&[u8]>, root: Element) -> Result<Element, String> {
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return Ok(root),
            Ok(Event::Text(text)) if text.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Event::Comment(_) | Event::PI(_)) => {}
            Ok(_) => return Err("the XML body has more after its root element".into()),
            Err(e) => return Err(format!("the XML body does not parse: {e}")),
        }
    }
}

/// Reads a request body: its root must be `root` (e.g. `CreateJobRequest`), its content is
/// shape `root`'s. The JSON uses the member names (`SSEKMS`, where the XML says `SSE-KMS`).
pub fn read_request(xml: &str, root: &str) -> Result<Value, String> {
    let element = parse(xml)?;
    if element.name != root {
        return Err(format!(
            "the XML body's root element is <{}>, expected <{root}>",
            element.name
        ));
    }
    to_json(&element, root, "")
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Element `element` as shape `shape_name`; `path` names it in errors.
pub fn to_json(element: &Element, shape_name: &str, path: &str) -> Result<Value, String> {
    let shape = shape(shape_name)?;
    let text = element.text.trim();
    let at = if path.is_empty() {
        element.name.as_str()
    } else {
        path
    };
    match shape.kind.as_str() {
        "structure" => {
            let mut object = Map::new();
            for child in &element.children {
                let (member_name, member) = shape
                    .members
                    .iter()
                    .find(|(name, member)| member.element(name) == child.name)
                    .ok_or_else(|| {
                        let known: Vec<&str> = shape
                            .members
                            .iter()
                            .map(|(name, member)| member.element(name))
                            .collect();
                        format!(
                            "{}: unknown element; {at} has {}",
                            child_path(path, &child.name),
                            known.join(", ")
                        )
                    })?;
                let member_path = child_path(path, member_name);
                if object.contains_key(member_name) {
                    return Err(format!("{member_path}: given more than once"));
                }
                object.insert(
                    member_name.clone(),
                    to_json(child, &member.shape, &member_path)?,
                );
            }
            Ok(Value::Object(object))
        }
        "list" => {
            let member = shape
                .member
                .as_ref()
                .ok_or_else(|| format!("list shape {shape_name} has no member"))?;
            let item = member.element("member");
            let mut items = Vec::new();
            for (index, child) in element.children.iter().enumerate() {
                let item_path = format!("{at}[{index}]");
                if child.name != item {
                    return Err(format!(
                        "{item_path}: a list item is <{item}>, not <{}>",
                        child.name
                    ));
                }
                items.push(to_json(child, &member.shape, &item_path)?);
            }
            Ok(Value::Array(items))
        }
        "map" => {
            let (Some(key_ref), Some(value_ref)) = (&shape.key, &shape.value) else {
                return Err(format!("map shape {shape_name} has no key or value"));
            };
            let mut object = Map::new();
            for entry in &element.children {
                let find = |name: &str| entry.children.iter().find(|c| c.name == name);
                let (Some(key), Some(value)) = (find("key"), find("value")) else {
                    return Err(format!(
                        "{at}: a map item is <entry> with <key> and <value>, not <{}>",
                        entry.name
                    ));
                };
                let key = to_json(key, &key_ref.shape, at)?;
                let key = key.as_str().unwrap_or_default().to_string();
                let value = to_json(value, &value_ref.shape, &format!("{at}.{key}"))?;
                object.insert(key, value);
            }
            Ok(Value::Object(object))
        }
        "integer" | "long" => text
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{at}: `{text}` is not a whole number")),
        "boolean" => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{at}: `{text}` is not true or false")),
        },
        // Strings, enums and timestamps (ISO 8601 in both) keep their text.
        _ => {
            if !element.children.is_empty() {
                return Err(format!("{at}: text expected, not elements"));
            }
            Ok(Value::String(element.text.clone()))
        }
    }
}

/// A response body: `<root xmlns="...">` with `value` (a JSON document) as shape `root`.
pub fn write_response(root: &str, value: &Value) -> Result<String, String> {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    out.push('\n');
    write_element(&mut out, root, root, value, Some(NAMESPACE))?;
    Ok(out)
}

fn open_tag(out: &mut String, name: &str, namespace: Option<&str>) {
    out.push('<');
    out.push_str(name);
    if let Some(namespace) = namespace {
        out.push_str(" xmlns=\"");
        out.push_str(namespace);
        out.push('"');
    }
    out.push('>');
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Writes `value` as element `name` of shape `shape_name`. JSON fields the shape lacks, and
/// nulls, are left out.
fn write_element(
    out: &mut String,
    name: &str,
    shape_name: &str,
    value: &Value,
    namespace: Option<&str>,
) -> Result<(), String> {
    let shape = shape(shape_name)?;
    match (shape.kind.as_str(), value) {
        (_, Value::Null) => Ok(()),
        ("structure", Value::Object(object)) => {
            open_tag(out, name, namespace);
            for (member_name, member) in &shape.members {
                if let Some(field) = object.get(member_name) {
                    write_element(out, member.element(member_name), &member.shape, field, None)?;
                }
            }
            close_tag(out, name);
            Ok(())
        }
        ("list", Value::Array(items)) => {
            let member = shape
                .member
                .as_ref()
                .ok_or_else(|| format!("list shape {shape_name} has no member"))?;
            open_tag(out, name, namespace);
            for item in items {
                write_element(out, member.element("member"), &member.shape, item, None)?;
            }
            close_tag(out, name);
            Ok(())
        }
        ("map", Value::Object(object)) => {
            let (Some(key_ref), Some(value_ref)) = (&shape.key, &shape.value) else {
                return Err(format!("map shape {shape_name} has no key or value"));
            };
            open_tag(out, name, namespace);
            for (key, item) in object {
                out.push_str("<entry>");
                write_element(
                    out,
                    "key",
                    &key_ref.shape,
                    &Value::String(key.clone()),
                    None,
                )?;
                write_element(out, "value", &value_ref.shape, item, None)?;
                out.push_str("</entry>");
            }
            close_tag(out, name);
            Ok(())
        }
        ("structure" | "list" | "map", other) => Err(format!(
            "{name}: a {} is expected, the document has {other}",
            shape.kind
        )),
        (_, Value::String(text)) => {
            open_tag(out, name, namespace);
            out.push_str(&quick_xml::escape::escape(text.as_str()));
            close_tag(out, name);
            Ok(())
        }
        (_, Value::Number(_) | Value::Bool(_)) => {
            open_tag(out, name, namespace);
            out.push_str(&value.to_string());
            close_tag(out, name);
            Ok(())
        }
        (_, other) => Err(format!(
            "{name}: a {} is expected, the document has {other}",
            shape.kind
        )),
    }
}

#[cfg(test)]
mod tests;
