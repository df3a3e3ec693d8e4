"""Typed results shared by the web app, the command line and the benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Word:
    """One word of a segment, timed from the cross-attention of the model that wrote it (core/alignment.py)."""

    text: str  # as written, with its leading space and punctuation
    start_s: float  # seconds from the start of the audio
    end_s: float
    probability: float  # the model's mean probability of the word's tokens


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str
    words: tuple[Word, ...] | None = None  # None: word timing was not asked for


@dataclass(frozen=True)
class Timing:
    """Where a mode's time went, each part charged as if the mode had run alone (shared work included)."""

    vad_s: float = 0.0  # finding speech and planning windows
    features_s: float = 0.0  # log-mel features
    encoder_s: float = 0.0
    judge_s: float = 0.0  # the teacher's no-speech step and language detection, where the mode needed them
    draft_s: float = 0.0  # speculative decoding: the student proposing tokens
    verify_s: float = 0.0  # the decoding loop's own model passes (for speculative: the teacher verifying)
    words_s: float = 0.0  # word timing: one pass of the deciding model over its own text (core/alignment.py)

    @property
    def decode_s(self) -> float:
        return self.judge_s + self.draft_s + self.verify_s

    @property
    def latency_s(self) -> float:
        return self.vad_s + self.features_s + self.encoder_s + self.decode_s + self.words_s


@dataclass(frozen=True)
class DraftPass:
    """One teacher pass of speculative decoding: `draft` tokens proposed, the first `accepted` kept, then
    `emitted` (the teacher's own token: its correction, or a bonus after a full match; None at the end).
    The `*_text` fields are the same tokens as text pieces, for display."""

    window: int
    draft: tuple[int, ...]
    accepted: int
    emitted: int | None
    draft_text: tuple[str, ...] = ()
    emitted_text: str | None = None


@dataclass(frozen=True)
class WindowReport:
    """One window as the safeguards saw it."""

    start_s: float  # in the clip
    end_s: float
    text: str
    temperature: float  # of the decode kept (0: no fallback needed)
    attempts: int  # decodes it took (1 + fallbacks)
    looped: bool  # the loop guard cut a decode
    no_speech: bool  # dropped by the no-speech rule
    repaired: bool  # decoded again in halves: the first decode stopped early
    suspect: bool = False  # still unlikely or repetitive after every fallback


@dataclass
class ModeResult:
    """One mode's transcript of one clip, with timing measured from decoded audio to text."""

    mode: str
    model: str
    text: str
    segments: list[Segment] | None
    tokens: int  # text tokens produced (special and timestamp tokens excluded)
    timing: Timing
    audio_s: float
    algorithm: str  # "short-form", "chunked" or "sequential"
    precision: str  # the decoders' precision: "fp32", "bf16", "int8" (CPU) or "fp16" (GPU)
    batch_size: int  # windows decoded together at most
    model_passes: int  # forward passes of the model whose choices are the output (the teacher, for speculative)
    windows: list[WindowReport] = field(default_factory=list)
    draft_tokens: int | None = None  # speculative only
    accepted_tokens: int | None = None
    identical_to_teacher: bool | None = None  # None: the teacher did not run with the same options
    language: str | None = None  # the language decoded in (None: an English-only model)
    detected_language: str | None = None  # what the teacher hears, whatever was asked (multilingual teachers)
    peak_gpu_mb: float | None = None  # on a GPU: the most memory allocated while this mode ran
    note: str = ""
    token_ids: list[list[int]] = field(default_factory=list, repr=False)  # per window, for comparisons
    trace: list[DraftPass] = field(default_factory=list, repr=False)  # speculative only

    @property
    def latency_s(self) -> float:
        return self.timing.latency_s

    @property
    def encoder_s(self) -> float:
        return self.timing.encoder_s

    @property
    def decode_s(self) -> float:
        return self.timing.decode_s

    @property
    def rtfx(self) -> float:
        return self.audio_s / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def acceptance_rate(self) -> float | None:
        if not self.draft_tokens:
            return None
        return self.accepted_tokens / self.draft_tokens

    @property
    def tokens_per_pass(self) -> float | None:
        """Tokens each pass of the deciding model produced (1 for greedy decoding)."""
        return self.tokens / self.model_passes if self.model_passes else None

    def to_dict(self, trace: bool = False) -> dict:
        """Every field as JSON; `trace`: with the speculative passes and the token ids too."""
        data = asdict(self)
        for key in ("timing",) if trace else ("token_ids", "trace", "timing"):
            data.pop(key)
        data.update(
            latency_s=round(self.latency_s, 4),
            encoder_s=round(self.encoder_s, 4),
            decode_s=round(self.decode_s, 4),
            timing={k: round(v, 4) for k, v in asdict(self.timing).items()},
            rtfx=round(self.rtfx, 3),
            tokens_per_s=round(self.tokens_per_s, 2),
            acceptance_rate=None if self.acceptance_rate is None else round(self.acceptance_rate, 4),
        )
        return data


@dataclass(frozen=True)
class ModelInfo:
    """What is loaded, for headers, logs and benchmark tables."""

    preset: str
    teacher: str
    student: str
    teacher_params_m: float
    student_params_m: float
    student_decoder_params_m: float
    teacher_decoder_layers: int
    student_decoder_layers: int
    device: str
    dtype: str
    precisions: tuple[str, ...]  # the decoder precisions this device runs, its default first
    attention: str
    shared_encoder: bool
    multilingual: bool
    student_english_only: bool
