"""One JSON schema for a run: what the page's export, the API and the benchmark write.

    {"schema", "environment": {preset, models, device, dtype, versions}, "runs": [{clip, source, audio_s,
     reference, options, results: [one per mode: core.results.ModeResult.to_dict(trace=True)]}], "summary"}
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

SCHEMA = "distil-whisper-arena/report/1"
REPO = Path(__file__).resolve().parents[1]


def versions() -> dict:
    import torch
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        found["commit"] = commit or None
    except (OSError, subprocess.SubprocessError):
        found["commit"] = None
    return found


def environment(info) -> dict:
    """What produced the numbers: the preset's models, the device and the library versions."""
    return {**asdict(info), "versions": versions()}


def run_entry(clip: str, source: str, audio_s: float, reference: str | None, options, results) -> dict:
    return {
        "clip": clip,
        "source": source,
        "audio_s": round(audio_s, 3),
        "reference": reference or None,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "results": [r.to_dict(trace=True) for r in results],
    }


def report(info, runs: list[dict], summary: dict | None = None) -> dict:
    return {"schema": SCHEMA, "environment": environment(info), "runs": runs, "summary": summary}
