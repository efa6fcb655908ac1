"""The field tables of docs/api.md, generated from the answer models in `shared.model.answers`.

`python -m api.reference` rewrites every table between `<!-- fields: Model -->`
and `<!-- /fields -->` in docs/api.md; the prose around them is written by hand.
A unit test fails while a table differs from its model, so a new field reaches
the reference without anyone editing it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.model import answers

API_MD = Path(__file__).resolve().parents[1] / "docs" / "api.md"
_BLOCK = re.compile(r"(<!-- fields: (\w+) -->\n)(.*?)(<!-- /fields -->)", re.DOTALL)


def _type(prop: dict[str, Any]) -> str:
    """A JSON Schema property in a few words: `string (date-time) | null`, `"exists"`, `QueuedStatus`."""
    if "const" in prop:
        return f"`{_json(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{_json(v)}`" for v in prop["enum"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " \\| ".join(_type(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop:
        return f"object of {_type(prop['additionalProperties'])}"
    return f"{kind} ({prop['format']})" if "format" in prop else str(kind)


def _json(value: object) -> str:
    return "null" if value is None else f'"{value}"' if isinstance(value, str) else str(value).lower()


def table(model: type[BaseModel]) -> str:
    """The markdown table of one answer model: field, JSON type, description."""
    props = model.model_json_schema(mode="serialization")["properties"]
    lines = ["| field | type | description |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type(props[name])} | {description} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """`text` with every field table regenerated from its model."""

    def replace(match: re.Match[str]) -> str:
        model = getattr(answers, match.group(2))
        return match.group(1) + table(model) + match.group(4)

    return _BLOCK.sub(replace, text)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else API_MD
    path.write_text(render(path.read_text()))
