"""One mode on one request: the decoder that core/transcribe.py's seek loop drives.

A `ModeRun` reads the request's shared work (features, encoder output, the teacher's no-speech judgement)
through the request's charged caches, so that it is charged what it used as if it had run alone, and it
keeps the seconds of its own decoding. The student and the teacher decode greedily in batches of windows,
speculative decoding one window at a time with the student drafting; the teacher judges Whisper's
no-speech rule for every mode (the student's mode pays for one teacher decoder step per segment).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, Sequence

import torch

from core.decoding import Decoded, DecoderModel, SpecialTokens, Task, decode
from core.draft import DraftModel
from core.gate import TEMPERATURES
from core.measure import Clock
from core.models import LoadedModels
from core.modes import TRAITS
from core.prompt import prefix_ids, prompt
from core.request import Job, Request
from core.results import Timing
from core.transcribe import WindowTranscript, transcribe
from core.windows import Features, Window
from core.words import time_words


class Engine(Protocol):
    """What a mode run and language detection read of the facade (core.engine.Arena): the loaded models,
    how to time them."""

    models: LoadedModels
    processor: object  # the preset's WhisperProcessor
    tokenizer: object
    config: object  # the teacher's generation config
    special: SpecialTokens
    multilingual: bool
    draft: DraftModel
    clock: Clock

    def in_precision(self, name: str) -> tuple[LoadedModels, dict[str, DecoderModel]]: ...


class ModeRun:
    """The `Runner` of core/transcribe.py for one mode of one request."""

    def __init__(self, arena: Engine, mode: str, request: Request):
        self.arena, self.mode, self.request = arena, mode, request
        traits = TRAITS[mode]
        self.precision = request.options.precision or arena.models.precision
        self.models, decoders = arena.in_precision(self.precision)
        self.model = decoders[traits.model]
        models = self.models
        self.encoder = (models.teacher if traits.model == "teacher" else models.student).model.encoder
        self.draft = arena.draft if traits.drafts else None
        self.batch_size = request.options.batch_size if traits.batches else 1
        self.timestamp_begin = arena.special.timestamp_begin
        self.judge = mode == "student" and request.options.no_speech_rule  # the teacher judges the student's windows
        self.draft_s = self.verify_s = self.words_s = 0.0  # this mode's own work, not shared
        self.aligner = models.teacher if traits.model == "teacher" else models.student  # who times its words
        self.decodes: list[Decoded] = []  # every decode it ran, fallbacks and repairs included

    def transcribe(self, windows: list[Window]) -> list[WindowTranscript]:
        """The seek loop over `windows` with the request's prompt, prefix and safeguards."""
        options, arena = self.request.options, self.arena
        head = prompt(arena.config, arena.multilingual, options.language)
        with torch.inference_mode():
            transcripts = transcribe(windows, self.features_of, self, head, options.timestamps,
                                     tuple(prefix_ids(arena.tokenizer, options.prefix)), options.no_speech_rule,
                                     TEMPERATURES if options.fallback else TEMPERATURES[:1])
        if options.word_timestamps:
            self._time_words(transcripts, head(False))
        return transcripts

    def _time_words(self, transcripts: list[WindowTranscript], prompt: tuple[int, ...]) -> None:
        """Word times for every kept decode, at this mode's `words_s`."""
        self.words_s += time_words(self, transcripts, self.aligner, prompt, self.request.options.batch_size)

    def features_of(self, window: Window) -> Features:
        return self.request.features_of(window, self.arena.processor.feature_extractor, self.arena.clock, self.mode)

    def encode(self, jobs: Sequence[Job]) -> torch.Tensor:
        return self._encode(self.encoder, jobs)

    def _encode(self, encoder, jobs: Sequence[Job]) -> torch.Tensor:
        return self.request.encode(encoder, jobs, self.models, self.arena.clock, self.mode)

    def decode(self, states: torch.Tensor, task: Task, jobs: Sequence[Job]) -> list[Decoded]:
        arena, models = self.arena, self.models
        draft_states = None
        if self.draft is not None and not models.shared_encoder:
            draft_states = self._encode(models.student.model.encoder, jobs)
        started = arena.clock()
        decoded = self._decoded(states, task, draft_states)
        elapsed = arena.clock() - started
        draft_s = sum(d.draft_s for d in decoded)
        self.draft_s += draft_s
        self.verify_s += elapsed - draft_s
        if self.judge:
            teacher_states = self._encode(models.teacher.model.encoder, jobs)
            judged = self.request.no_speech(models.teacher, arena.special, teacher_states, jobs, arena.clock, self.mode)
            for d, p in zip(decoded, judged):
                d.no_speech_prob = p
        self.decodes += decoded
        return decoded

    def _decoded(self, states: torch.Tensor, task: Task, draft_states: torch.Tensor | None) -> list[Decoded]:
        """The decoding loop on every window of the batch; with a draft model, one window at a time."""
        arena = self.arena
        if self.draft is None:
            return decode(self.model, states, task, arena.special, clock=arena.clock)
        return [decode(self.model, states[i : i + 1],
                       replace(task, limits=task.limits[i : i + 1], seeds=task.seeds[i : i + 1]), arena.special,
                       self.draft, arena.clock, None if draft_states is None else draft_states[i : i + 1])[0]
                for i in range(len(states))]

    def text(self, tokens: Sequence[int]) -> str:
        return self.arena.tokenizer.decode(self.arena.special.text_only(tokens))

    def charged(self) -> Timing:
        """This mode's timing: its own decoding, and every piece of shared work it used at its full cost."""
        request, mode = self.request, self.mode
        return Timing(vad_s=request.plans.charge(mode), features_s=request.features.charge(mode),
                      encoder_s=request.encoded.charge(mode), judge_s=request.language_s + request.judged.charge(mode),
                      draft_s=self.draft_s, verify_s=self.verify_s, words_s=self.words_s)
