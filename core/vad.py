"""Where is speech? Silero VAD (v6, ONNX) finds it, so that windows are cut in pauses and silence never
reaches a model.

Whisper decodes 30 s windows. Cut on a fixed grid, a window often starts mid-word and whisper-base then
ends it at once (a 20 s window decoded to the single word "a"); a window of silence or noise invites an
invented sentence. Speech regions from a VAD fix both, as in faster-whisper's batched pipeline and
WhisperX: windows are built from whole regions, and long silences between regions are left out.

The model file (`assets/vad/silero_vad_v6.onnx`, MIT, from snakers4/silero-vad via the faster-whisper
wheel) runs on onnxruntime (MIT; numpy, protobuf, flatbuffers, packaging: no torch, no torchaudio).
`speech_regions` follows faster-whisper's port of silero's `get_speech_timestamps` (MIT): one
probability per 32 ms frame, hysteresis between THRESHOLD and THRESHOLD - 0.15, a region ends after
MIN_SILENCE_S of silence, regions longer than a cap are split at their last pause of >= 98 ms, and
every region is padded by PAD_S on each side (halfway when two regions are closer than 2 PAD_S).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio import SAMPLE_RATE

MODEL_FILE = Path(__file__).resolve().parents[1] / "assets" / "vad" / "silero_vad_v6.onnx"
FRAME = 512  # samples per probability (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous frame the model sees with each frame
THRESHOLD = 0.5  # speech probability that opens a region (silero's and faster-whisper's default)
NEG_OFFSET = 0.15  # a region closes below THRESHOLD - NEG_OFFSET
MIN_SILENCE_S = 0.16  # a pause this long ends a region (faster-whisper's batched pipeline)
MIN_PAUSE_AT_CAP_S = 0.098  # a region over its cap is split at its last pause of at least this
PAD_S = 0.4  # kept on each side of a region: soft onsets and word ends sit under the threshold
MAX_REGION_S = 30.0  # no region is longer (callers pass their window length)
BATCH_FRAMES = 10000  # frames per onnxruntime call


@dataclass(frozen=True)
class Region:
    """Speech from `start` to `end` (samples, padding included), voiced from `voiced_start` to `voiced_end`."""

    start: int
    end: int
    voiced_start: int
    voiced_end: int

    @property
    def length(self) -> int:
        return self.end - self.start


class SileroVad:
    """One onnxruntime session on one thread."""

    def __init__(self, path: Path = MODEL_FILE):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=options)
        self._lock = threading.Lock()  # a session's recurrent state is per call, but keep calls serial

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each FRAME-sample frame (the last one zero-padded)."""
        if len(audio) == 0:
            return np.zeros(0, np.float32)
        padded = np.pad(audio.astype(np.float32), (0, -len(audio) % FRAME)).reshape(-1, FRAME)
        context = np.roll(padded[:, -CONTEXT:], 1, axis=0)
        context[0] = 0
        batch = np.concatenate([context, padded], axis=1)
        h, c = np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
        out = []
        with self._lock:
            for begin in range(0, len(batch), BATCH_FRAMES):
                probs, h, c = self.session.run(None, {"input": batch[begin : begin + BATCH_FRAMES], "h": h, "c": c})
                out.append(probs.reshape(-1))
        return np.concatenate(out)[: len(padded)]


@functools.lru_cache(maxsize=1)
def default_vad() -> SileroVad:
    return SileroVad()


def speech_regions(audio: np.ndarray, max_region_s: float = MAX_REGION_S, vad: SileroVad | None = None,
                   threshold: float = THRESHOLD) -> list[Region]:
    """Speech regions of 16 kHz mono audio, padded, in order, none longer than `max_region_s`."""
    probs = (vad or default_vad()).probabilities(audio)
    return regions_from_probabilities(probs, len(audio), max_region_s, threshold)


def regions_from_probabilities(probs: np.ndarray, total: int, max_region_s: float = MAX_REGION_S,
                               threshold: float = THRESHOLD) -> list[Region]:
    """silero's get_speech_timestamps on given frame probabilities (kept apart so it can be tested)."""
    pad = int(PAD_S * SAMPLE_RATE)
    max_speech = max_region_s * SAMPLE_RATE - FRAME - 2 * pad  # the cap holds the padding too
    return _padded(_voiced_spans(probs, total, max_speech, threshold), total, pad)


def _voiced_spans(probs: np.ndarray, total: int, max_speech: float, threshold: float) -> list[list[int]]:
    """[start, end] samples of each stretch of speech, by hysteresis: it opens at `threshold`, closes after
    MIN_SILENCE_S below `threshold` - NEG_OFFSET, and one longer than `max_speech` is split at its last pause
    (silero's rule, step for step, so that regions match faster-whisper's)."""
    min_silence = MIN_SILENCE_S * SAMPLE_RATE
    min_pause_at_cap = MIN_PAUSE_AT_CAP_S * SAMPLE_RATE
    negative = max(threshold - NEG_OFFSET, 0.01)

    spans: list[list[int]] = []
    triggered, start = False, 0
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs):
        at = FRAME * i
        if prob >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if prob >= threshold and not triggered:
            triggered, start = True, at
            continue
        if triggered and at - start > max_speech:
            if prev_end:  # split at the last pause long enough
                spans.append([start, prev_end])
                if next_start < prev_end:
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
            else:  # no pause at all: cut here
                spans.append([start, at])
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < negative and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_pause_at_cap:
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            spans.append([start, temp_end])
            prev_end = next_start = temp_end = 0
            triggered = False
    if triggered and total - start > 0:
        spans.append([start, total])
    return spans


def _padded(spans: list[list[int]], total: int, pad: int) -> list[Region]:
    """Regions from voiced spans: each padded by `pad` on both sides (halfway to its neighbour when two are
    closer than 2 `pad`), so soft onsets and word ends under the threshold are kept."""
    voiced = [(begin, min(end, total)) for begin, end in spans]
    regions = []
    for i, (begin, end) in enumerate(spans):
        end = min(end, total)
        if i == 0:
            begin = max(0, begin - pad)
        if i + 1 < len(spans):
            gap = spans[i + 1][0] - end
            if gap < 2 * pad:
                end += gap // 2
                spans[i + 1][0] = max(0, spans[i + 1][0] - gap // 2)
            else:
                end = min(total, end + pad)
                spans[i + 1][0] = max(0, spans[i + 1][0] - pad)
        else:
            end = min(total, end + pad)
        regions.append(Region(begin, end, *voiced[i]))
    return regions
