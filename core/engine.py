"""Transcribe one clip with student, teacher and speculative decoding: one runner, three strategies.

Every mode decodes greedily (num_beams=1) from the same log-mel features. Audio up to 30 s is one
window; longer audio is cut into overlapping chunks (merged the way transformers' pipeline does) or
decoded with OpenAI's sequential algorithm. The modes share each window's encoder output (the
student's encoder is the teacher's), and each mode is charged its time, so a mode's latency is what it
costs alone. With timestamps, transformers must encode inside generate() (it re-encodes when a window
ends mid-segment), so each such mode runs its own pass; the first is shared with the others. Silence and noise give no text (core/gate.py);
the sequential algorithm applies Whisper's no-speech rule inside transformers instead, with each
mode's own decoder as the judge. A forced prefix (`Options.prefix`: the words a live update already
committed) is decoded by our own greedy loops (core/speculative.py), since generate() no longer takes one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch

from transformers.modeling_outputs import BaseModelOutput

from core.audio import SAMPLE_RATE
from core.errors import ArenaError
from core.gate import LOGPROB_THRESHOLD, NO_SPEECH_THRESHOLD, NoSpeechRule, has_speech
from core.models import LoadedModels, load_models
from core.presets import get_preset
from core.results import MODES, ModelInfo, ModeResult, Segment
from core.speculative import GreedyDecoder, SpeculativeDecoder

WINDOW_S = 30.0  # Whisper's receptive field
STRIDE_FRACTION = 1 / 6  # overlap on each side of a chunk, as in transformers' pipeline
TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_NEW_TOKENS = 440  # Whisper's decoder holds 448 positions, 4 of them taken by the prompt
TOKENS_PER_SECOND_CAP = 12  # fast speech is ~5 tokens/s; timestamps add ~1/s
LONG_FORM_ALGORITHMS = ("chunked", "sequential")
SPECULATIVE_IMPLEMENTATIONS = ("lean", "transformers")
SPECULATIVE_TIMESTAMPS_NOTE = (
    "Speculative decoding runs without timestamps: transformers returns wrong text when assisted "
    "generation predicts timestamps. Its text equals the teacher's; use the teacher's segments."
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    modes: tuple[str, ...] = MODES
    timestamps: bool = False
    long_form: str = "chunked"  # or "sequential" (audio over 30 s only)
    language: str | None = "en"  # None: detected once by the teacher, then used by every mode
    batch_size: int = 8  # chunks decoded together (speculative decoding is limited to 1)
    prefix: str = ""  # text the transcript is forced to begin with (short-form, no timestamps): a live update's committed words
    no_speech_rule: bool = True  # False: the caller knows this audio holds speech (core/gate.py's rule is skipped)


@dataclass(frozen=True)
class Strategy:
    """What differs between the three modes: which model decodes, and with which draft model."""

    mode: str
    model: object
    assistant: object | None = None  # draft model for transformers' assisted generation
    drafter: SpeculativeDecoder | None = None  # or our lean draft-and-verify loop
    greedy: GreedyDecoder | None = None  # our lean loop for one model: it can continue a forced prefix
    max_batch: int | None = None
    timestamps: bool = True


@dataclass
class Window:
    audio: np.ndarray
    offset_s: float
    stride_s: tuple[float, float, float] | None = None  # (length, left overlap, right overlap)


@dataclass
class _Prepared:
    """Features computed once per algorithm and shared by every mode that uses it."""

    algorithm: str
    audio_s: float
    windows: list[Window]
    features: torch.Tensor
    attention_mask: torch.Tensor | None
    features_s: float
    speech: list[bool] = field(default_factory=list)  # the energy gate, per window
    # encoder output per (encoder, window) and the teacher's no-speech probability per window, each with
    # the seconds it took: computed by the first mode that needs it, charged to every mode that uses it
    encoded: dict[tuple[int, int], tuple[torch.Tensor, float]] = field(default_factory=dict)
    no_speech: dict[int, tuple[float, float]] = field(default_factory=dict)


def max_new_tokens(window_s: float) -> int:
    """Cap output length by audio length: a looping decoder stops early instead of at 448 tokens."""
    return min(MAX_NEW_TOKENS, int(TOKENS_PER_SECOND_CAP * window_s) + 16)


def plan_chunks(audio: np.ndarray, chunk_length_s: float) -> list[Window]:
    """Overlapping chunks; the overlaps let the merge drop words cut at chunk edges."""
    chunk = int(chunk_length_s * SAMPLE_RATE)
    stride = int(round(chunk_length_s * STRIDE_FRACTION * SAMPLE_RATE))
    step = chunk - 2 * stride
    windows = []
    for start in range(0, len(audio), step):
        piece = audio[start : start + chunk]
        is_last = start + chunk >= len(audio)
        left, right = (0 if start == 0 else stride), (0 if is_last else stride)
        if len(piece) > left:
            windows.append(Window(piece, start / SAMPLE_RATE, (len(piece) / SAMPLE_RATE, left / SAMPLE_RATE, right / SAMPLE_RATE)))
        if is_last:
            break
    return windows


class _Meter:
    """Times encoder passes and counts decoder calls through forward hooks, inside `generate`."""

    def __init__(self, encoder, decoder, draft_decoder, synchronize: bool):
        self.encoder_s = 0.0
        self.decoder_calls = 0
        self.draft_calls = 0
        self.generated = 0  # tokens produced by generate(), end-of-text included
        self.drafted = 0  # lean speculative loop: its own exact counts
        self.accepted = 0
        self._sync = synchronize
        self._start = 0.0
        self._hooks = [
            encoder.register_forward_pre_hook(self._encoder_start),
            encoder.register_forward_hook(self._encoder_end),
            decoder.register_forward_hook(self._count_decoder),
        ]
        if draft_decoder is not None:
            self._hooks.append(draft_decoder.register_forward_hook(self._count_draft))

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _encoder_start(self, *_):
        self._start = self._now()

    def _encoder_end(self, *_):
        self.encoder_s += self._now() - self._start

    def _count_decoder(self, *_):
        self.decoder_calls += 1

    def _count_draft(self, *_):
        self.draft_calls += 1

    def close(self):
        for hook in self._hooks:
            hook.remove()


class Arena:
    """The facade: load a preset once, then transcribe any audio in any of the three modes."""

    def __init__(self, models: LoadedModels, speculative: str = "lean"):
        """`speculative`: "lean" (core/speculative.py, needs a shared encoder) or "transformers" (assisted generation)."""
        if speculative not in SPECULATIVE_IMPLEMENTATIONS:
            raise ValueError(f"speculative implementation must be one of {SPECULATIVE_IMPLEMENTATIONS}")
        self.models = models
        self.processor = models.processor
        self.tokenizer = models.processor.tokenizer
        self.eot = models.teacher.generation_config.eos_token_id
        self.multilingual = bool(getattr(models.teacher.generation_config, "is_multilingual", False))
        self.strategies = {
            "student": Strategy("student", models.student, greedy=GreedyDecoder(models.student, models.student.generation_config)),
            "teacher": Strategy("teacher", models.teacher, greedy=GreedyDecoder(models.teacher, models.teacher.generation_config)),
            "speculative": Strategy("speculative", models.teacher, models.assistant, max_batch=1, timestamps=False),
        }
        if speculative == "lean" and models.shared_encoder:
            drafter = SpeculativeDecoder(models.teacher, models.student, models.teacher.generation_config,
                                         models.preset.draft_tokens, draft_vocabulary=models.draft_vocabulary)
            self.strategies["speculative"] = Strategy("speculative", models.teacher, drafter=drafter, max_batch=1,
                                                      timestamps=False)
        self.speculative = "lean" if self.strategies["speculative"].drafter else "transformers"
        config = models.teacher.generation_config
        # <|nospeech|> sits just before <|notimestamps|> in every Whisper vocabulary (transformers relies on it too)
        self.no_speech = NoSpeechRule(models.teacher, config.decoder_start_token_id, config.no_timestamps_token_id - 1)
        self._info = models.info()
        # one mode at a time, whichever thread asks (a live session decodes on its own thread): two at
        # once would share the cores and each other's timing hooks
        self._busy = threading.RLock()

    @classmethod
    def load(cls, preset: str | None = None, warmup: bool = True, speculative: str = "lean") -> "Arena":
        started = time.perf_counter()
        arena = cls(load_models(get_preset(preset)), speculative)
        if warmup:
            arena.warmup()
        log.info("preset %s ready in %.1f s", arena.info.preset, time.perf_counter() - started)
        return arena

    @property
    def info(self) -> ModelInfo:
        return self._info

    def warmup(self) -> None:
        """One short pass per mode so the first user request doesn't pay for lazy initialisation."""
        rng = np.random.default_rng(0)
        noise = (0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        prepared = self._prepare(noise, "short-form")
        for strategy in self.strategies.values():
            self._decode(strategy, prepared, Options(), force=True)

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
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if options.prefix.strip():
            self._check_prefix(audio, options)
        if options.language is None and self.multilingual:
            options = replace(options, language=self.detect_language(audio))

        prepared: dict[str, _Prepared] = {}
        teacher_result: ModeResult | None = None
        ordered = [m for m in MODES if m in options.modes]
        for index, mode in enumerate(ordered):
            if progress:
                progress(index / len(ordered), f"{mode}…")
            strategy = self.strategies[mode]
            algorithm = self._algorithm(audio, options, strategy)
            with self._busy:
                if algorithm not in prepared:
                    prepared[algorithm] = self._prepare(audio, algorithm)
                result = self._decode(strategy, prepared[algorithm], options)
            if mode == "teacher":
                teacher_result = result
            elif mode == "speculative":
                result.identical_to_teacher = self._same_tokens(result, teacher_result)
            yield result
        if progress:
            progress(1.0, "done")

    def detect_language(self, audio: np.ndarray) -> str:
        features = self._features([audio[: int(WINDOW_S * SAMPLE_RATE)]])
        with self._busy, torch.inference_mode():
            token = self.models.teacher.detect_language(input_features=features)[0].item()
        return self.tokenizer.convert_ids_to_tokens(token).strip("<|>")

    # ---- internals ----------------------------------------------------------------------------

    def _check_prefix(self, audio: np.ndarray, options: Options) -> None:
        if options.timestamps or len(audio) > WINDOW_S * SAMPLE_RATE:
            raise ArenaError("A forced prefix works on one window of at most 30 s, without timestamps.")
        if "speculative" in options.modes and self.strategies["speculative"].drafter is None:
            raise ArenaError("A forced prefix needs the lean speculative loop (a student sharing the teacher's encoder).")

    def _prefix_ids(self, options: Options) -> list[int]:
        """Whisper's text tokens start with a space; the prefix is tokenized as the model would write it."""
        text = " ".join(options.prefix.split())
        return self.tokenizer.encode(" " + text, add_special_tokens=False) if text else []

    def _algorithm(self, audio: np.ndarray, options: Options, strategy: Strategy) -> str:
        if len(audio) <= WINDOW_S * SAMPLE_RATE:
            return "short-form"
        if options.long_form == "sequential" and strategy.timestamps:
            return "sequential"
        return "chunked"  # speculative decoding has no sequential algorithm: it needs timestamps

    def _features(self, audios: list[np.ndarray], long_form: bool = False):
        kwargs = dict(sampling_rate=SAMPLE_RATE, return_tensors="pt")
        if long_form:
            kwargs.update(truncation=False, padding="longest", return_attention_mask=True)
        extracted = self.processor.feature_extractor(audios, **kwargs)
        features = extracted.input_features.to(self.models.device, self.models.dtype)
        if long_form:
            return features, extracted.attention_mask.to(self.models.device)
        return features

    def _prepare(self, audio: np.ndarray, algorithm: str) -> _Prepared:
        started = time.perf_counter()
        mask = None
        if algorithm == "chunked":
            windows = plan_chunks(audio, self.models.preset.chunk_length_s)
            features = self._features([w.audio for w in windows])
        else:
            windows = [Window(audio, 0.0)]
            if algorithm == "sequential":
                features, mask = self._features([audio], long_form=True)
            else:
                features = self._features([audio])
        speech = [has_speech(w.audio) for w in windows]
        return _Prepared(algorithm, len(audio) / SAMPLE_RATE, windows, features, mask, time.perf_counter() - started, speech)

    def _prompt(self, options: Options) -> list[int]:
        """The decoder prompt generate() would build: start, language, task, no-timestamps."""
        config = self.models.teacher.generation_config
        prompt = [config.decoder_start_token_id]
        if self.multilingual:
            prompt += [config.lang_to_id[f"<|{options.language or 'en'}|>"], config.task_to_id["transcribe"]]
        return prompt + [config.no_timestamps_token_id]

    def _generate_kwargs(self, strategy: Strategy, options: Options, timestamps: bool) -> dict:
        kwargs: dict = dict(num_beams=1, do_sample=False, return_timestamps=timestamps)
        if self.multilingual:
            kwargs.update(language=options.language or "en", task="transcribe")
        if strategy.assistant is not None:
            # generate() adapts the draft length as it goes; reset it so every call starts equal
            config = strategy.assistant.generation_config
            config.num_assistant_tokens = self.models.preset.draft_tokens
            config.num_assistant_tokens_schedule = "constant"
            config.assistant_confidence_threshold = 0.0
            kwargs["assistant_model"] = strategy.assistant
        return kwargs

    def _decode(self, strategy: Strategy, prepared: _Prepared, options: Options, force: bool = False) -> ModeResult:
        timestamps = options.timestamps and strategy.timestamps
        kwargs = self._generate_kwargs(strategy, options, timestamps)
        windows = [i for i, speech in enumerate(prepared.speech) if speech or force]
        # generate() takes features, not encoder outputs, where it must run an encoder itself: with timestamps
        # it re-encodes shifted audio when a window ends mid-segment, and assisted generation with a draft
        # model that has its own encoder runs that encoder. Its first encoder pass is then kept for the gate
        # and the modes after it (_generate_windows).
        from_features = strategy.drafter is None and (
            timestamps or (strategy.assistant is not None and not self.models.shared_encoder))
        shared_s = (0.0, 0.0)
        if prepared.algorithm != "sequential" and not from_features:
            with torch.inference_mode():
                shared_s = self._analyse(strategy, prepared, windows, options.batch_size, options.no_speech_rule)
        meter = _Meter(
            strategy.model.model.encoder,
            strategy.model.model.decoder,
            strategy.assistant.model.decoder if strategy.assistant is not None else None,
            synchronize=self._on_gpu,
        )
        started = self._now()
        try:
            with torch.inference_mode():
                if prepared.algorithm == "sequential":
                    token_ids, segments = self._generate_sequential(strategy, prepared, kwargs)
                else:
                    token_ids = self._generate_windows(strategy, prepared, windows, kwargs, options, meter,
                                                       from_features)
                    segments = None
        finally:
            meter.close()
        if prepared.algorithm != "sequential" and options.no_speech_rule and not force:
            with torch.inference_mode():
                self._drop_no_speech(prepared, windows, token_ids, self._prompt(options))
        decode_wall = self._now() - started

        if prepared.algorithm == "sequential":
            text = "".join(s.text for s in segments)
            segments = [replace(s, text=s.text.strip()) for s in segments]
        else:
            text, segments = self._merge(prepared, token_ids, timestamps)
        # each mode is charged the shared encoder and gate work it used, as if it had run alone
        encoder_s = meter.encoder_s + shared_s[0]
        latency_s = prepared.features_s + decode_wall + sum(shared_s)
        result = ModeResult(
            mode=strategy.mode,
            model=self.models.preset.student if strategy.mode == "student" else self.models.preset.teacher,
            text=text.strip(),
            segments=segments if timestamps else None,
            tokens=sum(1 for ids in token_ids for t in ids if t < self.eot),
            latency_s=latency_s,
            encoder_s=encoder_s,
            decode_s=latency_s - prepared.features_s - encoder_s,
            audio_s=prepared.audio_s,
            algorithm=prepared.algorithm,
            token_ids=token_ids,
        )
        if strategy.drafter is not None:
            result.draft_tokens, result.accepted_tokens = meter.drafted, meter.accepted
        elif strategy.assistant is not None:
            # each teacher call keeps the accepted drafts plus one token of its own
            result.draft_tokens = meter.draft_calls
            result.accepted_tokens = max(meter.generated - meter.decoder_calls, 0)
        if strategy.mode == "speculative":
            if options.timestamps:
                result.note = SPECULATIVE_TIMESTAMPS_NOTE
        return result

    @property
    def _on_gpu(self) -> bool:
        return self.models.device.type == "cuda"

    def _now(self) -> float:
        if self._on_gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _analyse(self, strategy: Strategy, prepared: _Prepared, windows: list[int], batch: int,
                 judge: bool) -> tuple[float, float]:
        """Encoder output and (when `judge`) no-speech probability of each window, computed once per request
        and shared by the modes; returns the (encoder, gate) seconds this mode is charged for them.

        The cache holds every window of the request (for a 60 min clip with large-v3 in fp16 ~1.4 GB of
        GPU memory): the price of never running the same encoder twice on the same audio."""
        encoders = [self.models.teacher.model.encoder] if judge else []  # the gate's judge
        if strategy.model.model.encoder not in encoders:
            encoders.append(strategy.model.model.encoder)
        for start in range(0, len(windows), batch):
            index = windows[start : start + batch]
            for encoder in encoders:
                self._encode(encoder, prepared, index)
            if judge:
                self._no_speech_probs(prepared, index)
        encoder_s = sum(prepared.encoded[(id(encoder), i)][1] for encoder in encoders for i in windows)
        return encoder_s, sum(prepared.no_speech[i][1] for i in windows if judge)

    def _no_speech_probs(self, prepared: _Prepared, index: list[int]) -> None:
        missing = [i for i in index if i not in prepared.no_speech]
        if missing:
            states = self._encode(self.models.teacher.model.encoder, prepared, missing)
            started = self._now()
            probs = self.no_speech.no_speech_prob(states)
            each = (self._now() - started) / len(missing)
            prepared.no_speech.update({i: (p, each) for i, p in zip(missing, probs)})

    def _encode(self, encoder, prepared: _Prepared, index: list[int]) -> torch.Tensor:
        missing = [i for i in index if (id(encoder), i) not in prepared.encoded]
        if missing:
            started = self._now()
            states = encoder(prepared.features[missing]).last_hidden_state
            each = (self._now() - started) / len(missing)
            prepared.encoded.update({(id(encoder), i): (states[row : row + 1], each) for row, i in enumerate(missing)})
        return torch.cat([prepared.encoded[(id(encoder), i)][0] for i in index])

    def _generate_windows(self, strategy, prepared: _Prepared, windows: list[int], kwargs: dict, options: Options,
                          meter: _Meter, from_features: bool):
        """Decode the given windows from their shared encoder output, in batches; the others give no tokens.

        generate() stays the path for student and teacher (it batches, and is the reference the lean loops
        are tested against), except with a forced prefix, which it no longer takes for Whisper."""
        prefix = self._prefix_ids(options)
        lean = strategy.drafter or (strategy.greedy if prefix else None)
        batch = 1 if lean else min(options.batch_size, strategy.max_batch or options.batch_size)
        prompt = self._prompt(options)
        token_ids: list[list[int]] = [[] for _ in prepared.windows]
        for start in range(0, len(windows), batch):
            index = windows[start : start + batch]
            limit = max_new_tokens(max(len(prepared.windows[i].audio) for i in index) / SAMPLE_RATE)
            if lean is not None:
                (i,) = index
                states = self._encode(strategy.model.model.encoder, prepared, index)
                token_ids[i], stats = lean.decode(prompt, states, limit, prefix)
                meter.drafted += stats.drafted
                meter.accepted += stats.accepted
                continue
            if from_features:
                out = self._generate_from_features(strategy, prepared, index, meter, max_new_tokens=limit, **kwargs)
            else:
                states = self._encode(strategy.model.model.encoder, prepared, index)
                out = strategy.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states),
                                              max_new_tokens=limit, **kwargs)
            sequences = out["sequences"] if isinstance(out, dict) else out
            for i, row in zip(index, sequences.tolist()):
                token_ids[i] = self._strip(row)
                meter.generated += len(token_ids[i]) + (len(token_ids[i]) < limit)  # + end-of-text
        return token_ids

    def _generate_from_features(self, strategy, prepared: _Prepared, index: list[int], meter: _Meter, **kwargs):
        """generate() on features; its first encoder pass (the whole windows) is cached like _encode's."""
        encoder = strategy.model.model.encoder
        first: list = []

        def keep_first(_module, _args, output):
            if not first:  # the meter's hook ran before this one: its total includes this pass
                first.append((output.last_hidden_state, meter.encoder_s))

        before = meter.encoder_s
        hook = encoder.register_forward_hook(keep_first)
        try:
            out = strategy.model.generate(input_features=prepared.features[index], **kwargs)
        finally:
            hook.remove()
        if first:
            states, total = first[0]
            each = (total - before) / len(index)
            for row, i in enumerate(index):
                prepared.encoded.setdefault((id(encoder), i), (states[row : row + 1], each))
        return out

    def _drop_no_speech(self, prepared: _Prepared, windows: list[int], token_ids: list[list[int]],
                        prompt: list[int]) -> None:
        """Whisper's no-speech rule, judged by the teacher: empty the windows that hold only noise."""
        teacher_encoder = self.models.teacher.model.encoder
        for i in windows:
            if not token_ids[i]:
                continue
            text_ids = [t for t in token_ids[i] if t < self.eot]  # the same judgement with or without timestamps
            self._no_speech_probs(prepared, [i])
            states = self._encode(teacher_encoder, prepared, [i])
            if self.no_speech.is_no_speech(prepared.no_speech[i][0], states, prompt, text_ids, self.eot,
                                           self.tokenizer.decode(text_ids)):
                token_ids[i] = []

    def _generate_sequential(self, strategy, prepared: _Prepared, kwargs: dict):
        """OpenAI's algorithm: slide a 30 s window, jumping to the last predicted timestamp."""
        if not any(prepared.speech):
            return [[]], []
        out = strategy.model.generate(
            input_features=prepared.features,
            attention_mask=prepared.attention_mask,
            return_segments=True,
            condition_on_prev_tokens=False,
            no_speech_threshold=NO_SPEECH_THRESHOLD,  # transformers applies Whisper's rule itself here
            logprob_threshold=LOGPROB_THRESHOLD,
            temperature=0.0,  # greedy, no fallback; the rule needs it set
            **{**kwargs, "return_timestamps": True},
        )
        segments = []
        for seg in out["segments"][0]:
            text = self.tokenizer.decode(seg["tokens"], skip_special_tokens=True)
            segments.append(Segment(float(seg["start"]), float(seg["end"]), text))
        return [self._strip(out["sequences"][0].tolist())], segments

    def _strip(self, ids: list[int]) -> list[int]:
        """Cut end-of-text and the padding after it (generate() keeps them only for rows of a batch)."""
        return ids[: ids.index(self.eot)] if self.eot in ids else ids

    def _merge(self, prepared: _Prepared, token_ids: list[list[int]], timestamps: bool):
        """Join windows as transformers' pipeline does: longest common token run across overlaps."""
        outputs = []
        for window, ids in zip(prepared.windows, token_ids):
            output = {"tokens": np.array([ids or [self.eot]], dtype=np.int64)}
            if window.stride_s is not None:
                output["stride"] = window.stride_s
            outputs.append(output)
        text, extra = self.tokenizer._decode_asr(
            outputs, return_timestamps=timestamps, return_language=False, time_precision=TIME_PRECISION
        )
        if not timestamps:
            return text, None
        total = prepared.audio_s
        segments = []
        for chunk in extra.get("chunks", []):
            start, end = chunk["timestamp"]
            start = float(start or 0.0)
            end = float(end) if end is not None else total
            if chunk["text"].strip():
                segments.append(Segment(round(start, 2), round(min(max(end, start), total), 2), chunk["text"].strip()))
        return text, segments

    @staticmethod
    def _same_tokens(result: ModeResult, teacher: ModeResult | None) -> bool | None:
        if teacher is None or teacher.segments is not None or teacher.algorithm != result.algorithm:
            return None  # timestamps or a different algorithm change the teacher's tokens
        return result.token_ids == teacher.token_ids
