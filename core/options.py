"""What one request asks for: the options, bundled once and checked once (as faster-whisper bundles its
TranscriptionOptions), so that every mode of the request decodes under exactly the same ones."""

from __future__ import annotations

from dataclasses import dataclass

from core.audio import SAMPLE_RATE
from core.errors import ArenaError
from core.modes import MODES
from core.windows import WINDOW_S

LONG_FORM_ALGORITHMS = ("chunked", "sequential")


@dataclass(frozen=True)
class Options:
    modes: tuple[str, ...] = MODES
    timestamps: bool = False
    long_form: str = "chunked"  # or "sequential" (audio over 30 s only)
    language: str | None = "en"  # None: detected once by the teacher, then used by every mode
    batch_size: int = 8  # windows the student and the teacher decode together (speculative decoding: 1)
    prefix: str = ""  # text the transcript is forced to begin with (<= 30 s, no timestamps): a live update's committed words
    no_speech_rule: bool = True  # False: the caller knows this audio holds speech (a live utterance already judged)
    vad: bool = True  # plan windows from speech; False: the audio (<= 30 s) is one window (a live buffer is gated already)
    fallback: bool = True  # Whisper's temperature fallback; False: a decode that needs one is marked suspect instead
    word_timestamps: bool = False  # a start, end and probability per word (implies timestamps)
    precision: str | None = None  # the decoders' precision (core/precision.py); None: the device's default

    def __post_init__(self):
        if self.word_timestamps and not self.timestamps:  # words are timed inside their segments
            object.__setattr__(self, "timestamps", True)


def algorithm_for(options: Options, audio) -> str:
    """The algorithm these options run on `audio` (16 kHz samples): "short-form" up to 30 s, else the
    long-form one asked for. Raises ArenaError for options that cannot run, before any model work, so a
    request fails whole rather than after some of its modes."""
    unknown = set(options.modes) - set(MODES)
    if unknown or not options.modes:
        raise ArenaError(f"Choose at least one mode among {', '.join(MODES)} (got {sorted(options.modes)}).")
    if options.long_form not in LONG_FORM_ALGORITHMS:
        raise ArenaError(f"Long-form algorithm must be one of {LONG_FORM_ALGORITHMS}, not {options.long_form!r}.")
    if options.batch_size < 1:
        raise ArenaError("The batch size must be at least 1.")
    short = len(audio) <= WINDOW_S * SAMPLE_RATE
    if options.prefix.strip() and (options.timestamps or not short):
        raise ArenaError("A forced prefix works on one window of at most 30 s, without timestamps.")
    if not options.vad and not short:
        raise ArenaError("Audio over 30 s is cut into windows at pauses: it needs the VAD.")
    return "short-form" if short else options.long_form
