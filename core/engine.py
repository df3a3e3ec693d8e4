"""Transcribe one clip with student, teacher and speculative decoding: the facade.

`Arena` decides the order of the modes, shares the work they have in common, and charges it: every mode
decodes the same windows (core/windows.py, planned from speech by core/vad.py) from the same features and
the same encoder output, computed once per request; each mode's latency counts every piece it used as if
it had run alone, so the ratios between modes compare the modes, not the order they ran in. Every mode
runs the same seek loop (core/transcribe.py) on the same decoding loop (core/decoding.py): the student and
the teacher decode greedily in batches of windows, speculative decoding one window at a time with the
student drafting. The teacher judges Whisper's no-speech rule for every mode (the student's mode pays
for one teacher decoder step per segment).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from core.audio import SAMPLE_RATE
from core.decoding import Decoded, DecoderModel, DraftModel, Pass, SpecialTokens, Task, decode, first_position_logits
from core.errors import ArenaError
from core.gate import TEMPERATURES
from core.models import LoadedModels, load_models
from core.modes import MODES, TRAITS
from core.presets import get_preset
from core.results import DraftPass, ModelInfo, ModeResult, Segment, Timing, WindowReport
from core.transcribe import WindowTranscript, transcribe
from core.vad import speech_regions
from core.windows import WINDOW_S, Features, Window, features, plan, whole

LONG_FORM_ALGORITHMS = ("chunked", "sequential")
ENCODER_CACHE_BYTES = 2 << 30  # encoder outputs kept for the other modes of a request (host memory on a GPU)
BATCH_NOTE = ("The student and the teacher decode {batch} windows at a time; speculative decoding takes one at a "
              "time, so on long audio batching and speculation compete: its speed-up is against the batched teacher.")

log = logging.getLogger(__name__)


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


class EncoderCache:
    """Encoder outputs of a request, bounded: on a GPU they wait in host memory, so GPU memory stays flat
    however long the audio; past `max_bytes` the oldest are dropped (a later mode then encodes again)."""

    def __init__(self, device: torch.device, max_bytes: int | None = None):
        self.device, self.max_bytes, self.bytes = device, max_bytes or ENCODER_CACHE_BYTES, 0
        self._items: OrderedDict = OrderedDict()
        self.seconds: dict = {}  # what each output cost, kept after eviction: modes are charged as if alone

    def get(self, key) -> torch.Tensor | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key].to(self.device, non_blocking=True)

    def put(self, key, states: torch.Tensor, seconds: float) -> None:
        kept = states.to("cpu") if self.device.type == "cuda" else states
        self._items[key] = kept
        self.seconds[key] = seconds
        self.bytes += kept.numel() * kept.element_size()
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


@dataclass
class _Request:
    """The work the modes of one request share, each piece with the seconds it took."""

    audio: np.ndarray
    options: Options
    plans: dict[str, tuple[list[Window], float]] = field(default_factory=dict)  # algorithm -> windows, VAD seconds
    features: dict[Window, tuple[Features, float]] = field(default_factory=dict)
    encoded: EncoderCache | None = None
    judged: dict[tuple[Window, int], tuple[float, float]] = field(default_factory=dict)  # teacher P(no speech)
    language_s: float = 0.0  # language detection, charged to the modes when they needed it (language "auto")
    detected_language: str | None = None


class _ModeRun:
    """One mode on one request: the `Runner` core/transcribe.py drives, keeping this mode's charges."""

    def __init__(self, arena: "Arena", mode: str, request: _Request):
        self.arena, self.mode, self.request = arena, mode, request
        traits = TRAITS[mode]
        self.model = arena.decoders[traits.model]
        self.encoder = arena.models.teacher.model.encoder if traits.model == "teacher" else arena.models.student.model.encoder
        self.draft = arena.draft if traits.drafts else None
        self.batch_size = request.options.batch_size if traits.batches else 1
        self.timestamp_begin = arena.special.timestamp_begin
        self.judge = mode == "student" and request.options.no_speech_rule  # the teacher judges the student's windows
        self.used_features: set[Window] = set()
        self.used_encodings: set = set()
        self.judged: set[tuple[Window, int]] = set()
        self.timing = Timing(judge_s=request.language_s)
        self.decodes: list[tuple[Window, int, Decoded]] = []

    def features_of(self, window: Window) -> Features:
        self.used_features.add(window)
        return self.arena._features(self.request, window)

    def encode(self, jobs):
        return self._encode(self.encoder, jobs)

    def _encode(self, encoder, jobs):
        states = self.arena._encode(self.request, encoder, jobs)
        self.used_encodings.update((id(encoder), w, seek) for w, seek, _ in jobs)
        return states

    def decode(self, states: torch.Tensor, task: Task, jobs) -> list[Decoded]:
        arena = self.arena
        draft_states = None
        if self.draft is not None and not arena.models.shared_encoder:
            draft_states = self._encode(arena.models.student.model.encoder, jobs)
        started = arena._now()
        if self.draft is None:
            decoded = decode(self.model, states, task, arena.special, clock=arena._now)
        else:
            decoded = [decode(self.model, states[i : i + 1],
                              replace(task, limits=task.limits[i : i + 1], seeds=task.seeds[i : i + 1]),
                              arena.special, self.draft, arena._now,
                              None if draft_states is None else draft_states[i : i + 1])[0]
                       for i in range(len(states))]
        elapsed = arena._now() - started
        draft_s = sum(d.draft_s for d in decoded)
        self.timing = replace(self.timing, draft_s=self.timing.draft_s + draft_s,
                              verify_s=self.timing.verify_s + elapsed - draft_s)
        if self.judge:
            teacher_states = self._encode(arena.models.teacher.model.encoder, jobs)
            for (w, seek, _), d, (p, seconds) in zip(jobs, decoded, arena._judge(self.request, teacher_states, jobs)):
                d.no_speech_prob = p
                if (w, seek) not in self.judged:  # once per segment, whatever the fallbacks
                    self.judged.add((w, seek))
                    self.timing = replace(self.timing, judge_s=self.timing.judge_s + seconds)
        self.decodes += [(w, seek, d) for (w, seek, _), d in zip(jobs, decoded)]
        return decoded

    def text(self, tokens) -> str:
        return self.arena.tokenizer.decode(self.arena.special.text_only(tokens))

    def charged(self) -> Timing:
        request = self.request
        return replace(
            self.timing,
            features_s=sum(request.features[w][1] for w in self.used_features),
            encoder_s=sum(request.encoded.seconds[key] for key in self.used_encodings),
        )


def _emitted(decoded: Decoded, p) -> int | None:
    """The token a speculative pass added after its kept drafts (None: the window ended there)."""
    index = p.position + p.accepted
    return decoded.tokens[index] if index < len(decoded.tokens) else None


class Arena:
    """The facade: load a preset once, then transcribe any audio in any of the three modes."""

    def __init__(self, models: LoadedModels):
        self.models = models
        self.processor = models.processor
        self.tokenizer = models.processor.tokenizer
        self.config = models.teacher.generation_config
        self.special = SpecialTokens.from_config(self.config, models.teacher.config.vocab_size)
        self.multilingual = bool(getattr(self.config, "is_multilingual", False))
        self.decoders = {"teacher": DecoderModel(models.teacher), "student": DecoderModel(models.student)}
        self.draft = DraftModel(models.student, models.draft_vocabulary, models.preset.draft_tokens)
        self._info = models.info()
        # one mode at a time, whichever thread asks (a live session decodes on its own thread): two at
        # once would share the cores and each other's timing
        self._busy = threading.RLock()

    @classmethod
    def load(cls, preset: str | None = None, warmup: bool = True, student: str | None = None) -> "Arena":
        """`student`: another student for the preset's teacher (a folder), e.g. a candidate from core.distill."""
        started = time.perf_counter()
        chosen = get_preset(preset)
        if student:
            chosen = replace(chosen, student=str(Path(student).resolve()))
        arena = cls(load_models(chosen))
        if warmup:
            arena.warmup()
        log.info("preset %s ready in %.1f s", arena.info.preset, time.perf_counter() - started)
        return arena

    @property
    def info(self) -> ModelInfo:
        return self._info

    def warmup(self) -> None:
        """One short pass per mode (and of the VAD) so the first user request doesn't pay for lazy set-up."""
        rng = np.random.default_rng(0)
        noise = (0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        speech_regions(noise)
        self.transcribe(noise, Options(vad=False, no_speech_rule=False, fallback=False))

    # ---- public API -------------------------------------------------------------------------

    def transcribe(self, audio: np.ndarray, options: Options = Options()) -> list[ModeResult]:
        return list(self.iter_transcribe(audio, options))

    def iter_transcribe(
        self, audio: np.ndarray, options: Options = Options(), progress: Callable[[float, str], None] | None = None
    ) -> Iterator[ModeResult]:
        """Yield each mode's result as soon as it is done (teacher before speculative, which is compared to it)."""
        unknown = set(options.modes) - set(MODES)
        if unknown or not options.modes:
            raise ArenaError(f"Choose at least one mode among {', '.join(MODES)} (got {sorted(options.modes)}).")
        if options.long_form not in LONG_FORM_ALGORITHMS:
            raise ArenaError(f"Long-form algorithm must be one of {LONG_FORM_ALGORITHMS}, not {options.long_form!r}.")
        if options.batch_size < 1:
            raise ArenaError("The batch size must be at least 1.")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        short = len(audio) <= WINDOW_S * SAMPLE_RATE
        if options.prefix.strip() and (options.timestamps or not short):
            raise ArenaError("A forced prefix works on one window of at most 30 s, without timestamps.")
        if not options.vad and not short:
            raise ArenaError("Audio over 30 s is cut into windows at pauses: it needs the VAD.")
        request = _Request(audio, options, encoded=EncoderCache(self.models.device))
        algorithm = "short-form" if short else options.long_form
        if self.multilingual and (options.language is None or options.vad):
            # what the teacher hears: decoded in when asked for ("auto"), else shown beside the asked language
            with self._busy:
                request.detected_language = self._detect_language(request, algorithm)
            if options.language is None:
                options = request.options = replace(options, language=request.detected_language)
            else:
                request.language_s = 0.0  # a guard the page shows, not work any mode needed

        teacher_result: ModeResult | None = None
        ordered = [m for m in MODES if m in options.modes]
        for index, mode in enumerate(ordered):
            if progress:
                progress(index / len(ordered), f"{mode}…")
            with self._busy:
                result = self._run(mode, request, algorithm)
            if mode == "teacher":
                teacher_result = result
            elif TRAITS[mode].drafts and teacher_result is not None:
                result.identical_to_teacher = result.token_ids == teacher_result.token_ids
            yield result
        if progress:
            progress(1.0, "done")

    def detect_language(self, audio: np.ndarray) -> str:
        request = _Request(np.ascontiguousarray(audio, dtype=np.float32), Options(), encoded=EncoderCache(self.models.device))
        with self._busy:
            return self._detect_language(request, "short-form")

    # ---- internals ----------------------------------------------------------------------------

    def _run(self, mode: str, request: _Request, algorithm: str) -> ModeResult:
        options = request.options
        windows, vad_s = self._plan(request, algorithm)
        run = _ModeRun(self, mode, request)
        if self._on_gpu:
            torch.cuda.reset_peak_memory_stats(self.models.device)
        with torch.inference_mode():
            transcripts = transcribe(windows, run.features_of, run, self._prompt(options), options.timestamps,
                                     tuple(self._prefix_ids(options)), options.no_speech_rule,
                                     TEMPERATURES if options.fallback else TEMPERATURES[:1])
        timing = replace(run.charged(), vad_s=vad_s)
        result = self._result(mode, run, transcripts, timing, algorithm, request)
        if self._on_gpu:
            result.peak_gpu_mb = round(torch.cuda.max_memory_allocated(self.models.device) / 2**20, 1)
        return result

    def _plan(self, request: _Request, algorithm: str) -> tuple[list[Window], float]:
        if algorithm not in request.plans:
            started = time.perf_counter()
            audio = request.audio
            if not request.options.vad:
                windows = [whole(audio)] if len(audio) else []
            else:
                chunk_s = {"short-form": WINDOW_S, "chunked": self.models.preset.chunk_length_s}.get(algorithm, WINDOW_S)
                regions = speech_regions(audio, max_region_s=min(chunk_s, WINDOW_S))
                windows = plan(regions, chunk_s if algorithm != "sequential" else float("inf"))
            request.plans[algorithm] = (windows, time.perf_counter() - started)
        return request.plans[algorithm]

    def _prompt(self, options: Options) -> Callable[[bool], tuple[int, ...]]:
        """The decoder prompt generate() would build: start, language, task, and no-timestamps when off."""
        config = self.config
        head = [config.decoder_start_token_id]
        if self.multilingual:
            head += [config.lang_to_id[f"<|{options.language or 'en'}|>"], config.task_to_id["transcribe"]]
        return lambda timestamps: tuple(head if timestamps else head + [config.no_timestamps_token_id])

    def _prefix_ids(self, options: Options) -> list[int]:
        """Whisper's text tokens start with a space; the prefix is tokenized as the model would write it."""
        text = " ".join(options.prefix.split())
        return self.tokenizer.encode(" " + text, add_special_tokens=False) if text else []

    def _features(self, request: _Request, window: Window) -> Features:
        if window not in request.features:
            started = self._now()
            values = features(self.processor.feature_extractor, window.audio(request.audio))
            request.features[window] = (values, self._now() - started)
        return request.features[window][0]

    def _encode(self, request: _Request, encoder, jobs) -> torch.Tensor:
        """Encoder output of each (window, seek, features) job: computed once per request, shared by the modes."""
        cache = request.encoded
        keys = [(id(encoder), w, seek) for w, seek, _ in jobs]
        found = [cache.get(key) for key in keys]
        missing = [i for i, states in enumerate(found) if states is None]
        if missing:
            started = self._now()
            segments = torch.stack([jobs[i][2] for i in missing]).to(self.models.device, self.models.dtype)
            states = encoder(segments).last_hidden_state
            each = (self._now() - started) / len(missing)
            for row, i in enumerate(missing):
                found[i] = states[row : row + 1]
                cache.put(keys[i], found[i], each)
        return torch.cat(found)

    def _judge(self, request: _Request, states: torch.Tensor, jobs) -> list[tuple[float, float]]:
        """The teacher's P(<|nospeech|>) for each segment (its first decoder position, read cheaply), computed
        once per request, with the seconds it took."""
        keys = [(w, seek) for w, seek, _ in jobs]
        missing = [i for i, key in enumerate(keys) if key not in request.judged]
        if missing:
            started = self._now()
            logits = first_position_logits(self.models.teacher, self.special.sot, states[missing])
            probs = torch.softmax(logits, dim=-1)[:, self.special.no_speech].tolist()
            each = (self._now() - started) / len(missing)
            for i, p in zip(missing, probs):
                request.judged[keys[i]] = (p, each)
        return [request.judged[k] for k in keys]

    def _detect_language(self, request: _Request, algorithm: str) -> str | None:
        """The teacher's most likely language token after start-of-transcript, on the first window with speech
        (None: no speech)."""
        windows, _ = self._plan(request, algorithm)
        if not windows and request.options.vad:
            return None
        window = windows[0] if windows else whole(request.audio[: int(WINDOW_S * SAMPLE_RATE)])
        started = self._now()
        with torch.inference_mode():
            states = self._encode(request, self.models.teacher.model.encoder,
                                  [(window, 0, self._features(request, window).segment(0))])
            logits = first_position_logits(self.models.teacher, self.special.sot, states)[0]
        codes = self.config.lang_to_id
        best = max(codes, key=lambda code: float(logits[codes[code]]))
        request.language_s = self._now() - started
        return best.strip("<|>")

    @property
    def _on_gpu(self) -> bool:
        return self.models.device.type == "cuda"

    def _now(self) -> float:
        if self._on_gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _result(self, mode: str, run: _ModeRun, transcripts: list[WindowTranscript], timing: Timing, algorithm: str,
                request: _Request) -> ModeResult:
        options, special = request.options, self.special
        texts = [run.text(t.kept).strip() for t in transcripts]
        segments = self._segments(transcripts, run, len(request.audio) / SAMPLE_RATE) if options.timestamps else None
        windows = []
        for transcript, text in zip(transcripts, texts):
            kept = transcript.decodes
            windows.append(WindowReport(
                start_s=round(transcript.window.start_s, 2), end_s=round(transcript.window.end_s, 2), text=text,
                temperature=max((d.decoded.temperature for d in kept), default=0.0),
                attempts=max((d.attempts for d in kept), default=1),
                looped=any(d.decoded.looped for d in kept), no_speech=any(d.no_speech for d in kept),
                repaired=transcript.repaired, suspect=any(d.suspect for d in kept)))
        token_ids = [t.kept for t in transcripts]
        traits = TRAITS[mode]
        result = ModeResult(
            mode=mode,
            model=self.models.preset.student if traits.model == "student" else self.models.preset.teacher,
            text=" ".join(t for t in texts if t),
            segments=segments,
            tokens=sum(len(special.text_only(ids)) for ids in token_ids),
            timing=timing,
            audio_s=len(request.audio) / SAMPLE_RATE,
            algorithm=algorithm,
            batch_size=min(run.batch_size, max(len(transcripts), 1)),
            model_passes=sum(d.decoded.model_passes for t in transcripts for d in t.decodes),
            windows=windows,
            token_ids=token_ids,
            language=options.language if self.multilingual else None,
            detected_language=request.detected_language,
        )
        if traits.drafts:  # every teacher pass of the decodes kept: the first reads the prompt, then one per draft
            start = len(self._prefix_ids(options))
            for i, transcript in enumerate(transcripts):
                for segment in transcript.decodes:
                    d = segment.decoded
                    first = d.tokens[start] if start < len(d.tokens) else None
                    result.trace.append(self._draft_pass(i, Pass(start, (), 0), first))
                    result.trace += [self._draft_pass(i, p, _emitted(d, p)) for p in d.passes]
            # drafting cost of every decode this mode ran (fallbacks and repairs included)
            result.draft_tokens = sum(d.drafted for _, _, d in run.decodes)
            result.accepted_tokens = sum(d.accepted for _, _, d in run.decodes)
        if len(transcripts) > 1 and options.batch_size > 1 and not traits.batches:
            result.note = BATCH_NOTE.format(batch=options.batch_size)
        return result

    def _draft_pass(self, window: int, p, emitted: int | None) -> DraftPass:
        return DraftPass(window, p.draft, p.accepted, emitted, tuple(self._token_text(t) for t in p.draft),
                         None if emitted is None else self._token_text(emitted))

    def _token_text(self, token: int) -> str:
        """A token as the page shows it: its text, a timestamp as <|1.24|>, other specials by name."""
        if token >= self.special.timestamp_begin:
            return f"<|{(token - self.special.timestamp_begin) * 0.02:.2f}|>"
        if token >= self.special.eot:
            return self.tokenizer.convert_ids_to_tokens(token)
        return self.tokenizer.decode([token])

    def _segments(self, transcripts: list[WindowTranscript], run: _ModeRun, total_s: float) -> list[Segment]:
        """Timestamped pieces of every window in clip time: absolute, monotonic, within the audio."""
        segments: list[Segment] = []
        for transcript in transcripts:
            window = transcript.window
            for decode_ in transcript.decodes:
                for piece in decode_.pieces:
                    text = run.text(piece.tokens).strip()
                    if not text:
                        continue
                    start = window.clip_time(piece.start_s)
                    end = window.clip_time(piece.end_s, end=True)
                    start = max(start, segments[-1].end if segments else 0.0)
                    end = min(max(end, start), total_s)
                    segments.append(Segment(round(start, 2), round(end, 2), text))
        return segments
