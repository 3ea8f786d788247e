//! The OpenAPI 3.1 document of the admin API, served at `GET /api/v1/openapi.json`.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(m)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The document.
pub fn document() -> Value {
    let name = json!([{"name": "name", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"}}]);
    let write_errors = ["400", "401", "403", "404", "409", "413", "415"];
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Sluice admin API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage WebAssembly plugins, the interceptors that run them, the security resources (service accounts, groups, ACLs) and the tenancy resources (virtual clusters, alias topics, concentration rules). With an admin token configured, every /api/v1 request needs `Authorization: Bearer <token>`, reads included: the admin token for writes, the admin or the read-only token for reads (a read-only token on a write is a 403; a missing or unknown token a 401 with `WWW-Authenticate: Bearer`). /health, /ready and this document are open; /metrics is open unless the gateway protects it (`admin.protectMetrics`), then either token reads it."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "details"], "properties": {
                    "error": {"type": "string"}, "details": {"type": "array", "items": {"type": "string"}}}},
                "KmsKey": {"type": "object", "properties": {
                    "id": {"type": "string"}, "provider": {"type": "string"},
                    "versions": {"type": "integer", "description": "built-in keys: the newest wraps new data keys"},
                    "dataKeys": {"type": "integer", "description": "data keys it wrapped that the gateway stores"},
                    "createdMs": {"type": "integer"}}},
                "Plugin": {"type": "object", "properties": {
                    "name": {"type": "string"}, "sha256": {"type": "string"}, "size": {"type": "integer"},
                    "hooks": {"type": "array", "items": {"enum": ["on-request", "on-response", "on-produce", "on-fetch"]}},
                    "apiKeys": {"type": "array", "items": {"type": "integer"}},
                    "usedBy": {"type": "array", "items": {"type": "string"}}}},
                "InterceptorSpec": {"type": "object", "required": ["plugin"], "additionalProperties": false, "properties": {
                    "plugin": {"type": "string"},
                    "priority": {"type": "integer", "default": 100, "description": "lower runs first on requests, last on responses"},
                    "scope": {"type": "object", "additionalProperties": false, "properties": {
                        "vcluster": {"type": "string"}, "group": {"type": "string"}, "username": {"type": "string"}}},
                    "config": {"type": "object", "default": {}},
                    "failurePolicy": {"enum": ["fail-closed", "fail-open"], "default": "fail-closed"},
                    "timeoutMs": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 50},
                    "memoryMb": {"type": "integer", "minimum": 1, "maximum": 512, "default": 64}}},
                "Interceptor": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/InterceptorSpec"}}},
                "ScramCredential": {"type": "object", "required": ["salt", "iterations", "storedKey", "serverKey"],
                    "additionalProperties": false, "properties": {
                    "salt": {"type": "string", "contentEncoding": "base64"},
                    "iterations": {"type": "integer", "minimum": 4096, "maximum": 16384},
                    "storedKey": {"type": "string", "contentEncoding": "base64"},
                    "serverKey": {"type": "string", "contentEncoding": "base64"}}},
                "ServiceAccountSpec": {"type": "object", "additionalProperties": false,
                    "description": "Exactly one of password and scram when creating; leave both out on an update to keep the current credentials. The password is write-only: only SCRAM credentials derived from it are stored.",
                    "properties": {
                    "password": {"type": "string", "writeOnly": true},
                    "scram": {"type": "object", "description": "precomputed credentials by mechanism",
                        "propertyNames": {"enum": ["SCRAM-SHA-256", "SCRAM-SHA-512"]},
                        "additionalProperties": {"$ref": "#/components/schemas/ScramCredential"}},
                    "groups": {"type": "array", "items": {"type": "string"}, "default": []},
                    "vcluster": {"type": ["string", "null"]},
                    "iterations": {"type": "integer", "minimum": 4096, "maximum": 16384, "default": 4096,
                        "description": "PBKDF2 iterations for password"}}},
                "ServiceAccount": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "spec": {"type": "object", "properties": {
                        "groups": {"type": "array", "items": {"type": "string"}},
                        "vcluster": {"type": ["string", "null"]},
                        "mechanisms": {"type": "array", "items": {"enum": ["SCRAM-SHA-256", "SCRAM-SHA-512"]}},
                        "iterations": {"type": "integer"}}}}},
                "GroupSpec": {"type": "object", "additionalProperties": false, "properties": {
                    "members": {"type": "array", "items": {"type": "string"}, "default": [],
                        "description": "principals: service accounts, mTLS subjects, OAuth subjects"},
                    "description": {"type": "string"}}},
                "Group": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/GroupSpec"}}},
                "AclSpec": {"type": "object", "additionalProperties": false,
                    "required": ["resourceType", "name", "operations"],
                    "description": "Exactly one of principal and group. A deny wins over any allow.",
                    "properties": {
                    "principal": {"type": "string", "description": "`*`: every authenticated principal"},
                    "group": {"type": "string"},
                    "resourceType": {"enum": ["topic", "group", "transactional-id", "cluster"]},
                    "patternType": {"enum": ["literal", "prefixed"], "default": "literal"},
                    "name": {"type": "string", "description": "literal `*`: every resource; cluster: `kafka-cluster` or `*`"},
                    "operations": {"type": "array", "minItems": 1, "items": {"enum": [
                        "all", "read", "write", "create", "delete", "alter", "describe", "cluster-action",
                        "describe-configs", "alter-configs", "idempotent-write"]}},
                    "permission": {"enum": ["allow", "deny"], "default": "allow"}}},
                "Acl": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/AclSpec"}}},
                "TenantLimits": {"type": "object", "additionalProperties": false,
                    "description": "null: unlimited", "properties": {
                    "maxTopics": {"type": ["integer", "null"], "minimum": 0, "default": null},
                    "maxPartitions": {"type": ["integer", "null"], "minimum": 0, "default": null,
                        "description": "over all of the tenant's topics"},
                    "maxConnections": {"type": ["integer", "null"], "minimum": 0, "default": null,
                        "description": "open at once on this gateway instance; 0 suspends the tenant"}}},
                "VirtualClusterSpec": {"type": "object", "additionalProperties": false,
                    "description": "A tenant. Two non-passthrough prefixes where one is a prefix of the other conflict (409), as do a principal or SNI host in two virtual clusters.",
                    "properties": {
                    "prefix": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,200}$",
                        "description": "physical prefix of the tenant's topics, groups and transactional ids; default `<name>.`; not with passthrough"},
                    "passthrough": {"type": "boolean", "default": false,
                        "description": "the tenant sees the physical cluster unchanged"},
                    "serviceAccounts": {"type": "array", "items": {"type": "string"}, "default": [],
                        "description": "principals that land in this virtual cluster (a service account's own vcluster counts too)"},
                    "sniHosts": {"type": "array", "items": {"type": "string", "format": "hostname"}, "default": [],
                        "description": "TLS SNI host names that land a connection here (case-insensitive)"},
                    "limits": {"$ref": "#/components/schemas/TenantLimits"}}},
                "VirtualCluster": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/VirtualClusterSpec"}}},
                "AliasTopicSpec": {"type": "object", "additionalProperties": false,
                    "required": ["vcluster", "logicalTopic", "physicalTopic"],
                    "description": "A logical topic of a virtual cluster that reads and writes an existing physical topic. One alias per logical topic and per physical topic in a virtual cluster; never inside another virtual cluster's prefix.",
                    "properties": {
                    "vcluster": {"type": "string"},
                    "logicalTopic": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"},
                    "physicalTopic": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"}}},
                "AliasTopic": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/AliasTopicSpec"}}},
                "ConcentrationRuleSpec": {"type": "object", "additionalProperties": false,
                    "required": ["vcluster", "logicalTopicPattern", "physicalTopic"],
                    "description": "Logical topics of a virtual cluster whose whole name matches the pattern are stored in one physical topic. Rules are tried in name order; an alias topic takes precedence.",
                    "properties": {
                    "vcluster": {"type": "string"},
                    "logicalTopicPattern": {"type": "string", "format": "regex", "maxLength": 1024},
                    "physicalTopic": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,249}$"}}},
                "ConcentrationRule": {"type": "object", "properties": {
                    "name": {"type": "string"}, "spec": {"$ref": "#/components/schemas/ConcentrationRuleSpec"}}}
            }
        },
        "paths": {
            "/health": {"get": {"summary": "Liveness", "security": [],
                "responses": {"200": {"description": "serving"}}}},
            "/ready": {"get": {"summary": "Readiness: a bootstrap server answers now", "security": [],
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (a token only with admin.protectMetrics)",
                "security": [{}, {"bearer": []}],
                "responses": {"200": {"description": "text exposition"}, "401": {"description": "protected and no valid token"}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": {"200": {"description": "the OpenAPI document"}}}},
            "/api/v1/plugins": {"get": {"summary": "List plugins", "responses": {"200": {"description": "plugins",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Plugin"}}}}}}}}}},
            "/api/v1/plugins/{name}": {
                "parameters": name,
                "get": {"summary": "Show a plugin", "responses": merge(json!({"200": {"description": "the plugin",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Plugin"}}}}}), error_responses(&["404"]))},
                "put": {"summary": "Upload or replace a plugin (raw component bytes)", "security": [{"bearer": []}],
                    "requestBody": {"required": true, "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": merge(json!({"200": {"description": "replaced"}, "201": {"description": "created"}}), error_responses(&write_errors))},
                "delete": {"summary": "Delete an unused plugin", "security": [{"bearer": []}],
                    "responses": merge(json!({"204": {"description": "deleted"}}), error_responses(&["401", "403", "404", "409"]))}
            },
            "/api/v1/interceptors": {"get": {"summary": "List interceptors", "responses": {"200": {"description": "interceptors",
                "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Interceptor"}}}}}}}}}},
            "/api/v1/interceptors/{name}": {
                "parameters": name,
                "get": {"summary": "Show an interceptor", "responses": merge(json!({"200": {"description": "the interceptor",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Interceptor"}}}}}), error_responses(&["404"]))},
                "put": {"summary": "Install or replace an interceptor", "security": [{"bearer": []}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InterceptorSpec"}}}},
                    "responses": merge(json!({"200": {"description": "replaced"}, "201": {"description": "created"}}), error_responses(&write_errors))},
                "delete": {"summary": "Remove an interceptor", "security": [{"bearer": []}],
                    "responses": merge(json!({"204": {"description": "removed"}}), error_responses(&["401", "403", "404"]))}
            },
            "/api/v1/kms/keys": {"get": {"summary": "List the key ids of plugin encryption (never their material)",
                "responses": {"200": {"description": "keys", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "provider": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/KmsKey"}}}}}}}}}},
            "/api/v1/kms/keys/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                "get": {"summary": "Show a key id", "responses": merge(json!({"200": {"description": "the key",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KmsKey"}}}}}), error_responses(&["404"]))},
                "delete": {"summary": "Delete a key id for good (crypto-shredding): every record sealed under it becomes unreadable for every reader, at once and after restarts; the id cannot be used again",
                    "security": [{"bearer": []}],
                    "responses": merge(json!({"200": {"description": "deleted", "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "id": {"type": "string"}, "dataKeys": {"type": "integer"}, "providerDeleted": {"type": "boolean"}}}}}}}),
                        error_responses(&["401", "403", "404", "503"]))}
            },
            "/api/v1/kms/keys/{id}/rotate": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                "post": {"summary": "Rotate a built-in key: a new version wraps new data keys, older versions still unwrap theirs (creates the key if needed)",
                    "security": [{"bearer": []}],
                    "responses": merge(json!({"200": {"description": "rotated", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KmsKey"}}}}}),
                        error_responses(&["401", "403", "409", "503"]))}
            }
        }
    });
    let paths = doc["paths"].as_object_mut().expect("paths is an object");
    // The tenancy resources check each other: writes and deletes can conflict (409).
    for (collection, schema, what, conflicts) in [
        (
            "service-accounts",
            "ServiceAccount",
            "service account",
            false,
        ),
        ("groups", "Group", "group", false),
        ("acls", "Acl", "ACL", false),
        (
            "virtual-clusters",
            "VirtualCluster",
            "virtual cluster",
            true,
        ),
        ("alias-topics", "AliasTopic", "alias topic", true),
        (
            "concentration-rules",
            "ConcentrationRule",
            "concentration rule",
            true,
        ),
    ] {
        let (list, one) = resource_paths(collection, schema, what, &name, conflicts);
        paths.insert(format!("/api/v1/{collection}"), list);
        paths.insert(format!("/api/v1/{collection}/{{name}}"), one);
    }
    // Reads of resources need a token too (when one is configured).
    for (path, item) in paths.iter_mut() {
        if path == "/api/v1/openapi.json" || !path.starts_with("/api/v1/") {
            continue;
        }
        if let Some(responses) = item.get_mut("get").and_then(|g| g.get_mut("responses")) {
            let with_401 = merge(responses.take(), error_responses(&["401"]));
            *responses = with_401;
        }
    }
    doc
}

/// The collection and item paths of a JSON resource with `{name, spec}` documents;
/// `conflicts`: a write or delete may be refused with 409.
fn resource_paths(
    collection: &str,
    schema: &str,
    what: &str,
    name: &Value,
    conflicts: bool,
) -> (Value, Value) {
    let (put_errors, delete_errors): (&[&str], &[&str]) = if conflicts {
        (
            &["400", "401", "403", "409", "413", "415"],
            &["401", "403", "404", "409"],
        )
    } else {
        (&["400", "401", "403", "413", "415"], &["401", "403", "404"])
    };
    let item = json!({"$ref": format!("#/components/schemas/{schema}")});
    let spec = json!({"$ref": format!("#/components/schemas/{schema}Spec")});
    let list = json!({"get": {"summary": format!("List {collection}"), "responses": {"200": {
        "description": collection,
        "content": {"application/json": {"schema": {"type": "object", "properties": {
            "items": {"type": "array", "items": item}}}}}}}}});
    let one = json!({
        "parameters": name,
        "get": {"summary": format!("Show a {what}"), "responses": merge(json!({"200": {
            "description": format!("the {what}"),
            "content": {"application/json": {"schema": item}}}}), error_responses(&["404"]))},
        "put": {"summary": format!("Create or replace a {what}"), "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": spec}}},
            "responses": merge(json!({
                "200": {"description": "replaced", "content": {"application/json": {"schema": item}}},
                "201": {"description": "created", "content": {"application/json": {"schema": item}}}}),
                error_responses(put_errors))},
        "delete": {"summary": format!("Delete a {what}"), "security": [{"bearer": []}],
            "responses": merge(json!({"204": {"description": "deleted"}}), error_responses(delete_errors))}
    });
    (list, one)
}
