"""Named teacher/student pairs. `local` runs offline on a CPU; the others need the Hugging Face Hub."""

from __future__ import annotations

import os
from dataclasses import dataclass

from core import weights
from core.draft import DraftPolicy
from core.errors import ModelUnavailableError

PRESET_ENV = "ARENA_PRESET"


@dataclass(frozen=True)
class Preset:
    name: str
    teacher: str  # a folder under models/ (local) or a hub id
    student: str
    local: bool
    student_english_only: bool = True  # every Distil-Whisper student was distilled on English speech only
    # speculative: how long the student's drafts are, from the cost model (core/draft.py, core/costs.py). On a GPU
    # a decoder step is launch-bound: the verify pass barely grows with the draft and a 2-layer step is cheap.
    draft: DraftPolicy = DraftPolicy()
    # the chunked algorithm's longest window: windows are cut at pauses (core/windows.py), so no overlap is
    # lost and a full window is cheapest (every window costs a 30 s encoder pass); faster-whisper's batched
    # pipeline uses 30 s too, and so do the hub presets, whose students were trained on 30 s windows.
    chunk_length_s: float = 30.0


# `local` on the held-out long clips (docs/benchmarks.md): the teacher's chunked WER is 4.7 / 4.9 / 6.5 / 4.8% at
# 15 / 20 / 25 / 30 s (sequential 4.7%), but the local student's is 24.3% at 20 s against 39.7% at 30 s (it drifts
# and loops late in a full window) and it runs 1.27x the teacher's speed there against 0.96x: 20 s it is.
LOCAL_CHUNK_LENGTH_S = 20.0
# The local student drafting on a CPU (the int8 lean step of core/draft.py): costs fitted to `python -m core.bench`'s
# cost table and the confidence stop chosen by tools/tune_draft.py on held-out real speech (docs/benchmarks.md).
LOCAL_DRAFT = DraftPolicy(step_cost=0.26, verify_base=0.9, verify_slope=0.19, confidence=0.5)


PRESETS = {
    p.name: p
    for p in (
        Preset("local", weights.TEACHER_BASE, weights.STUDENT_BASE, local=True, draft=LOCAL_DRAFT,
               chunk_length_s=LOCAL_CHUNK_LENGTH_S),
        # the GPU default: distil-large-v3.5 (98k h of training audio) beats distil-large-v3 on short-form WER
        # (7.08 vs 7.53 out of distribution) at the same speed, and keeps large-v3's encoder frozen: it was made
        # to draft for large-v3 (its model card)
        Preset("large-v3", "openai/whisper-large-v3", "distil-whisper/distil-large-v3.5", local=False),
        Preset("large-v3-distil-v3", "openai/whisper-large-v3", "distil-whisper/distil-large-v3", local=False),
        # a 4-layer-decoder teacher; fine-tuned after pruning, so its encoder is not the student's: speculative
        # decoding then runs the student's encoder too
        Preset("turbo", "openai/whisper-large-v3-turbo", "distil-whisper/distil-large-v3.5", local=False),
        Preset("large-v2", "openai/whisper-large-v2", "distil-whisper/distil-large-v2", local=False),
        Preset("medium.en", "openai/whisper-medium.en", "distil-whisper/distil-medium.en", local=False),
        Preset("small.en", "openai/whisper-small.en", "distil-whisper/distil-small.en", local=False),
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
