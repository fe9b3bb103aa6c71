"""A test that needs a real service (Redis, Chromium) fails in CI when it is missing, and skips elsewhere."""

from __future__ import annotations

import os

import pytest


def missing(message: str) -> None:
    """Stop the test because a real service it needs is not there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
