//! JSON-schema pieces the derives cannot produce themselves, for the Kubernetes CRDs
//! (feature `schema`): Kubernetes wants structural schemas, so open-ended values and the
//! recursive filter dialect are described as objects whose fields the API server keeps as
//! written (`x-kubernetes-preserve-unknown-fields`), as Knative's own CRDs describe them.

use schemars::{json_schema, Schema, SchemaGenerator};

/// Any JSON value, kept as written.
pub fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// An object with any fields, kept as written.
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// A list of objects with any fields (nested `all`/`any` filters).
pub fn list_of_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// An ISO-8601 duration such as `PT10S`.
pub fn iso_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": "^P" })
}
