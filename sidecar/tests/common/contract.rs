//! The signer's OpenAPI document (docs/reference/signer.openapi.yaml) as the oracle of the API
//! tests: [`assert_matches`] holds one exchange, a request and its answer, to it.
//!
//! An answer matches when the document lists its route and method, lists its status for
//! them (no `default`: an answer with a status the document does not give is a failure), its
//! `Content-Type` is one the document gives for that status, every header the document
//! requires is there (and of its schema), and its body is valid under that schema (JSON
//! Schema 2020-12, formats checked). Bodies are checked *closed*: an object may carry no
//! property its schema does not name, so a field the signer adds is caught until the document
//! describes it (the document itself stays open: clients ignore fields they do not know). A
//! path the document does not list must answer the router's fallback, the `NotFound`
//! response. A request body the signer accepted (2xx) must be valid under the operation's
//! request schema, so the document never asks for less than the signer takes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

/// Routes the router serves that the document leaves out on purpose: (method, path, why).
pub const EXCLUDED: &[(&str, &str, &str)] = &[(
    "POST",
    "/bench/ceiling",
    "served only when benchmarking (--bench-ceiling): POST /uploads's exchange without the \
     signing, never part of the API",
)];

/// HTTP methods an OpenAPI path item may hold.
pub const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub fn document_path() -> PathBuf {
    // Cargo's value at run time: the build cache is shared between checkouts, and the path
    // compiled in may be another checkout's.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../docs/reference/signer.openapi.yaml")
}

/// The document, loaded once.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract::parse(&std::fs::read_to_string(document_path()).unwrap()))
}

/// One request and its answer.
pub struct Exchange<'a> {
    pub method: &'a str,
    /// The path, with the query if any.
    pub uri: &'a str,
    /// The request's body, when it was JSON.
    pub request: Option<&'a Value>,
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Panics, naming the mismatch, unless `exchange` matches the document.
pub fn assert_matches(exchange: &Exchange) {
    if let Err(e) = contract().check(exchange) {
        panic!(
            "{} {} -> {}: does not match docs/reference/signer.openapi.yaml: {e}\nthe answer: {}",
            exchange.method,
            exchange.uri,
            exchange.status,
            String::from_utf8_lossy(exchange.body)
        );
    }
}

/// Where a request lands in the document.
pub enum Route<'a> {
    /// An operation: its path template and the operation object.
    Operation(String, &'a Value),
    /// A listed path (this template) without the request's method.
    NoSuchMethod(String),
    /// No listed path.
    Unlisted,
}

type Validators = HashMap<(bool, String), Arc<jsonschema::Validator>>;

pub struct Contract {
    pub doc: Value,
    /// `components.schemas` with every object schema closed (see [`close`]).
    closed_schemas: Value,
    validators: Mutex<Validators>,
}

impl Contract {
    pub fn parse(yaml: &str) -> Self {
        let doc: Value = serde_yaml::from_str(yaml).expect("the OpenAPI document is YAML");
        let mut closed_schemas = doc["components"]["schemas"].clone();
        if let Value::Object(schemas) = &mut closed_schemas {
            schemas.values_mut().for_each(close);
        }
        Self {
            doc,
            closed_schemas,
            validators: Mutex::default(),
        }
    }

    /// What a local `$ref` (`#/...`) points at, following chains; `v` itself when it is no
    /// reference. Panics on a reference that resolves to nothing.
    pub fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                return v;
            };
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r}: only local references are used"));
            v = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{r} resolves to nothing"));
        }
        panic!("a $ref chain longer than 16")
    }

    /// Every operation: (METHOD, path template, operation).
    pub fn operations(&self) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            let item = self.resolve(item);
            for m in METHODS {
                if let Some(op) = item.get(*m) {
                    out.push((m.to_ascii_uppercase(), path.clone(), op));
                }
            }
        }
        out
    }

    /// The operation for `method` and a concrete `path` (no query): the most specific listed
    /// template (concrete segments before templated ones, as OpenAPI matches).
    pub fn route(&self, method: &str, path: &str) -> Route<'_> {
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &String, &Value)> = None;
        for (template, item) in self.doc["paths"].as_object().expect("paths") {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut templated = 0;
            let fits = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    templated += 1;
                    !s.is_empty()
                } else {
                    t == s
                }
            });
            if fits && best.is_none_or(|(n, ..)| templated < n) {
                best = Some((templated, template, item));
            }
        }
        let Some((_, template, item)) = best else {
            return Route::Unlisted;
        };
        match self.resolve(item).get(method.to_ascii_lowercase()) {
            Some(op) => Route::Operation(template.clone(), op),
            None => Route::NoSuchMethod(template.clone()),
        }
    }

    /// Whether `exchange` matches the document; what does not, otherwise.
    pub fn check(&self, exchange: &Exchange) -> Result<(), String> {
        let path = exchange.uri.split('?').next().unwrap_or_default();
        let excluded = EXCLUDED
            .iter()
            .any(|(m, p, _)| m.eq_ignore_ascii_case(exchange.method) && *p == path);
        if excluded && exchange.status != 404 {
            return Ok(());
        }
        let status = exchange.status.to_string();
        let response = match self.route(exchange.method, path) {
            Route::Operation(template, op) => {
                let Some(response) = op["responses"].get(&status) else {
                    let listed: Vec<&String> = op["responses"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                        .collect();
                    return Err(format!(
                        "the document gives {} {template} no {status} response (it lists {listed:?})",
                        exchange.method
                    ));
                };
                if (200..300).contains(&exchange.status) {
                    self.check_request(exchange, &template, op)?;
                }
                response
            }
            Route::NoSuchMethod(template) => {
                return Err(format!(
                    "the document lists {template} without {}, yet it answered {status}",
                    exchange.method
                ));
            }
            Route::Unlisted if exchange.status == 404 => {
                let code = serde_json::from_slice::<Value>(exchange.body).unwrap_or_default()
                    ["error"]["code"]
                    .clone();
                if code != "NotFound" {
                    return Err(format!(
                        "the path is in no route of the document, and its 404 is {code}, not the fallback's NotFound"
                    ));
                }
                &self.doc["components"]["responses"]["NotFound"]
            }
            Route::Unlisted => {
                return Err(format!(
                    "the path is in no route of the document, yet it answered {status} (a route missing from the document?)"
                ));
            }
        };
        self.check_response(self.resolve(response), exchange)
    }

    /// A body the signer accepted is valid under the operation's request schema.
    fn check_request(&self, exchange: &Exchange, template: &str, op: &Value) -> Result<(), String> {
        let Some(sent) = exchange.request else {
            return Ok(());
        };
        let Some(body) = op.get("requestBody") else {
            return Err(format!(
                "a JSON body was accepted by {} {template}, which the document gives no body",
                exchange.method
            ));
        };
        let schema = &self.resolve(body)["content"]["application/json"]["schema"];
        self.validate(schema, sent, false)
            .map_err(|e| format!("the signer accepted a request body the document refuses: {e}"))
    }

    fn check_response(&self, response: &Value, exchange: &Exchange) -> Result<(), String> {
        for (name, header) in response
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let header = self.resolve(header);
            match exchange.headers.get(name) {
                None if header["required"] == true => {
                    return Err(format!(
                        "the document requires header {name}, which is missing"
                    ));
                }
                None => {}
                Some(value) => {
                    let text = value
                        .to_str()
                        .map_err(|_| format!("header {name} is not text"))?;
                    if let Some(schema) = header.get("schema") {
                        let instance = match self.resolve(schema)["type"].as_str() {
                            Some("integer") => {
                                text.parse::<i64>().map(Value::from).map_err(|_| {
                                    format!("header {name}: {text:?} is not an integer")
                                })?
                            }
                            _ => Value::String(text.to_owned()),
                        };
                        self.validate(schema, &instance, false)
                            .map_err(|e| format!("header {name}: {e}"))?;
                    }
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if exchange.body.is_empty() {
                return Ok(());
            }
            return Err("the document gives this answer no body, yet it has one".into());
        };
        let content_type = exchange
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = |t: &str| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        };
        let Some((media, media_object)) = content
            .iter()
            .find(|(k, _)| essence(k) == essence(content_type))
        else {
            let listed: Vec<&String> = content.keys().collect();
            return Err(format!(
                "content-type {content_type:?}, where the document gives {listed:?}"
            ));
        };
        let Some(schema) = media_object.get("schema") else {
            return Ok(());
        };
        let essence = essence(media);
        let instance = if essence == "application/json" || essence.ends_with("+json") {
            serde_json::from_slice(exchange.body)
                .map_err(|e| format!("the body is not JSON: {e}"))?
        } else {
            Value::String(
                String::from_utf8(exchange.body.to_vec()).map_err(|_| "the body is not UTF-8")?,
            )
        };
        self.validate(schema, &instance, true)
    }

    /// Validates `instance` against `schema` (a schema object of the document, which may
    /// refer to `#/components/schemas/...`); `closed`: with every object closed.
    pub fn validate(&self, schema: &Value, instance: &Value, closed: bool) -> Result<(), String> {
        let validator = self.validator(schema, closed);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| {
                let mut text = e.to_string();
                if text.len() > 300 {
                    let cut = (0..=300).rev().find(|i| text.is_char_boundary(*i)).unwrap();
                    text.truncate(cut);
                    text.push_str("...");
                }
                match e.instance_path().to_string() {
                    at if at.is_empty() => text,
                    at => format!("{at}: {text}"),
                }
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        // A `oneOf` says only that no branch fits: name what is wrong with the branch the
        // discriminator picks.
        if let Some(branch) = self.discriminated(schema, instance)
            && let Err(e) = self.validate(&json!({ "$ref": branch }), instance, closed)
        {
            return Err(format!("as {branch}: {e}"));
        }
        Err(errors.join("; "))
    }

    /// The schema `schema`'s discriminator picks for `instance`, if it has one.
    fn discriminated(&self, schema: &Value, instance: &Value) -> Option<String> {
        let discriminator = self.resolve(schema).get("discriminator")?;
        let value = instance
            .get(discriminator["propertyName"].as_str()?)?
            .as_str()?;
        Some(discriminator["mapping"][value].as_str()?.to_owned())
    }

    /// A validator for `schema`: a JSON Schema 2020-12 document of its own, the schema at its
    /// root with the document's `components` beside it, so `#/components/schemas/...`
    /// resolves. Built once per schema.
    fn validator(&self, schema: &Value, closed: bool) -> Arc<jsonschema::Validator> {
        let key = (closed, schema.to_string());
        if let Some(v) = self.validators.lock().unwrap().get(&key) {
            return v.clone();
        }
        let mut root: Map<String, Value> = match schema {
            Value::Object(m) => m.clone(),
            other => panic!("a schema that is not an object: {other}"),
        };
        assert!(
            !root.contains_key("components"),
            "a schema with a components keyword"
        );
        if closed {
            let mut closed_root = Value::Object(root);
            close(&mut closed_root);
            root = match closed_root {
                Value::Object(m) => m,
                _ => unreachable!(),
            };
        }
        let schemas = if closed {
            self.closed_schemas.clone()
        } else {
            self.doc["components"]["schemas"].clone()
        };
        root.insert("components".into(), json!({ "schemas": schemas }));
        root.insert(
            "$schema".into(),
            Value::String("https://json-schema.org/draft/2020-12/schema".into()),
        );
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|e| panic!("a schema of the document does not compile: {e}: {schema}"));
        let validator = Arc::new(validator);
        self.validators
            .lock()
            .unwrap()
            .insert(key, validator.clone());
        validator
    }
}

/// Closes every object schema in `schema` that names its properties and says nothing of
/// others: `unevaluatedProperties: false`, so an instance may carry no property it does not
/// name. (Objects are composed by `oneOf` of whole objects in the document, never extended by
/// `allOf`, which closing each part would break.)
pub fn close(schema: &mut Value) {
    let Value::Object(m) = schema else {
        return;
    };
    if m.contains_key("properties")
        && !m.contains_key("additionalProperties")
        && !m.contains_key("unevaluatedProperties")
    {
        m.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    for (keyword, v) in m.iter_mut() {
        match keyword.as_str() {
            "properties" | "patternProperties" | "$defs" | "dependentSchemas" => {
                if let Value::Object(named) = v {
                    named.values_mut().for_each(close);
                }
            }
            "items"
            | "additionalProperties"
            | "unevaluatedProperties"
            | "unevaluatedItems"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames" => close(v),
            "oneOf" | "anyOf" | "allOf" | "prefixItems" => {
                if let Value::Array(list) = v {
                    list.iter_mut().for_each(close);
                }
            }
            _ => {}
        }
    }
}
