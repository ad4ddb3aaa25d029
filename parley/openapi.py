"""OpenAPI 3.1 documents built from a declarative list of operations and the msgspec types they
take and answer: the machinery the admin API (moderation/admin/openapi.py) and the client REST
API (gateway/openapi.py) share. Each keeps its document in docs/openapi/, rewritten by
`write_copy` and checked by a test that fails when the copy is stale."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from parley import __version__

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "openapi"
REF = "#/components/schemas/{name}"
#: Path parameters declared as integers: ids and seqs, positive and at most 15 digits.
INT_PARAM = {"type": "integer", "minimum": 1, "maximum": 10**15 - 1}
STR_PARAM = {"type": "string", "minLength": 1, "maxLength": 64}


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented success (or non-error) answer: its status and the type of its body."""

    status: int
    type: Any
    description: str = "OK"
    media_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # the full path, `{name}` for each parameter
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    #: Error statuses this operation may answer -> why; their body is the document's error type.
    errors: Mapping[int, str] = field(default_factory=dict)
    body: Any = None  # a Struct, or a union of tagged Structs
    query: type | None = None
    #: Path parameters that are integers (the rest are opaque string ids).
    int_params: tuple[str, ...] = ()
    description: str | None = None
    #: False: no token needed (the document's default security does not apply).
    secured: bool = True
    operation_id: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.operation_id or operation_id(self.method, self.path)


def operation_id(method: str, path: str) -> str:
    """`POST /v1/uploads/{id}/complete` -> `post_v1_uploads_id_complete`."""
    return f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query string cannot say null: an optional parameter is simply left out."""
    options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
    if len(options) == 1:
        prop = {**options[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
    if prop.get("default", 0) is None:
        prop = {k: v for k, v in prop.items() if k != "default"}
    return prop


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": _not_null(prop)}
            for name, prop in schema["properties"].items()]


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": INT_PARAM if name in op.int_params else STR_PARAM}
            for name in re.findall(r"\{(\w+)\}", op.path)]


def document(*, title: str, description: str, operations: Sequence[Operation], error_type: type) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`: every type they name becomes a component, a
    query Struct becomes query parameters, and each error status answers `error_type`."""
    types: list[Any] = [error_type]
    for op in operations:
        types += [a.type for a in op.answers] + [t for t in (op.body, op.query) if t is not None]
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(unique, ref_template=REF)
    for component in components.values():
        # Dedented whichever msgspec renders them (0.23 dedents docstrings, earlier releases did not).
        if "description" in component:
            component["description"] = inspect.cleandoc(component["description"])
    by_type = dict(zip(unique, schemas))
    error = {"content": {"application/json": {"schema": by_type[error_type]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params = _path_parameters(op)
        if op.query is not None:
            params += _query_parameters(components.pop(op.query.__name__, None) or by_type[op.query])
        responses: dict[str, Any] = {
            str(a.status): {"description": a.description, "content": {a.media_type: {"schema": by_type[a.type]}}}
            for a in op.answers
        }
        responses.update({str(status): {"description": text, **error} for status, text in op.errors.items()})
        entry: dict[str, Any] = {"operationId": op.id, "summary": op.summary, "tags": [op.tag]}
        if op.description is not None:
            entry["description"] = op.description
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": False, "content": {"application/json": {"schema": by_type[op.body]}}}
        entry["responses"] = responses
        if not op.secured:
            entry["security"] = []
        entry.update(op.extensions)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


def render(doc: dict[str, Any]) -> str:
    """The document as kept in docs/openapi/: stable key order, so a diff shows what changed."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_copy(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(doc))
