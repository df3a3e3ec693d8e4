"""The rolling buffer: the audio the next update decodes, and where it may be trimmed.

Whisper encodes a 30 s window whatever it holds, so an update's cost is bounded by the buffer's cap,
never by the session's length; trimming bounds the decoder's tokens. Audio leaves the buffer only at
a quiet point that an earlier, fully committed hypothesis had already passed (no word is cut in
two), and only once a decode of the audio to drop says nothing beyond the committed words (core/live/
agreement.py judges that decode): one extra decode per trim. At the cap a cut is forced.
"""

from __future__ import annotations

import numpy as np

from core.audio import SAMPLE_RATE
from core.errors import ArenaError
from core.live.energy import FRAME, GATE_FRAME_S, frame_db

TRIM_S = 15.0  # trim committed audio from the buffer once it is longer than this
BUFFER_CAP_S = 30.0  # never longer (Whisper's window): cut at a quiet point, committing if need be
TRIM_SEARCH_S = 2.0  # look for the quietest point this far before the safe end
QUIET_WINDOW_S = 0.2  # the quiet point is the quietest window of this length
MIN_TRIM_S = 2.0  # a trim that drops less than this is not worth its extra decode
TRIM_RETRY_S = 2.0  # after a refused trim, wait for this much new audio


class RollingBuffer:
    """16 kHz audio from absolute sample `offset` on, and what each decode of it had heard by its end."""

    def __init__(self, trim_s: float = TRIM_S, cap_s: float = BUFFER_CAP_S):
        if not 0 < trim_s < cap_s:
            raise ArenaError("The trim length must be positive and below the buffer cap.")
        self.trim_s, self.cap_s = trim_s, cap_s
        self.samples = np.empty(0, np.float32)
        self.offset = 0  # absolute sample at which the buffer starts
        self.heard: list[tuple[int, int]] = []  # per decode: (absolute end sample, words heard by then)
        self.no_trim_before = 0  # absolute sample: a refused trim waits for audio beyond this
        self.max_len = 0  # the longest the buffer has been, in samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def append(self, audio: np.ndarray) -> None:
        self.samples = np.concatenate([self.samples, audio])
        self.max_len = max(self.max_len, len(self.samples))

    def overflows(self, n: int) -> bool:
        """Would `n` more samples take the buffer past its cap?"""
        return len(self.samples) + n > self.cap_s * SAMPLE_RATE

    def decoded(self, heard: int) -> None:
        """A decode of the whole buffer said `heard` words (committed and tentative)."""
        self.heard.append((self.offset + len(self.samples), heard))

    def trim_due(self) -> bool:
        """Past the trim length, and past the audio a refused trim asked to wait for."""
        return len(self.samples) > self.trim_s * SAMPLE_RATE and self.offset + len(self.samples) >= self.no_trim_before

    def phrase_pauses_after(self, committed: int) -> int | None:
        """Where a phrase pause may end the utterance (a sample of the buffer), None while the buffer is
        within its trim length: only after the first decode that heard all `committed` words, so the
        next buffer does not say them again."""
        if len(self.samples) <= self.trim_s * SAMPLE_RATE:
            return None
        return next((end - self.offset for end, heard in self.heard if heard >= committed), len(self.samples))

    def cut_point(self, committed: int, force: bool) -> int | None:
        """Where to trim: the quietest point before the end of the latest decode whose words are all
        `committed`. `force` (the buffer is at its cap) cuts near the end if nothing safe goes far enough."""
        safe = next((end for end, heard in reversed(self.heard) if heard <= committed), None)
        safe = None if safe is None else min(safe - self.offset, len(self.samples))
        if force and (safe is None or safe < len(self.samples) // 2):
            safe = len(self.samples)  # nothing safe goes far enough: cut near the end, committing
        if safe is None or safe < (MIN_TRIM_S + QUIET_WINDOW_S) * SAMPLE_RATE:
            return len(self.samples) if force else None
        window = max(1, int(QUIET_WINDOW_S / GATE_FRAME_S))
        first = max(int(MIN_TRIM_S / GATE_FRAME_S), int((safe / SAMPLE_RATE - TRIM_SEARCH_S) / GATE_FRAME_S))
        levels = frame_db(self.samples[:safe])[first:]
        if len(levels) < window:
            return safe
        energy = np.convolve(10 ** (levels / 10), np.ones(window), mode="valid")
        return (first + int(np.argmin(energy)) + window // 2) * FRAME

    def drop(self, cut: int) -> None:
        """The first `cut` samples leave the buffer."""
        self.samples = self.samples[cut:]
        self.offset += cut
        self.heard = [h for h in self.heard if h[0] > self.offset]

    def refuse_trim(self) -> None:
        """The audio to drop did not end on committed words: try again after TRIM_RETRY_S more audio."""
        self.no_trim_before = self.offset + len(self.samples) + int(TRIM_RETRY_S * SAMPLE_RATE)

    def restart(self, resume: int) -> np.ndarray:
        """A new utterance from sample `resume` on: the buffer keeps only that audio, which it returns."""
        self.samples, self.offset, self.heard = self.samples[resume:], self.offset + resume, []
        return self.samples

    def clear(self) -> None:
        self.samples = self.samples[:0]
