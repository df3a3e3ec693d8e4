"""Whisper's safeguards, as openai/whisper's transcribe.py and faster-whisper apply them, decided from what
decoding already computed (core/decoding.py): no extra passes.

- No speech: a decode is dropped when P(<|nospeech|>) at the start-of-transcript position is above
  NO_SPEECH_THRESHOLD *and* its text is unlikely (average log-probability below LOGPROB_THRESHOLD) or
  empty, as in openai/whisper. (A loop is not a sign of silence: counting it as one dropped whole 30 s
  segments of real speech where the student looped in sequential decoding; loops go to the fallback.) The
  probability is always the teacher's (the student's mode asks the teacher for one decoder step), so every
  mode shares one notion of speech; the rest comes from the mode's own decode. The second condition keeps
  speech the teacher is sure of even when P(no speech) is high: a 3 s phrase at the end of 30 s of
  silence came to 0.46 here.
- Fallback: a decode that is a loop or unlikely (and not no speech) is decoded again at the next of
  TEMPERATURES; sampling is deterministic (decoding.TokenPicker), so speculative decoding repeats exactly
  what the teacher does. When no temperature gives a clean decode, the most likely loop-free one is kept,
  else the first.
"""

from __future__ import annotations

import zlib
from typing import Sequence

NO_SPEECH_THRESHOLD = 0.6  # openai/whisper's defaults
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_loop(text: str, looped: bool) -> bool:
    return looped or compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD


def is_no_speech(no_speech_prob: float, avg_logprob: float, text: str) -> bool:
    if no_speech_prob <= NO_SPEECH_THRESHOLD:
        return False
    return not text.strip() or avg_logprob < LOGPROB_THRESHOLD


def needs_fallback(avg_logprob: float, text: str, looped: bool) -> bool:
    """A loop or an unlikely decode (callers first drop no speech: sampling does not fix silence)."""
    return is_loop(text, looped) or avg_logprob < LOGPROB_THRESHOLD


def best_attempt(attempts: Sequence[tuple[float, str, bool]]) -> int:
    """Index of the decode to keep when every temperature failed: (avg_logprob, text, looped) each."""
    clean = [i for i, (_, text, looped) in enumerate(attempts) if not is_loop(text, looped)]
    return max(clean, key=lambda i: attempts[i][0]) if clean else 0
