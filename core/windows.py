"""Windows: the audio a decoder sees at once, their log-mel features, and the segments a timestamped
decode of one splits into.

A window is a run of speech regions (core/vad.py) joined end to end: cuts fall in pauses, so no window
starts mid-word, and silences longer than two paddings (0.8 s) are left out, so no model decodes them
(that is where Whisper invents sentences). Times inside a window map back to the clip region by region,
so every segment time is absolute and monotonic. The chunked algorithm packs regions into windows of at
most the preset's chunk length; the sequential algorithm makes all regions one window and seeks through
it 30 s at a time (core/transcribe.py); audio up to 30 s is one window either way.

Features follow transformers' feature extractor exactly as generate() sees them: a window up to 30 s is
padded to 30 s of audio; a longer one is featurised whole, and each 30 s segment is sliced from it and
zero-padded. So every loop is comparable token for token with generate().
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from core.audio import SAMPLE_RATE
from core.vad import Region

WINDOW_S = 30.0  # Whisper's receptive field
N_FRAMES = 3000  # feature frames per 30 s
HOP = 160  # samples per feature frame
INPUT_STRIDE = 2  # feature frames per timestamp step
TIME_PRECISION = 0.02  # seconds per timestamp token
MIN_SEEK_FRAMES = 100  # a decode that stopped early is resumed only from 1 s into its segment or later


@dataclass(frozen=True)
class Window:
    """Speech regions of a clip joined end to end (the silences between them left out)."""

    regions: tuple[Region, ...]

    @property
    def length(self) -> int:
        return sum(r.length for r in self.regions)

    @property
    def seconds(self) -> float:
        return self.length / SAMPLE_RATE

    @property
    def start_s(self) -> float:
        return self.regions[0].start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.regions[-1].end / SAMPLE_RATE

    def audio(self, clip: np.ndarray) -> np.ndarray:
        return np.concatenate([clip[r.start : r.end] for r in self.regions]).astype(np.float32)

    def _starts(self) -> list[int]:
        return [int(x) for x in np.cumsum([0] + [r.length for r in self.regions])]

    def clip_time(self, t: float, end: bool = False) -> float:
        """Window seconds -> clip seconds. An end time on a join belongs to the region before it."""
        starts = self._starts()
        sample = min(max(int(round(t * SAMPLE_RATE)), 0), starts[-1])
        find = bisect.bisect_left if end else bisect.bisect_right
        i = min(max(find(starts, sample) - 1, 0), len(self.regions) - 1)
        return (self.regions[i].start + sample - starts[i]) / SAMPLE_RATE

    def voiced_bounds(self, clip_s: float) -> tuple[float, float]:
        """Where the VAD heard voice (clip seconds, padding excluded) in the region holding clip time `clip_s`."""
        sample = clip_s * SAMPLE_RATE
        region = min(self.regions, key=lambda r: 0 if r.start <= sample <= r.end else min(abs(r.start - sample),
                                                                                          abs(r.end - sample)))
        return region.voiced_start / SAMPLE_RATE, region.voiced_end / SAMPLE_RATE

    def voiced_s(self, start_s: float = 0.0, end_s: float = float("inf")) -> float:
        """Seconds the VAD found voiced between two window times."""
        total, offset = 0, 0
        lo, hi = start_s * SAMPLE_RATE, end_s * SAMPLE_RATE
        for r in self.regions:
            v0 = offset + r.voiced_start - r.start
            v1 = offset + r.voiced_end - r.start
            total += max(0.0, min(v1, hi) - max(v0, lo))
            offset += r.length
        return total / SAMPLE_RATE


def whole(audio: np.ndarray) -> Window:
    """All of the audio as one window (no VAD: a live buffer is gated already)."""
    return Window((Region(0, len(audio), 0, len(audio)),))


def plan(regions: Sequence[Region], max_s: float) -> list[Window]:
    """Pack consecutive regions into windows of at most `max_s` (regions are never longer)."""
    windows, run, length = [], [], 0
    limit = int(max_s * SAMPLE_RATE) if np.isfinite(max_s) else None
    for region in regions:
        if run and limit is not None and length + region.length > limit:
            windows.append(Window(tuple(run)))
            run, length = [], 0
        run.append(region)
        length += region.length
    if run:
        windows.append(Window(tuple(run)))
    return windows


def halves(window: Window) -> tuple[Window, Window] | None:
    """The window cut in two at the join nearest its middle (None for a single region)."""
    if len(window.regions) < 2:
        return None
    starts = window._starts()[1:-1]
    middle = window.length / 2
    cut = 1 + min(range(len(starts)), key=lambda i: abs(starts[i] - middle))
    return Window(window.regions[:cut]), Window(window.regions[cut:])


@dataclass
class Features:
    """Log-mel features of one window (mel bins x frames) and how many frames hold its audio."""

    values: torch.Tensor
    content_frames: int

    def segment(self, seek: int) -> torch.Tensor:
        """The 30 s of features from frame `seek`, zero-padded (as transformers' long-form loop slices them)."""
        piece = self.values[:, seek : seek + N_FRAMES]
        if piece.shape[-1] < N_FRAMES:
            piece = torch.nn.functional.pad(piece, (0, N_FRAMES - piece.shape[-1]))
        return piece

    def segment_frames(self, seek: int) -> int:
        return min(N_FRAMES, self.content_frames - seek)


def features(extractor, audio: np.ndarray) -> Features:
    """Kept in host memory (a 60 min window is ~100 MB of them): only the segment being encoded goes to the device."""
    frames = -(-len(audio) // HOP)
    if len(audio) <= WINDOW_S * SAMPLE_RATE:
        values = extractor([audio], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features[0]
    else:
        values = extractor([audio], sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                           padding="longest").input_features[0]
    return Features(values, min(frames, values.shape[-1]))


@dataclass(frozen=True)
class TimedPiece:
    """Tokens of one timestamped segment, with its times in window seconds."""

    start_s: float
    end_s: float
    tokens: tuple[int, ...]


def split_segments(tokens: Sequence[int], timestamp_begin: int, seek: int, segment_frames: int
                   ) -> tuple[list[TimedPiece], int]:
    """transformers' (and openai's) reading of a timestamped decode: the segments it closed, and how many
    frames to seek on. A decode ending in a single timestamp saw no speech after it: the whole segment is
    done. Otherwise the unfinished last segment is dropped and decoding resumes at its start."""
    offset = seek * HOP / SAMPLE_RATE
    is_stamp = [t >= timestamp_begin for t in tokens]
    single_ending = is_stamp[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_stamp[i] and is_stamp[i + 1]]
    if not cuts:
        end = segment_frames * HOP / SAMPLE_RATE
        stamps = [t for t in tokens if t >= timestamp_begin]
        if stamps and stamps[-1] != timestamp_begin:
            end = (stamps[-1] - timestamp_begin) * TIME_PRECISION
        return [TimedPiece(offset, offset + end, tuple(tokens))], segment_frames
    if single_ending:
        cuts.append(len(tokens))
    else:
        cuts[-1] += 1
    pieces, last = [], 0
    for i, cut in enumerate(cuts):
        piece = tokens[last:cut]
        closing = piece[-1] if i < len(cuts) - 1 or single_ending else piece[-2]
        pieces.append(TimedPiece(offset + (piece[0] - timestamp_begin) * TIME_PRECISION,
                                 offset + (closing - timestamp_begin) * TIME_PRECISION, tuple(piece)))
        last = cut
    if single_ending:
        return pieces, segment_frames
    return pieces, (tokens[last - 2] - timestamp_begin) * INPUT_STRIDE


def last_timestamp_frames(tokens: Sequence[int], timestamp_begin: int) -> int:
    """Frames from the segment start to the last timestamp of a decode (0 if none)."""
    stamps = [t for t in tokens if t >= timestamp_begin]
    return (stamps[-1] - timestamp_begin) * INPUT_STRIDE if stamps else 0
