"""Shared fixtures: the read-only real data sets next to the repository."""

from pathlib import Path

import pytest


@pytest.fixture
def shared_data() -> Path:
    """/work/shared/data when the repository is /work/main (skips the test when absent)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found")
    return path
