"""Named teacher/student pairs. `local` runs offline on a CPU; the others need the Hugging Face Hub."""

from __future__ import annotations

import os
from dataclasses import dataclass

from core import weights
from core.errors import ModelUnavailableError

PRESET_ENV = "ARENA_PRESET"


@dataclass(frozen=True)
class Preset:
    name: str
    teacher: str  # a folder under models/ (local) or a hub id
    student: str
    local: bool
    english_only: bool = False
    draft_tokens: int = 5  # speculative: tokens the student proposes per teacher call
    chunk_length_s: float = 15.0  # long-form chunked algorithm (the distil-whisper recommendation)


PRESETS = {
    p.name: p
    for p in (
        # 20 s chunks: whisper-base lost words with timestamps on 15 s chunks (WER 25% vs 10% on 67 s of speech)
        Preset("local", weights.TEACHER_BASE, weights.STUDENT_BASE, local=True, draft_tokens=3, chunk_length_s=20.0),
        Preset("large-v3", "openai/whisper-large-v3", "distil-whisper/distil-large-v3", local=False),
        Preset("large-v2", "openai/whisper-large-v2", "distil-whisper/distil-large-v2", local=False),
        Preset("medium.en", "openai/whisper-medium.en", "distil-whisper/distil-medium.en", local=False, english_only=True),
        Preset("small.en", "openai/whisper-small.en", "distil-whisper/distil-small.en", local=False, english_only=True),
    )
}


def default_preset_name() -> str:
    """ARENA_PRESET if set; otherwise the large pair on a GPU and the offline pair on a CPU."""
    if os.environ.get(PRESET_ENV):
        return os.environ[PRESET_ENV]
    import torch

    return "large-v3" if torch.cuda.is_available() else "local"


def get_preset(name: str | None = None) -> Preset:
    name = name or default_preset_name()
    if name not in PRESETS:
        raise ModelUnavailableError(f"There is no preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]
