//! The OpenAPI 3.1 document of the serving endpoints (`GET /openapi.json`).

use axum::Json;
use serde_json::{Value, json};

fn tensor() -> Value {
    json!({
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16"]},
            "data": {"type": "array", "description": "row-major, flat or nested"}
        }
    })
}

fn error() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}})
}

pub async fn document() -> Json<Value> {
    let infer = json!({
        "post": {
            "summary": "Predict (Open Inference Protocol v2)",
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["inputs"],
                "properties": {"id": {"type": "string"}, "parameters": {"type": "object"}, "inputs": {"type": "array", "items": tensor()}}
            }}}},
            "responses": {
                "200": {"description": "predictions", "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"}, "outputs": {"type": "array", "items": tensor()}}
                }}}},
                "400": error(), "404": error(), "413": error(), "503": error()
            }
        }
    });
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Capstan serving", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": {"description": "live"}}}},
            "/v2/health/ready": {"get": {"summary": "Readiness", "responses": {"200": {"description": "ready"}, "503": error()}}},
            "/v2/models/{name}": {"get": {"summary": "Model metadata: inputs, outputs, served version", "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "metadata"}, "404": error()}}},
            "/v2/models/{name}/ready": {"get": {"summary": "Model readiness", "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {"200": {"description": "ready"}, "404": error()}}},
            "/v2/models/{name}/infer": infer,
            "/invocations": {"post": {
                "summary": "Predict (MLflow scoring protocol) with the single served model",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "dataframe_split": {"type": "object", "properties": {"columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array"}}},
                    "dataframe_records": {"type": "array", "items": {"type": "object"}},
                    "instances": {"type": "array"},
                    "inputs": {"type": "array"}
                }}}}},
                "responses": {"200": {"description": "predictions", "content": {"application/json": {"schema": {"type": "object", "properties": {"predictions": {"type": "array"}}}}}}, "400": error(), "404": error(), "503": error()}
            }}
        }
    }))
}
