"""Transcribe one clip with student, teacher and speculative decoding: the facade.

`Arena` loads a preset once and serves requests: it checks the options (core/options.py), decides the
order of the modes, detects the language when asked to, and runs each mode (core/mode_run.py) on one
shared request (core/request.py). Every mode decodes the same windows from the same features and the same
encoder output, computed once per request; each mode's latency counts every piece it used as if it had
run alone, so the ratios between modes compare the modes, not the order they ran in. Every mode runs the
same seek loop (core/transcribe.py) on the same decoding loop (core/decoding.py); its result is assembled
in core/assemble.py.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core import language, precision
from core.assemble import mode_result
from core.audio import SAMPLE_RATE
from core.decoding import DecoderModel, SpecialTokens
from core.draft import DraftModel
from core.measure import PeakGpuMemory, clock_for
from core.mode_run import ModeRun
from core.models import LoadedModels, load_models
from core.modes import MODES, TRAITS
from core.options import Options, algorithm_for
from core.presets import get_preset
from core.prompt import prompt
from core.request import ENCODER_CACHE_BYTES, EncoderCache, Request
from core.results import ModelInfo, ModeResult
from core.vad import speech_regions

log = logging.getLogger(__name__)


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
        self._in_precision = {models.precision: (models, self.decoders)}
        self.draft = DraftModel(models.student, models.draft_vocabulary, models.preset.draft)
        self.clock = clock_for(models.device)  # every timing reads this clock
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
        """One short pass per mode and precision (and of the VAD) so the first user request doesn't pay for
        lazy set-up."""
        rng = np.random.default_rng(0)
        noise = (0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        speech_regions(noise)
        for name in self.info.precisions:  # every precision the page offers: its decoders made, its kernels warm
            self.transcribe(noise, Options(vad=False, no_speech_rule=False, fallback=False, precision=name))

    def transcribe(self, audio: np.ndarray, options: Options = Options()) -> list[ModeResult]:
        return list(self.iter_transcribe(audio, options))

    def iter_transcribe(
        self, audio: np.ndarray, options: Options = Options(), progress: Callable[[float, str], None] | None = None
    ) -> Iterator[ModeResult]:
        """Yield each mode's result as soon as it is done (teacher before speculative, which is compared to it)."""
        chosen = algorithm_for(options, audio)
        options = replace(options, precision=precision.check(options.precision, self.models.device))
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        request = self._request(audio, options)
        if self.multilingual and (options.language is None or options.vad):
            # what the teacher hears: decoded in when asked for ("auto"), else shown beside the asked language
            with self._busy:
                request.detected_language, seconds = language.detect(self, request, chosen)
            if options.language is None:
                request.options = replace(options, language=request.detected_language)
                request.language_s = seconds  # every mode needed it (a language asked for: a guard, not charged)

        teacher_result: ModeResult | None = None
        ordered = [m for m in MODES if m in options.modes]
        for index, mode in enumerate(ordered):
            if progress:
                progress(index / len(ordered), f"{mode}…")
            with self._busy:
                result = self._run(mode, request, chosen)
            if mode == "teacher":
                teacher_result = result
            elif TRAITS[mode].drafts and teacher_result is not None:
                result.identical_to_teacher = result.token_ids == teacher_result.token_ids
            yield result
        if progress:
            progress(1.0, "done")

    def in_precision(self, name: str) -> tuple[LoadedModels, dict[str, DecoderModel]]:
        """The models with both decoders in precision `name` (made on first use, then kept) and their decoders
        as the decoding loop drives them. The draft model is the same in every precision: the teacher
        verifies every drafted token in its own."""
        with self._busy:
            if name not in self._in_precision:
                models = self.models.in_precision(name)
                self._in_precision[name] = models, {"teacher": DecoderModel(models.teacher),
                                                    "student": DecoderModel(models.student)}
            return self._in_precision[name]

    def detect_language(self, audio: np.ndarray) -> str:
        request = self._request(np.ascontiguousarray(audio, dtype=np.float32), Options())
        with self._busy:
            return language.detect(self, request, "short-form")[0]

    def _run(self, mode: str, request: Request, algorithm: str) -> ModeResult:
        """`mode` on `request`: the seek loop over the request's windows, then the result with its charged
        timing (and, on a GPU, the most memory this mode allocated)."""
        windows = request.windows(algorithm, self.models.preset.chunk_length_s, mode)
        run = ModeRun(self, mode, request)
        with PeakGpuMemory(self.models.device) as peak:
            transcripts = run.transcribe(windows)
            result = mode_result(run, transcripts, run.charged(), algorithm)
        result.peak_gpu_mb = peak.mb
        return result

    def _request(self, audio: np.ndarray, options: Options) -> Request:
        # the budget is read per request (a test shrinks it)
        return Request(audio, options, encoded=EncoderCache(self.models.device, ENCODER_CACHE_BYTES))

    def _prompt(self, options: Options) -> Callable[[bool], tuple[int, ...]]:
        """The decoder prompt of these options (core/prompt.py), by timestamps on or off."""
        return prompt(self.config, self.multilingual, options.language)
