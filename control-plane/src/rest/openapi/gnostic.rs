//! The Swagger 2.0 document as gnostic's protobuf `openapi_v2.Document`, the form kubectl
//! downloads: a translation of the JSON document (the one source), field by field.

use prost::Message as _;
use serde_json::{Map, Value};

/// gnostic's OpenAPI v2 messages (the subset in `proto/openapi_v2.proto`).
#[allow(clippy::all, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/openapi.v2.rs"));
}

/// The protobuf encoding of the Swagger 2.0 document `doc`.
pub fn encode(doc: &Value) -> Vec<u8> {
    document(doc).encode_to_vec()
}

fn document(doc: &Value) -> pb::Document {
    pb::Document {
        swagger: text(&doc["swagger"]),
        info: Some(pb::Info {
            title: text(&doc["info"]["title"]),
            version: text(&doc["info"]["version"]),
        }),
        consumes: Vec::new(),
        produces: Vec::new(),
        paths: Some(pb::Paths {
            path: entries(&doc["paths"])
                .map(|(name, item)| pb::NamedPathItem {
                    name: name.clone(),
                    value: Some(path_item(item)),
                })
                .collect(),
        }),
        definitions: Some(pb::Definitions {
            additional_properties: named_schemas(&doc["definitions"]),
        }),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flat_map(Map::iter)
}

fn named_schemas(v: &Value) -> Vec<pb::NamedSchema> {
    entries(v)
        .map(|(name, s)| pb::NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

/// The `x-…` members of an object, each value as YAML (its JSON text, which is YAML).
fn extensions(v: &Value) -> Vec<pb::NamedAny> {
    entries(v)
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, value)| pb::NamedAny {
            name: k.clone(),
            value: Some(pb::Any {
                yaml: value.to_string(),
            }),
        })
        .collect()
}

fn schema(s: &Value) -> pb::Schema {
    pb::Schema {
        r#ref: text(&s["$ref"]),
        format: text(&s["format"]),
        description: text(&s["description"]),
        required: texts(&s["required"]),
        additional_properties: match &s["additionalProperties"] {
            Value::Bool(b) => Some(Box::new(pb::AdditionalPropertiesItem {
                oneof: Some(pb::additional_properties_item::Oneof::Boolean(*b)),
            })),
            v @ Value::Object(_) => Some(Box::new(pb::AdditionalPropertiesItem {
                oneof: Some(pb::additional_properties_item::Oneof::Schema(Box::new(
                    schema(v),
                ))),
            })),
            _ => None,
        },
        r#type: s["type"].as_str().map(|t| pb::TypeItem {
            value: vec![t.to_string()],
        }),
        items: s.get("items").map(|i| pb::ItemsItem {
            schema: vec![schema(i)],
        }),
        properties: s.get("properties").map(|p| pb::Properties {
            additional_properties: named_schemas(p),
        }),
        vendor_extension: extensions(s),
    }
}

fn path_item(item: &Value) -> pb::PathItem {
    let op = |method: &str| item.get(method).map(operation);
    pb::PathItem {
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        patch: op("patch"),
        parameters: parameters(&item["parameters"]),
    }
}

fn operation(o: &Value) -> pb::Operation {
    pb::Operation {
        description: text(&o["description"]),
        operation_id: text(&o["operationId"]),
        produces: texts(&o["produces"]),
        consumes: texts(&o["consumes"]),
        parameters: parameters(&o["parameters"]),
        responses: Some(pb::Responses {
            response_code: entries(&o["responses"])
                .map(|(code, r)| pb::NamedResponseValue {
                    name: code.clone(),
                    value: Some(pb::ResponseValue {
                        oneof: Some(pb::response_value::Oneof::Response(pb::Response {
                            description: text(&r["description"]),
                            schema: r.get("schema").map(|s| pb::SchemaItem {
                                oneof: Some(pb::schema_item::Oneof::Schema(schema(s))),
                            }),
                        })),
                    }),
                })
                .collect(),
        }),
        schemes: texts(&o["schemes"]),
        vendor_extension: extensions(o),
    }
}

fn parameters(v: &Value) -> Vec<pb::ParametersItem> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| pb::ParametersItem {
            oneof: Some(pb::parameters_item::Oneof::Parameter(parameter(p))),
        })
        .collect()
}

fn parameter(p: &Value) -> pb::Parameter {
    use pb::non_body_parameter::Oneof as NonBody;
    let required = p["required"].as_bool().unwrap_or(false);
    let unique_items = p["uniqueItems"].as_bool().unwrap_or(false);
    let oneof = match p["in"].as_str() {
        Some("body") => pb::parameter::Oneof::BodyParameter(pb::BodyParameter {
            description: text(&p["description"]),
            name: text(&p["name"]),
            r#in: "body".into(),
            required,
            schema: p.get("schema").map(schema),
        }),
        Some("path") => pb::parameter::Oneof::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::PathParameterSubSchema(
                pb::PathParameterSubSchema {
                    required,
                    r#in: "path".into(),
                    description: text(&p["description"]),
                    name: text(&p["name"]),
                    r#type: text(&p["type"]),
                    unique_items,
                },
            )),
        }),
        _ => pb::parameter::Oneof::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::QueryParameterSubSchema(
                pb::QueryParameterSubSchema {
                    required,
                    r#in: "query".into(),
                    description: text(&p["description"]),
                    name: text(&p["name"]),
                    r#type: text(&p["type"]),
                    unique_items,
                },
            )),
        }),
    };
    pb::Parameter { oneof: Some(oneof) }
}

#[cfg(test)]
pub(super) use pb::Document;
