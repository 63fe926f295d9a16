//! [`EventParts`]: the attributes of one event as a wire form reads them, put together into a
//! [`WireEvent`] without the SDK's message visitors or its JSON deserializer.
//!
//! Why not those: the SDK's binary path formats every attribute value into a new `String`
//! (its `Display`) and moves its builder through each call, and its JSON path reads the
//! whole event into a `serde_json::Value` tree twice. Both ran for every event Herald
//! accepts and for every event the durable log reads back. The checks are the SDK's own
//! (the required attributes, `time` as RFC 3339, `dataschema` as a URL, extension values a
//! string, boolean or integer), and the SDK event is still what holds the attributes.

use super::{EventError, WireData, WireEvent};
use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesWriter as _, EventBuilder as _, EventBuilderV03, EventBuilderV10};
use std::borrow::Cow;

/// One event's attributes, collected in any order (the required ones may come last).
pub(crate) struct EventParts<'a> {
    spec: SpecVersion,
    id: Option<String>,
    ty: Option<String>,
    source: Option<String>,
    subject: Option<String>,
    datacontenttype: Option<String>,
    time: Option<String>,
    dataschema: Option<String>,
    /// In the order set; `None` removes (the SDK's map decides what a repeat leaves).
    extensions: Vec<(Cow<'a, str>, Option<ExtensionValue>)>,
}

impl<'a> EventParts<'a> {
    pub(crate) fn new(spec: SpecVersion) -> Self {
        Self {
            spec,
            id: None,
            ty: None,
            source: None,
            subject: None,
            datacontenttype: None,
            time: None,
            dataschema: None,
            extensions: Vec::new(),
        }
    }

    /// The name of the schema attribute in this spec version (`dataschema`, 0.3 `schemaurl`).
    pub(crate) fn schema_attribute(&self) -> &'static str {
        match self.spec {
            SpecVersion::V03 => "schemaurl",
            SpecVersion::V10 => "dataschema",
        }
    }

    /// Whether `name` is a context attribute of the spec version (other than `specversion`);
    /// any other name is an extension.
    pub(crate) fn is_context_attribute(&self, name: &str) -> bool {
        matches!(
            name,
            "id" | "type" | "source" | "subject" | "datacontenttype" | "time"
        ) || name == self.schema_attribute()
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "id" => &mut self.id,
            "type" => &mut self.ty,
            "source" => &mut self.source,
            "subject" => &mut self.subject,
            "datacontenttype" => &mut self.datacontenttype,
            "time" => &mut self.time,
            n if n == self.schema_attribute() => &mut self.dataschema,
            _ => return None,
        })
    }

    /// A string-valued attribute: a context attribute of the spec version by its name, any
    /// other name a string extension. A name set again replaces its value (the SDK's rule).
    pub(crate) fn set(&mut self, name: Cow<'a, str>, value: String) {
        match self.slot(&name) {
            Some(slot) => *slot = Some(value),
            None => self.set_extension(name, ExtensionValue::String(value)),
        }
    }

    /// An extension with its type; a name set again replaces its value.
    pub(crate) fn set_extension(&mut self, name: Cow<'a, str>, value: ExtensionValue) {
        self.extensions.push((name, Some(value)));
    }

    /// Takes an attribute or extension out again (a JSON `null` after a value).
    pub(crate) fn clear(&mut self, name: Cow<'a, str>) {
        match self.slot(&name) {
            Some(slot) => *slot = None,
            None => self.extensions.push((name, None)),
        }
    }

    /// The event, checked as the SDK checks it: `id`, `type` and `source` present, `time` an
    /// RFC 3339 timestamp, the schema a URL. Their strings are kept as they came.
    pub(crate) fn into_event(self, data: Option<WireData>) -> Result<WireEvent, EventError> {
        let schema_name = self.schema_attribute();
        let missing = |name: &str| EventError(format!("missing required attribute {name}"));
        let id = self.id.ok_or_else(|| missing("id"))?;
        let ty = self.ty.ok_or_else(|| missing("type"))?;
        let source = self.source.ok_or_else(|| missing("source"))?;
        let time = match &self.time {
            None => None,
            Some(t) => Some(chrono::DateTime::parse_from_rfc3339(t).map_err(|_| {
                EventError(format!(
                    "attribute time must be an RFC 3339 timestamp, got {t:?}"
                ))
            })?),
        };
        let schema = match &self.dataschema {
            None => None,
            Some(s) => Some(url::Url::parse(s).map_err(|e| {
                EventError(format!(
                    "attribute {schema_name} must be an absolute URI, got {s:?}: {e}"
                ))
            })?),
        };
        // The builders refuse an empty source, which later checks name better (ingress
        // answers 400 "attribute source must not be empty"): build with a stand-in.
        let empty_source = source.is_empty();
        let source_or_stand_in = if empty_source { "-".into() } else { source };
        let built = match self.spec {
            SpecVersion::V10 => EventBuilderV10::new()
                .id(id)
                .ty(ty)
                .source(source_or_stand_in)
                .build(),
            SpecVersion::V03 => EventBuilderV03::new()
                .id(id)
                .ty(ty)
                .source(source_or_stand_in)
                .build(),
        };
        let mut sdk = built.map_err(|e| EventError(e.to_string()))?;
        if empty_source {
            sdk.set_source(String::new());
        }
        sdk.set_subject(self.subject);
        sdk.set_datacontenttype(self.datacontenttype);
        sdk.set_time(time);
        sdk.set_dataschema(schema);
        for (name, value) in self.extensions {
            match value {
                Some(value) => sdk.set_extension(&name, value),
                None => drop(sdk.remove_extension(&name)),
            }
        }
        Ok(WireEvent {
            sdk,
            time: self.time,
            dataschema: self.dataschema,
            data,
            trace: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;

    fn parts(spec: SpecVersion, attrs: &[(&'static str, &str)]) -> EventParts<'static> {
        let mut p = EventParts::new(spec);
        for (n, v) in attrs {
            p.set(Cow::Borrowed(n), v.to_string());
        }
        p
    }

    const REQUIRED: [(&str, &str); 3] = [("id", "1"), ("type", "t"), ("source", "/s")];

    #[test]
    fn attributes_and_extensions_land_where_the_sdk_puts_them() {
        let mut p = parts(
            SpecVersion::V10,
            &[
                ("time", "2018-04-05T03:56:24Z"),
                ("dataschema", "HTTP://Example.com/a/../b"),
                ("schemaurl", "kept as an extension in 1.0"),
                ("subject", "s"),
                ("datacontenttype", "text/plain"),
                ("x", "first"),
            ],
        );
        for (n, v) in REQUIRED {
            p.set(Cow::Borrowed(n), v.into());
        }
        p.set(Cow::Borrowed("x"), "second".into());
        p.set_extension(Cow::Borrowed("n"), ExtensionValue::Integer(7));
        let e = p.into_event(None).unwrap();
        assert_eq!((e.id(), e.ty(), e.source().as_str()), ("1", "t", "/s"));
        assert_eq!(e.time(), Some("2018-04-05T03:56:24Z"), "as written");
        assert!(
            AttributesReader::time(&*e).is_some(),
            "typed for the SDK too"
        );
        assert_eq!(e.dataschema(), Some("HTTP://Example.com/a/../b"));
        assert_eq!(e.subject(), Some("s"));
        assert_eq!(e.datacontenttype(), Some("text/plain"));
        assert_eq!(
            e.extension("schemaurl"),
            Some(&ExtensionValue::String(
                "kept as an extension in 1.0".into()
            ))
        );
        assert_eq!(
            e.extension("x"),
            Some(&ExtensionValue::String("second".into()))
        );
        assert_eq!(e.extension("n"), Some(&ExtensionValue::Integer(7)));

        let e = parts(
            SpecVersion::V03,
            &[("schemaurl", "http://s/1"), ("dataschema", "d")],
        )
        .with_required()
        .into_event(None)
        .unwrap();
        assert_eq!(e.specversion(), SpecVersion::V03);
        assert_eq!(e.dataschema(), Some("http://s/1"));
        assert_eq!(
            e.extension("dataschema"),
            Some(&ExtensionValue::String("d".into()))
        );
    }

    impl EventParts<'static> {
        fn with_required(mut self) -> Self {
            for (n, v) in REQUIRED {
                self.set(Cow::Borrowed(n), v.into());
            }
            self
        }
    }

    #[test]
    fn what_the_sdk_refuses_is_named() {
        for (attrs, needle) in [
            (
                &[("type", "t"), ("source", "/s")][..],
                "missing required attribute id",
            ),
            (
                &[("id", "1"), ("source", "/s")][..],
                "missing required attribute type",
            ),
            (
                &[("id", "1"), ("type", "t")][..],
                "missing required attribute source",
            ),
        ] {
            let e = parts(SpecVersion::V10, attrs).into_event(None).unwrap_err();
            assert_eq!(e.0, needle);
        }
        let e = parts(SpecVersion::V10, &[("time", "noon")])
            .with_required()
            .into_event(None)
            .unwrap_err();
        assert!(e.0.contains("attribute time must be an RFC 3339"), "{e}");
        let e = parts(SpecVersion::V10, &[("dataschema", "/relative")])
            .with_required()
            .into_event(None)
            .unwrap_err();
        assert!(
            e.0.contains("attribute dataschema must be an absolute URI"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_source_is_left_for_the_checks_that_name_it() {
        let e = parts(
            SpecVersion::V10,
            &[("id", "1"), ("type", "t"), ("source", "")],
        )
        .into_event(None)
        .unwrap();
        assert_eq!(e.source().as_str(), "");
    }
}
