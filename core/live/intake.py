"""The audio a live session received: every chunk, as 16 kHz mono, up to the session cap.

The whole recording is kept (silence included) so that the offline modes can transcribe it once the
speaker stops. The cap bounds that memory; what arrived before it is kept, and the error says so.
"""

from __future__ import annotations

import numpy as np

from core.audio import SAMPLE_RATE, to_mono_16k
from core.errors import AudioTooLongError

MAX_SESSION_S = 600.0  # ten minutes


class StreamTooLongError(AudioTooLongError):
    """The live session reached its length cap; what was heard until then is kept."""


class Intake:
    """Chunks in any layout and rate, converted and kept until the session cap."""

    def __init__(self, max_session_s: float = MAX_SESSION_S):
        self.max_session_s = max_session_s
        self.chunks: list[np.ndarray] = []
        self.received = 0  # samples
        self.capped = False  # the session cap was reached

    def take(self, samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, bool]:
        """The chunk as 16 kHz mono, cut at the cap, and whether it was cut (the caller raises `cap_error`
        once the kept part is handled). Raises StreamTooLongError if no room was left."""
        audio = to_mono_16k(samples, sample_rate)
        room = int(self.max_session_s * SAMPLE_RATE) - self.received
        if room <= 0:
            raise self.cap_error()
        over = len(audio) > room
        audio = audio[:room]
        self.chunks.append(audio)
        self.received += len(audio)
        return audio, over

    def cap_error(self) -> StreamTooLongError:
        self.capped = True
        return StreamTooLongError(self.too_long_message())

    def recording(self) -> np.ndarray:
        """All 16 kHz audio received (silence included, up to the session cap)."""
        return np.concatenate(self.chunks) if self.chunks else np.empty(0, np.float32)

    @property
    def seconds(self) -> float:
        return self.received / SAMPLE_RATE

    def too_long_message(self) -> str:
        minutes = self.max_session_s / 60
        cap = f"{minutes:g} min" if minutes >= 1 else f"{self.max_session_s:g} s"
        return (
            f"Live transcription stops after {cap}: the rest of this recording was not transcribed. "
            "Press stop to keep what was heard, then start a new recording."
        )
