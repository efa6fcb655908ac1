"""The shipped JSON Schema, docs/openapi.json and the answer models agree with what the code produces."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import jsonschema
import orjson
import pytest
from openapi_spec_validator import validate

from api.openapi import document
from shared.model import answers as schemas
from shared.model.render import render
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import QueuePosition, project
from shared.model.schema_file import generated, shipped

NOW = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)


def _queue(status: str, **kw: object) -> QueueRow:
    values: dict[str, object] = {
        "id": UUID(int=7),
        "username": "Mike",
        "status": status,
        "priority": "HIGH",
        "timestamp": NOW - timedelta(minutes=5),
        "last_attempt": NOW - timedelta(seconds=90),
        "attempts": 1,
        "error_message": None,
        "request_id": "r1",
        "created_at": NOW - timedelta(minutes=5),
    }
    values.update(kw)
    return QueueRow(**values)  # type: ignore[arg-type]


DOCUMENTS = [
    project("mike", [ProfileRow(UUID(int=1), "Mike", NOW, NOW, None, 10, 2)], [], version=5, projected_at=NOW),
    project("mike", [], [_queue("PENDING")], version=6, projected_at=NOW),
    project("mike", [], [_queue("PROCESSING")], version=7, projected_at=NOW),
    project("mike", [], [_queue("FAILED", attempts=2, error_message="x")], version=8, projected_at=NOW),
    project("mike", [], [_queue("WEIRD", priority=None, attempts=None, last_attempt=None)], version=9, projected_at=NOW),
    project("mike", [], [], version=10, projected_at=NOW),
]


def test_the_shipped_schema_is_the_generated_one() -> None:
    # Regenerate: python -m shared.model.schema_file > shared/model/schema/status-document.json
    assert shipped() == generated()


def test_the_openapi_file_in_docs_is_the_generated_one() -> None:
    # Regenerate: python -m api.openapi > docs/openapi.json
    path = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(document())), "docs/openapi.json is stale"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.state.value + (d.queue.status or "" if d.queue else ""))
def test_stored_documents_validate_against_the_shipped_schema(doc: object) -> None:
    jsonschema.validate(orjson.loads(doc.model_dump_json()), shipped())  # type: ignore[attr-defined]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.state.value + (d.queue.status or "" if d.queue else ""))
def test_rendered_answers_fit_the_openapi_models(doc: object) -> None:
    position = QueuePosition(ahead=2, total=9)
    data = render(doc, NOW, position)  # type: ignore[arg-type]
    schemas.StatusResponse.model_validate({"success": True, "data": data})


def test_the_openapi_document_is_valid() -> None:
    validate(document())

