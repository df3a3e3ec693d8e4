"""Typed results shared by the web app, the command line and the benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODES = ("student", "teacher", "speculative")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass
class ModeResult:
    """One mode's transcript of one clip, with timing measured from decoded audio to text."""

    mode: str
    model: str
    text: str
    segments: list[Segment] | None
    tokens: int  # text tokens produced (special and timestamp tokens excluded)
    latency_s: float  # features + encoder + decoding
    encoder_s: float
    decode_s: float
    audio_s: float
    algorithm: str  # "short-form", "chunked" or "sequential"
    draft_tokens: int | None = None  # speculative only
    accepted_tokens: int | None = None
    identical_to_teacher: bool | None = None  # None: not comparable in this run
    note: str = ""
    token_ids: list[list[int]] = field(default_factory=list, repr=False)  # per window, for comparisons

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

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("token_ids")
        data.update(
            latency_s=round(self.latency_s, 4),
            encoder_s=round(self.encoder_s, 4),
            decode_s=round(self.decode_s, 4),
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
    device: str
    dtype: str
    attention: str
    shared_encoder: bool
