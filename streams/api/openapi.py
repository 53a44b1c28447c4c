"""The API's OpenAPI 3.0 document, served at /openapi.json (docs/api.md lists the same)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STR = {"type": "string"}
INT = {"type": "integer"}
NSTR = {"type": "string", "nullable": True}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": STR}}
OBJ: dict[str, Any] = {"type": "object"}
NUMBER_PARAM = {
    "name": "number",
    "in": "path",
    "required": True,
    "description": "a phone number, normalised by the configured numbering plan",
    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
}
ENTRY = {
    "type": "object",
    "required": ["number", "state", "expires_at_ms"],
    "properties": {
        "number": STR,
        "state": {"type": "string", "enum": ["active", "pending"]},
        "detector": STR,
        "alert_id": STR,
        "episode_id": STR,
        "reason": STR,
        "number_class": STR,
        "severity": STR,
        "expires_at_ms": INT,
        "expires_at": NSTR,
        "listed_at": NSTR,
        "approved_by": STR,
        "approved_at": NSTR,
    },
}
ALERT = {
    "type": "object",
    "required": ["alert_id", "number", "detector", "state", "action"],
    "properties": {
        "alert_id": STR,
        "episode_id": STR,
        "number": STR,
        "subject": STR,
        "detector": STR,
        "state": STR,
        "severity": STR,
        "action": STR,
        "reasons": {"type": "array", "items": STR},
        "event_time": NSTR,
        "detected_at": NSTR,
        "allowlisted": {"type": "boolean"},
    },
}
FEATURES = {
    "type": "object",
    "properties": {
        name: INT
        for name in (
            "calls",
            "answered",
            "short",
            "unallocated",
            "repeats",
            "sequential",
            "distinct",
        )
    }
    | {name: {"type": "number"} for name in ("answer_rate", "short_share", "distinct_share")},
}
SUBJECT = {
    "type": "object",
    "nullable": True,
    "required": ["subject", "kind", "windows", "episodes"],
    "properties": {
        "subject": STR,
        "kind": {"type": "string", "enum": ["number", "callee"]},
        "newest_call": NSTR,
        "windows": {"type": "object", "additionalProperties": FEATURES},
        "episodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["detector", "severity"],
                "properties": {"detector": STR, "severity": STR, "opened_at": NSTR},
            },
        },
        "chart": {
            "type": "object",
            "nullable": True,
            "properties": {
                "window": STR,
                "bucket_s": INT,
                "points": {"type": "array", "items": {"type": "array", "items": INT}},
                "thresholds": {"type": "array", "items": OBJ},
            },
        },
    },
}
NUMBER_VIEW = {
    "type": "object",
    "required": [
        "number",
        "number_class",
        "allowlisted",
        "caller",
        "callee",
        "interception",
        "alerts",
    ],
    "properties": {
        "number": STR,
        "number_class": STR,
        "allowlisted": {"type": "boolean"},
        "caller": SUBJECT,
        "callee": SUBJECT,
        "interception": {
            "type": "object",
            "required": ["entries", "held", "protection"],
            "properties": {
                "entries": {"type": "array", "items": ENTRY},
                "held": NSTR,
                "protection": {
                    "type": "object",
                    "nullable": True,
                    "properties": {
                        "victim": STR,
                        "callers": {"type": "array", "items": STR},
                        "alert_id": STR,
                        "expires_at": NSTR,
                    },
                },
            },
        },
        "alerts": {"type": "array", "items": ALERT},
    },
}
AUDIT_ENTRY = {
    "type": "object",
    "required": ["event_id", "event"],
    "properties": {
        "event_id": STR,
        "event": STR,
        "number": STR,
        "actor": STR,
        "reason": STR,
        "kind": STR,
        "alert_id": STR,
        "at_ms": STR,
        "at": NSTR,
    },
}
COUNT = {"type": "object", "required": ["entries"], "properties": {"entries": INT}}
REASON = {"type": "string", "maxLength": 500}

# path -> method -> (summary, parameters, request body schema or None, body required,
#                    200 schema, the other statuses it may answer)
OPERATIONS: dict[str, dict[str, tuple[str, list[Any], Any, bool, Any, tuple[int, ...]]]] = {
    "/numbers/{number}": {
        "get": (
            "A number's windows, features, open episodes, interception state and its alerts",
            [NUMBER_PARAM],
            None,
            False,
            NUMBER_VIEW,
            (400,),
        )
    },
    "/interceptions": {
        "get": (
            "Interception list entries, by state",
            [
                {
                    "name": "state",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": ["active", "pending", "all"],
                        "default": "all",
                    },
                }
            ],
            None,
            False,
            {
                "type": "object",
                "required": ["entries"],
                "properties": {"entries": {"type": "array", "items": ENTRY}},
            },
            (400,),
        )
    },
    "/interceptions/{number}/approve": {
        "post": (
            "Activate a pending entry (audited with the token's name)",
            [NUMBER_PARAM],
            {"type": "object", "properties": {"reason": REASON}},
            False,
            {
                "type": "object",
                "required": ["number", "result"],
                "properties": {
                    "number": STR,
                    "result": {"type": "string", "enum": ["approved"]},
                    "entries": {"type": "array", "items": ENTRY},
                },
            },
            (400, 404),
        )
    },
    "/interceptions/{number}/release": {
        "post": (
            "Remove a number's entries at once and hold it out for the grace period (a pending"
            " entry released is a rejection); audited with the token's name",
            [NUMBER_PARAM],
            {
                "type": "object",
                "required": ["reason"],
                "properties": {
                    "reason": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 500,
                        "pattern": r"\S",
                    },
                    "kind": {
                        "type": "string",
                        "enum": ["operator", "appeal"],
                        "default": "operator",
                    },
                },
            },
            True,
            {
                "type": "object",
                "required": ["number", "result", "held_for_s"],
                "properties": {
                    "number": STR,
                    "held_for_s": INT,
                    "result": {"type": "string", "enum": ["released", "rejected", "none"]},
                },
            },
            (400,),
        )
    },
    "/audit": {
        "get": (
            "The audit trail, oldest first (the newest `limit` entries)",
            [
                {
                    "name": "number",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
                },
                {
                    "name": "since",
                    "in": "query",
                    "required": False,
                    "description": "ISO-8601 time or epoch seconds",
                    "schema": STR,
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200},
                },
            ],
            None,
            False,
            {
                "type": "object",
                "required": ["entries"],
                "properties": {"entries": {"type": "array", "items": AUDIT_ENTRY}},
            },
            (400,),
        )
    },
    "/breaker": {
        "get": (
            "The interception breaker's state",
            [],
            None,
            False,
            {
                "type": "object",
                "required": ["open", "recent_auto_listings", "max", "window_s"],
                "properties": {
                    "open": {"type": "boolean"},
                    "recent_auto_listings": INT,
                    "max": INT,
                    "window_s": INT,
                },
            },
            (),
        )
    },
    "/alerts/recent": {
        "get": (
            "The newest alerts on the alert topic, newest first",
            [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                }
            ],
            None,
            False,
            {
                "type": "object",
                "required": ["alerts", "caught_up"],
                "properties": {
                    "alerts": {"type": "array", "items": ALERT},
                    "caught_up": {"type": "boolean"},
                },
            },
            (400,),
        )
    },
    "/allowlist": {
        "get": ("How many allowlist entries (never the numbers)", [], None, False, COUNT, ()),
        "post": (
            "Add a shared allowlist entry; it leaves the interception list at once",
            [],
            {
                "type": "object",
                "required": ["number"],
                "properties": {"number": {"type": "string", "minLength": 1, "maxLength": 40}},
            },
            True,
            COUNT,
            (400,),
        ),
    },
    "/allowlist/entries/{number}": {
        "delete": (
            "Remove a shared allowlist entry (audited)",
            [NUMBER_PARAM],
            None,
            False,
            COUNT,
            (400, 404),
        )
    },
    "/allowlist/reload": {
        "post": (
            "Re-read the allowlist file and the shared entries now",
            [],
            None,
            False,
            COUNT,
            (),
        )
    },
}
OPEN: dict[str, tuple[str, Any, tuple[int, ...]]] = {
    "/healthz": (
        "The process is alive",
        {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["alive"]}},
        },
        (),
    ),
    "/readyz": (
        "Ready only when Kafka and every Redis answer (503 otherwise)",
        {
            "type": "object",
            "required": ["status", "kafka", "redis", "intercept_redis"],
            "properties": {"status": STR, "kafka": STR, "redis": STR, "intercept_redis": STR},
        },
        (503,),
    ),
}
STATUS_TEXT = {
    400: "bad input: the error says what to fix",
    401: "no token, an unknown token, or no tokens configured",
    403: "the token's role is not enough",
    404: "nothing to act on",
    503: "not ready",
}


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def document(roles: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The document, given the role each (path, lower-case method) needs."""
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        for method, (summary, params, body, body_required, ok, others) in methods.items():
            role = roles[(path, method)]
            op: dict[str, Any] = {
                "summary": summary,
                "description": f"Needs a token of role {role} or above.",
                "security": [{"bearer": []}],
                "x-role": role,
                "parameters": params,
                "responses": {"200": {"description": "done", "content": _json(ok)}},
            }
            if body is not None:
                op["requestBody"] = {"required": body_required, "content": _json(body)}
            for status in (*others, 401, 403):
                op["responses"][str(status)] = {
                    "description": STATUS_TEXT[status],
                    "content": _json(ERROR),
                }
            paths.setdefault(path, {})[method] = op
    for path, (summary, ok, others) in OPEN.items():
        responses = {"200": {"description": "ok", "content": _json(ok)}}
        for status in others:
            responses[str(status)] = {"description": STATUS_TEXT[status], "content": _json(ok)}
        paths[path] = {"get": {"summary": summary, "security": [], "responses": responses}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "dialwatch operator API",
            "version": "1",
            "description": "The worker's HTTP API (docs/api.md). Roles: read-only < operator < admin.",  # noqa: E501
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
