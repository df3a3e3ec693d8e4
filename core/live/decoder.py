"""The live transcriber's calls to the engine: one mode, one window, no fallback, no timestamps.

Why no timestamps: a forced prefix (the committed words, core/live/agreement.py) needs a
timestamp-free decode, and with timestamps whisper-base dropped words in short buffers. Live buffers
are one window each, so the engine's silero planning is off (`vad=False`). A live update does not
fall back to other temperatures: a hypothesis Whisper's safeguards doubt commits nothing, and the
next update tries again on more audio.

Whisper's no-speech rule (core/gate.py) is judged on an utterance's first decodes only: once it found
speech in the buffer, later decodes of the same buffer hold that speech too, until a pause or a trim
starts a new one.

Committed text that left the buffer is not fed back as a prompt (Whisper's previous-text context): a
prompt changes the teacher's tokens (speculative decoding would then no longer match it) and invites
whisper-base to repeat itself.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from core.engine import Options


class LiveDecoder:
    """Decodes audio with one mode of `arena` (a core.engine.Arena, or anything with
    `transcribe(audio, Options)`); counts decodes and the compute time `clock` measures."""

    def __init__(self, arena, mode: str, language: str | None, clock: Callable[[], float]):
        self.arena, self.mode, self.language, self.clock = arena, mode, language, clock
        self.speech_confirmed = False  # the no-speech rule found speech in this buffer
        self.decodes = 0
        self.compute_s = 0.0  # decoding time since the last `lap`

    def continuation(self, audio: np.ndarray, prefix: list[str]) -> list[str]:
        """The words the model says after `prefix`, which it is forced to say first."""
        words = self.decode(audio, prefix=prefix)
        return words[len(prefix) :] if words else []  # no words: the no-speech rule dropped it all

    def decode(self, audio: np.ndarray, prefix: list[str] = ()) -> list[str]:
        started = self.clock()
        if self.language is None and getattr(self.arena, "multilingual", False):
            self.language = self.arena.detect_language(audio)  # once: every update then agrees
        options = Options(modes=(self.mode,), language=self.language, prefix=" ".join(prefix),
                          no_speech_rule=not self.speech_confirmed, vad=False, fallback=False)
        (result,) = self.arena.transcribe(audio, options)
        self.compute_s += self.clock() - started
        self.decodes += 1
        # a hypothesis Whisper's safeguards doubt (unlikely or repetitive) is never committed
        words = [] if any(w.suspect for w in result.windows) else result.text.split()
        self.speech_confirmed = self.speech_confirmed or bool(words)
        return words

    def new_buffer(self) -> None:
        """A pause or a trim started a new buffer: its first decodes face the no-speech rule again."""
        self.speech_confirmed = False

    def lap(self) -> float:
        """Decoding time since the previous lap."""
        spent, self.compute_s = self.compute_s, 0.0
        return spent
