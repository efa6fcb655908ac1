"""The documentation points only at files in the repository, and its generated parts are current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api import reference

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) in markdown, but not images' or code's brackets; targets with a scheme are external.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_file_in_the_repository(doc: Path) -> None:
    missing = []
    for target in _relative_links(doc):
        resolved = (doc.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            missing.append(target)
    assert not missing, f"{doc.name} links to what the repository does not hold: {missing}"


def test_the_docs_have_links_to_check() -> None:
    assert len(_relative_links(ROOT / "README.md")) >= 5


def test_no_document_cites_a_file_outside_the_repository() -> None:
    # CONTRACT.md is not in the repository: users read docs/api.md instead.
    sources = [
        *DOCS,
        *ROOT.glob("shared/**/*.py"),
        *ROOT.glob("api/*.py"),
        *ROOT.glob("projector/*.py"),
        *ROOT.glob("tests/**/*.py"),
    ]
    citing = [str(p.relative_to(ROOT)) for p in sources if p != Path(__file__) and "CONTRACT.md" in p.read_text()]
    assert not citing


def test_the_field_tables_of_api_md_are_generated_from_the_answers() -> None:
    # Regenerate: python -m api.reference
    text = reference.API_MD.read_text()
    assert reference.render(text) == text, "docs/api.md is stale: run python -m api.reference"
    assert text.count("<!-- fields: ") >= 10
