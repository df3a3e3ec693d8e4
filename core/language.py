"""Which language the teacher hears: its most likely language token after start-of-transcript.

Asked for ("auto"), the language is decoded in by every mode, so each is charged the detection; otherwise
it is a guard the page shows beside the language asked for (German speech decoded as English).
"""

from __future__ import annotations

import torch

from core.audio import SAMPLE_RATE
from core.decoding import first_position_logits
from core.mode_run import Engine
from core.request import Request
from core.windows import WINDOW_S, whole


def detect(engine: Engine, request: Request, algorithm: str) -> tuple[str | None, float]:
    """The teacher's language on the first window with speech (None: no speech), and the seconds that took.
    The windows, features and encoder output it needs are the request's, kept for the modes (no mode is
    charged for them here: the seconds returned cover them)."""
    windows = request.windows(algorithm, engine.models.preset.chunk_length_s)
    if not windows and request.options.vad:
        return None, 0.0
    window = windows[0] if windows else whole(request.audio[: int(WINDOW_S * SAMPLE_RATE)])
    teacher, clock = engine.models.teacher, engine.clock
    started = clock()
    with torch.inference_mode():
        segment = request.features_of(window, engine.processor.feature_extractor, clock).segment(0)
        states = request.encode(teacher.model.encoder, [(window, 0, segment)], engine.models, clock)
        logits = first_position_logits(teacher, engine.special.sot, states)[0]
    codes = engine.config.lang_to_id
    best = max(codes, key=lambda code: float(logits[codes[code]]))
    return best.strip("<|>"), clock() - started
