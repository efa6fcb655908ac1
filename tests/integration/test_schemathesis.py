"""Property-based requests generated from /openapi.json against the running API: never a 500, always the documented shapes."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

from tests.integration.stack import ApiThread  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("projector")]


def test_generated_requests_never_fail_the_server(api: ApiThread) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    # Streams stay open by design; they are tested in test_polling_and_push.py and test_streams.py.
    operations = [
        op.ok()
        for op in schema.get_all_operations()
        if op.ok().path not in ("/api/profile/{username}/status/stream", "/api/status/stream", "/metrics")
    ]
    assert len(operations) >= 5
    calls = 0
    for operation in operations:
        for case in _cases(operation):
            response = case.call(timeout=10)
            calls += 1
            # Raises, with the offending request and response, on a 500 or an undocumented shape.
            case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
    assert calls >= 50, calls


def _cases(operation):  # type: ignore[no-untyped-def]
    from hypothesis import HealthCheck, given, settings

    found = []

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def collect(case) -> None:  # type: ignore[no-untyped-def]
        found.append(case)

    collect()
    return found
