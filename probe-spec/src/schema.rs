//! Hand-written schema pieces for fields whose derived schema does not say what we mean.
//!
//! Used through `#[schemars(schema_with = "...")]`; the doc comment of the field still becomes
//! the description, and kube's structural-schema transforms run over the result as usual.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::port::{PORT_NAME_MAX_LENGTH, PORT_NAME_PATTERN};

/// An int-or-string port: `minimum`/`maximum` bound numbers, `maxLength`/`pattern` bound names;
/// the apiserver applies each to values of its own type.
pub(crate) fn port(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "minimum": 1,
        "maximum": 65535,
        "minLength": 1,
        "maxLength": PORT_NAME_MAX_LENGTH,
        "pattern": PORT_NAME_PATTERN,
    })
}

/// An optional enum field. The derived schema of `Option<Enum>` lets the enum's own description
/// replace the field's; this one keeps the field's doc comment.
pub(crate) fn optional_enum<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = T::json_schema(generator);
    schema.remove("description");
    schema.remove("title");
    schema.insert("nullable".into(), true.into());
    schema
}
