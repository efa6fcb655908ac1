"""The JSON Schema of the Redis status document, as shipped in `shared/model/schema/status-document.json`.

Regenerate after changing `shared.model.document`: `python -m shared.model.schema_file > shared/model/schema/status-document.json`
(a test fails while the file and the model disagree).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from shared.model.document import StatusDocument

SCHEMA_ID = "https://profile-status/schema/status-document-v1.json"


def generated() -> dict[str, Any]:
    """The schema as the pydantic model defines it."""
    schema = StatusDocument.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def shipped() -> dict[str, Any]:
    """The schema file other services read."""
    return json.loads(resources.files("shared.model").joinpath("schema", "status-document.json").read_text())


if __name__ == "__main__":
    print(json.dumps(generated(), indent=2, sort_keys=True))
