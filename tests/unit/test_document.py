"""`StatusDocument.to_json` is `model_dump_json` (faster), and `trusted` is `model_construct` (faster)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.model.document import (
    ProfileFacts,
    QueueFacts,
    State,
    StatusDocument,
    facts_json,
    trusted,
)
from shared.model.rules import project
from shared.model.schema_file import shipped
from tests.unit.test_rules_reference import PROJECTED_AT, VERSIONS, random_usernames


def _projected(seed: int, count: int) -> list[StatusDocument]:
    rng = random.Random(seed)
    return [
        project(name, rows.profiles, rows.queue, version=rng.choice(VERSIONS), projected_at=rng.choice(PROJECTED_AT))
        for name, rows in random_usernames(seed, count)
    ]


DOCUMENTS = _projected(21, 3000)


def test_to_json_is_model_dump_json_byte_for_byte() -> None:
    states = {doc.state for doc in DOCUMENTS}
    assert states == set(State)
    for doc in DOCUMENTS:
        assert doc.to_json() == doc.model_dump_json().encode()


def test_to_json_of_documents_read_back_is_model_dump_json() -> None:
    # Documents the reader parses carry pydantic's own tzinfo type.
    for doc in DOCUMENTS[:500]:
        again = StatusDocument.model_validate_json(doc.to_json())
        assert again == doc
        assert again.to_json() == again.model_dump_json().encode() == doc.to_json()


def test_to_json_of_validated_documents_in_any_offset() -> None:
    zones = [UTC, ZoneInfo("Europe/Amsterdam"), timezone(timedelta(hours=-9, minutes=-30)), None]
    for i, zone in enumerate(zones):
        at = datetime(2026, 3, 29, 1, 59, 59, i * 250_000, tzinfo=zone)
        doc = StatusDocument(
            username="mike_1",
            version=2**53 + i,
            projected_at=at,
            digest="00ff",
            state=State.QUEUED,
            queue=QueueFacts(
                id="00000000-0000-0000-0000-000000000007", status="PENDING", priority=None, attempts=0,
                request_id=None, timestamp=at, last_attempt=None, error_message="é\n", queue_member=None,
            ),
        )
        assert doc.to_json() == doc.model_dump_json().encode()


def test_to_json_falls_back_to_pydantic_beyond_64_bit_integers() -> None:
    doc = StatusDocument(username="x", version=2**70, projected_at=PROJECTED_AT[0], digest="ab", state=State.NOT_FOUND)
    assert doc.to_json() == doc.model_dump_json().encode()
    assert b'"version":1180591620717411303424' in doc.to_json()


def test_to_json_fits_the_shipped_schema() -> None:
    schema = shipped()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for doc in DOCUMENTS[:300]:
        validator.validate(orjson.loads(doc.to_json()))


def test_facts_json_is_the_facts_model_dump_json() -> None:
    for doc in DOCUMENTS:
        facts = doc.profile or doc.queue
        if facts is not None:
            assert facts_json(dict(facts.__dict__)) == facts.model_dump_json().encode()


# --------------------------------------------------------------------------- trusted construction


def _fields(doc: StatusDocument) -> dict[str, Any]:
    return dict(doc.__dict__)


@pytest.mark.parametrize("doc", DOCUMENTS[:50])
def test_trusted_equals_model_construct(doc: StatusDocument) -> None:
    fields = _fields(doc)
    built = trusted(StatusDocument, dict(fields))
    reference = StatusDocument.model_construct(**fields)
    assert built == reference
    assert built.__dict__ == reference.__dict__
    assert list(built.__dict__) == list(StatusDocument.model_fields)
    assert built.model_dump() == reference.model_dump()
    assert built.model_extra is None and built.__pydantic_private__ is None
    assert built.model_fields_set == set(StatusDocument.model_fields)


def test_trusted_instances_stay_frozen_and_copies_do_not_share_their_fields_set() -> None:
    fields = {"created_at": None, "last_scraped_at": None, "followers_count": 1, "posts_count": 2}
    a = trusted(ProfileFacts, dict(fields))
    b = trusted(ProfileFacts, dict(fields))
    with pytest.raises(ValidationError):
        a.followers_count = 5  # type: ignore[misc]
    copy = a.model_copy(update={"followers_count": 3})
    assert copy.followers_count == 3 and a.followers_count == 1
    assert a.model_fields_set == b.model_fields_set == set(fields)
    assert a == b == ProfileFacts(**fields)


def test_trusted_refuses_a_model_that_is_not_frozen() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(frozen=False)
        x: int

    with pytest.raises(TypeError):
        trusted(Open, {"x": 1})
