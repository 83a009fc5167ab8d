//! What the node prints on stdout: readable lines, or with `--json` one JSON object a line
//! (`{"at_ms":…,"type":…,"text":…}` plus fields of the type) for log collectors.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::state::now_ms;

static JSON: OnceLock<bool> = OnceLock::new();

/// Chooses JSON lines (once, at start).
pub fn set_json(json: bool) {
    let _ = JSON.set(json);
}

pub fn is_json() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// One line of type `kind`: `text` as it is, or a JSON object with `fields` merged in.
pub fn line(kind: &str, text: &str, fields: Value) {
    if is_json() {
        let mut object = json!({ "at_ms": now_ms(), "type": kind, "text": text });
        if let (Some(object), Value::Object(fields)) = (object.as_object_mut(), fields) {
            object.extend(fields);
        }
        println!("{object}");
    } else {
        println!("{text}");
    }
}

/// A line without fields of its own.
pub fn say(kind: &str, text: &str) {
    line(kind, text, Value::Null);
}
