"""The OpenAPI document (/docs, /openapi.json) of a server: /predict as mllib answers it, with the
status codes, error body and key requirement a client needs to know, plus /health and /metrics.
"""

from __future__ import annotations

from typing import Any

from mllib.serving.spec import ServerSpec

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "What went wrong."},
        "error_id": {
            "type": "string",
            "description": "Also in the server log, with the traceback.",
        },
        "hint": {"type": "string", "description": "What to do about it."},
    },
    "required": ["error", "error_id"],
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(app: Any, spec: ServerSpec) -> None:
    """Replace FastAPI's generated schema with one describing what this server really does."""
    schema = app.openapi()
    servable = spec.servable
    schema["info"] = {
        "title": f"{servable.model} v{servable.version_label} ({spec.env})",
        "version": servable.version_label,
        "description": f"The predict() of {servable.model_class} from run {servable.run_id}, served by mllib.",
    }
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    responses = {
        "200": {
            "description": "predict()'s result as JSON (numpy and pandas values converted).",
            "content": {"application/json": {"schema": {}}},
        },
        "400": _error("The body is not valid JSON."),
        "413": _error("The body is too large."),
        "500": _error("predict() raised, or returned something JSON cannot hold."),
        "503": _error("The model is still loading, or a worker is being restarted."),
        "504": _error("No prediction within the server's timeout."),
    }
    predict: dict[str, Any] = {
        "summary": "Predict",
        "description": "Any JSON document in, passed to the model's predict(request).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "parameters": [
            {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Echoed back and logged; one is made up when absent.",
            }
        ],
        "responses": responses,
    }
    if spec.keys:
        components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
        predict["security"] = [{"apiKey": []}]
        responses["401"] = _error("No valid API key (create one with `mllib keys create`).")
        responses["429"] = _error("The key's rate limit was exceeded; see the Retry-After header.")
    paths = schema.setdefault("paths", {})
    paths["/predict"] = {"post": predict}
    paths["/health"] = {
        "get": {
            "summary": "Health",
            "description": "200 once every worker has loaded the model; 503 while loading, "
            "after a worker died, or while shutting down.",
            "responses": {"200": {"description": "Ready."}, "503": {"description": "Not ready."}},
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "description": "Requests, errors and latency across every process of this server.",
            "responses": {"200": {"description": "Prometheus text format."}},
        }
    }
    app.openapi_schema = schema
