"""`verify` and `resync` as commands against a Redis Cluster."""

from __future__ import annotations

from tests.integration.test_cli import (  # noqa: F401
    projector_process,
    test_verify_finds_differences_and_resync_repairs_them,
)
