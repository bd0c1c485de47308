//! The event catalog's rules: groups, payload schemas (JSON Schema draft 7)
//! and examples.

use serde_json::{Map, Value, json};

/// The group of an event type is its dot prefix: `ticket.created` → `ticket`.
pub fn group_of(name: &str) -> Option<&str> {
    name.split_once('.').map(|(group, _)| group).filter(|g| !g.is_empty())
}

/// The newest schema of an event type: `schemas` is keyed by version
/// (`{"1": {...}, "2": {...}}`); the highest number wins.
pub fn latest_schema(schemas: &Value) -> Option<&Value> {
    schemas
        .as_object()?
        .iter()
        .filter_map(|(version, schema)| Some((version.parse::<u64>().ok()?, schema)))
        .max_by_key(|(version, _)| *version)
        .map(|(_, schema)| schema)
}

/// A compiled payload schema.
pub struct PayloadSchema(jsonschema::Validator);

/// A payload's first problems: where (JSON path segments) and why.
pub type PayloadProblems = Vec<(Vec<String>, String)>;

/// Most problems reported for one payload.
const MAX_PROBLEMS: usize = 10;

impl PayloadSchema {
    /// Compiles a draft 7 schema; the error says what is wrong with it.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::draft7::new(schema).map(Self).map_err(|e| e.to_string())
    }

    pub fn check(&self, payload: &Value) -> Result<(), PayloadProblems> {
        let problems: PayloadProblems = self
            .0
            .iter_errors(payload)
            .take(MAX_PROBLEMS)
            .map(|e| (pointer_segments(e.instance_path().as_str()), e.to_string()))
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// `/a/0/b~1c` → `["a", "0", "b/c"]`.
fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The example to send for a test event: the schema's `examples[index]`,
/// else a sample built from the schema, else an empty object.
pub fn example(schemas: Option<&Value>, index: usize) -> Option<Value> {
    let Some(schema) = schemas.and_then(latest_schema) else {
        return (index == 0).then(|| json!({}));
    };
    match schema.get("examples").and_then(Value::as_array) {
        Some(examples) if !examples.is_empty() => examples.get(index).cloned(),
        _ => (index == 0).then(|| sample(schema, 0)),
    }
}

/// Deepest nesting a generated sample follows (schemas may be recursive).
const MAX_SAMPLE_DEPTH: usize = 8;

/// A value that fits common schemas: objects with their properties,
/// the first enum or const, and a plain value per type.
pub fn sample(schema: &Value, depth: usize) -> Value {
    if depth > MAX_SAMPLE_DEPTH {
        return Value::Null;
    }
    if let Some(v) = schema.get("const").or_else(|| schema.get("default")) {
        return v.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema.get("examples").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "object",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    out.insert(name.clone(), sample(prop, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => match schema.get("items") {
            Some(items) if items.is_object() => json!([sample(items, depth + 1)]),
            _ => json!([]),
        },
        "string" => json!(string_sample(schema)),
        "integer" => json!(schema.get("minimum").and_then(Value::as_i64).unwrap_or(1)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.5)),
        "boolean" => json!(true),
        _ => Value::Null,
    }
}

fn string_sample(schema: &Value) -> String {
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
        Some("date") => "2026-01-01".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri") | Some("url") => "https://example.com/".to_owned(),
        Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
        _ => {
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut s = "string".to_owned();
            while s.len() < min {
                s.push('x');
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket_schema() -> Value {
        json!({
            "type": "object",
            "required": ["ticketId", "status"],
            "properties": {
                "ticketId": {"type": "integer", "minimum": 1},
                "status": {"type": "string", "enum": ["open", "pending", "closed"]},
                "requester": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
                "tags": {"type": "array", "items": {"type": "string"}}
            }
        })
    }

    #[test]
    fn the_group_is_the_dot_prefix() {
        assert_eq!(group_of("ticket.created"), Some("ticket"));
        assert_eq!(group_of("sla.breach.soon"), Some("sla"));
        assert_eq!(group_of("ping"), None);
        assert_eq!(group_of(".odd"), None);
    }

    #[test]
    fn the_highest_version_is_the_schema_in_force() {
        let schemas = json!({"1": {"title": "one"}, "10": {"title": "ten"}, "2": {"title": "two"}});
        assert_eq!(latest_schema(&schemas).unwrap()["title"], "ten");
        assert_eq!(latest_schema(&json!({})), None);
    }

    #[test]
    fn a_bad_payload_names_the_field_and_the_reason() {
        let schema = PayloadSchema::compile(&ticket_schema()).unwrap();
        assert!(schema.check(&json!({"ticketId": 4, "status": "open"})).is_ok());
        let problems = schema.check(&json!({"ticketId": 0, "status": "open"})).unwrap_err();
        assert_eq!(problems[0].0, vec!["ticketId"]);
        assert!(problems[0].1.contains("minimum"), "{}", problems[0].1);
        let problems = schema.check(&json!({"ticketId": 4})).unwrap_err();
        assert!(problems[0].1.contains("status"), "{}", problems[0].1);
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        assert!(PayloadSchema::compile(&json!({"type": "no-such-type"})).is_err());
    }

    #[test]
    fn examples_come_first_then_a_sample_that_fits_the_schema() {
        let mut with_examples = ticket_schema();
        with_examples["examples"] = json!([{"ticketId": 7, "status": "closed"}]);
        let schemas = json!({"1": with_examples});
        assert_eq!(
            example(Some(&schemas), 0),
            Some(json!({"ticketId": 7, "status": "closed"}))
        );
        assert_eq!(example(Some(&schemas), 1), None);

        let schemas = json!({"1": ticket_schema()});
        let generated = example(Some(&schemas), 0).unwrap();
        assert!(
            PayloadSchema::compile(&ticket_schema())
                .unwrap()
                .check(&generated)
                .is_ok(),
            "{generated}"
        );
        assert_eq!(generated["requester"]["email"], "user@example.com");
        assert_eq!(example(None, 0), Some(json!({})));
    }

    #[test]
    fn recursive_schemas_still_give_a_finite_sample() {
        let schema = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
        let _ = sample(&schema, 0);
    }
}
