"""One request's shared work: what every mode of it needs, done once and charged to each mode as if alone.

The modes of a request decode the same windows (planned from speech by core/vad.py) from the same features
and the same encoder output; the teacher's no-speech judgement of a segment, which the student's mode needs,
is made once however many fallbacks decode that segment. Each piece is computed by the first mode that
needs it and kept with the seconds it took; every mode is then charged every piece it used, once. Why: the modes run one after another, and a mode that found the
encoder output ready would otherwise look faster than it is; charged this way, the ratio between two modes
compares the modes, not the order they ran in.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np
import torch

from core.decoding import first_position_logits
from core.measure import Clock
from core.options import Options
from core.vad import speech_regions
from core.windows import WINDOW_S, Features, Window, features, plan, whole

ENCODER_CACHE_BYTES = 2 << 30  # encoder outputs kept for the other modes of a request (host memory on a GPU)

Job = tuple[Window, int, torch.Tensor]  # a window, the feature frame its segment starts at, the segment's features


class ChargedCache:
    """Values computed once per request, each kept with the seconds it took, and which mode used which."""

    def __init__(self):
        self._values: dict = {}
        self.seconds: dict = {}  # what each value cost, kept even if the value is dropped
        self._used: dict[str, dict] = {}  # mode -> the keys it used (a dict as an ordered set)

    def get(self, key: Hashable):
        return self._values.get(key)

    def put(self, key: Hashable, value, seconds: float) -> None:
        self._values[key] = value
        self.seconds[key] = seconds

    def fetch(self, keys: Sequence[Hashable], compute: Callable[[list[int]], list], clock: Clock,
              mode: str | None = None) -> list:
        """The value of every key. The missing ones are computed together, `compute(indices)` returning their
        values in order, and the seconds that took are split evenly between them (they ran as one batch).
        `mode`: the mode charged for every key (None: none; language detection is charged on its own)."""
        found = [self.get(key) for key in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        if missing:
            started = clock()
            values = compute(missing)
            each = (clock() - started) / len(missing)
            for i, value in zip(missing, values):
                found[i] = value
                self.put(keys[i], value, each)
        if mode is not None:
            self._used.setdefault(mode, {}).update(dict.fromkeys(keys))
        return found

    def charge(self, mode: str) -> float:
        """What `mode` would have paid alone for the values it used (fsum: exact whatever the order the keys
        were used in, so two modes that used the same pieces are charged exactly the same)."""
        return math.fsum(self.seconds[key] for key in self._used.get(mode, ()))


class EncoderCache(ChargedCache):
    """Encoder outputs of a request, bounded: on a GPU they wait in host memory, so GPU memory stays flat
    however long the audio; past `max_bytes` the oldest are dropped (a later mode then encodes again)."""

    def __init__(self, device: torch.device, max_bytes: int | None = None):
        super().__init__()
        self.device, self.max_bytes, self.bytes = device, max_bytes or ENCODER_CACHE_BYTES, 0
        self._values: OrderedDict = OrderedDict()

    def get(self, key) -> torch.Tensor | None:
        if key not in self._values:
            return None
        self._values.move_to_end(key)
        return self._values[key].to(self.device, non_blocking=True)

    def put(self, key, states: torch.Tensor, seconds: float) -> None:
        kept = states.to("cpu") if self.device.type == "cuda" else states
        self._values[key] = kept
        self.seconds[key] = seconds
        self.bytes += kept.numel() * kept.element_size()
        while self.bytes > self.max_bytes and len(self._values) > 1:
            _, old = self._values.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


@dataclass
class Request:
    """The audio and options of one request, and its shared work in charged caches (see the module's doc)."""

    audio: np.ndarray
    options: Options
    encoded: EncoderCache  # (encoder, window, seek) -> encoder output
    plans: ChargedCache = field(default_factory=ChargedCache)  # algorithm -> windows (the VAD's work)
    features: ChargedCache = field(default_factory=ChargedCache)  # window -> log-mel features
    judged: ChargedCache = field(default_factory=ChargedCache)  # (window, seek) -> the teacher's P(no speech)
    language_s: float = 0.0  # language detection, charged to every mode when they needed it (language "auto")
    detected_language: str | None = None

    def windows(self, algorithm: str, chunk_length_s: float, mode: str | None = None) -> list[Window]:
        """The windows every mode decodes: speech regions packed into windows of `chunk_length_s` (chunked)
        or 30 s (short-form), or all in one window that the seek loop walks through (sequential); without
        the VAD, the whole audio as one window."""
        def planned(_) -> list[list[Window]]:
            if not self.options.vad:
                return [[whole(self.audio)] if len(self.audio) else []]
            chunk_s = {"short-form": WINDOW_S, "chunked": chunk_length_s}.get(algorithm, WINDOW_S)
            regions = speech_regions(self.audio, max_region_s=min(chunk_s, WINDOW_S))
            return [plan(regions, chunk_s if algorithm != "sequential" else float("inf"))]

        # the VAD runs on the CPU: no GPU clock
        return self.plans.fetch([algorithm], planned, time.perf_counter, mode)[0]

    def features_of(self, window: Window, extractor, clock: Clock, mode: str | None = None) -> Features:
        return self.features.fetch([window], lambda _: [features(extractor, window.audio(self.audio))], clock, mode)[0]

    def encode(self, encoder, jobs: Sequence[Job], models, clock: Clock, mode: str | None = None) -> torch.Tensor:
        """`encoder`'s output for each job's segment, batched over the jobs not encoded yet by any mode."""
        def encoded(missing: list[int]) -> list[torch.Tensor]:
            segments = torch.stack([jobs[i][2] for i in missing]).to(models.device, models.dtype)
            states = encoder(segments).last_hidden_state
            return [states[row : row + 1] for row in range(len(missing))]

        keys = [(id(encoder), w, seek) for w, seek, _ in jobs]
        return torch.cat(self.encoded.fetch(keys, encoded, clock, mode))

    def no_speech(self, teacher, special, states: torch.Tensor, jobs: Sequence[Job], clock: Clock,
                  mode: str | None = None) -> list[float]:
        """The teacher's P(<|nospeech|>) for each job's segment, from `states` (the teacher's encoder output):
        its first decoder position only, which is all Whisper's no-speech rule reads."""
        def judged(missing: list[int]) -> list[float]:
            logits = first_position_logits(teacher, special.sot, states[missing])
            return torch.softmax(logits, dim=-1)[:, special.no_speech].tolist()

        return self.judged.fetch([(w, seek) for w, seek, _ in jobs], judged, clock, mode)
