"""Shared fixtures. The hub is never reachable here: every test runs offline."""

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("ARENA_PRESET", "local")

import pytest

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO / "assets" / "audio"
ARTIFACTS = REPO / "tests" / "artifacts"


def manifest() -> list[dict]:
    return [json.loads(line) for line in (AUDIO / "manifest.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def arena():
    """The local preset (real converted whisper-base + local student), loaded and warmed up once."""
    from core.cli import quiet_libraries
    from core.engine import Arena

    quiet_libraries()
    return Arena.load("local")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
