"""One transcription request, from the form to its run.

`Form`: the settings as sent, checked into core Options (`parse_repeats` is the one reader of the repeat
count). `Source`: where the audio comes from, and its loading. `stream_run`: the run once before decoding
and again after each mode, with that mode's subtitle files.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio import duration_s, load_audio
from core.engine import Options
from core.modes import MODES
from core.subtitles import SUBTITLE_FORMATS, write_subtitles
from core.youtube import fetch_audio
from ui.models import max_seconds, refusal, require_arena
from ui.playback import write_playback
from ui.run import Run

MAX_REPEATS = 5

log = logging.getLogger(__name__)


def parse_repeats(value) -> int | None:
    """The repeat count: a whole number from 1 to MAX_REPEATS (nothing means 1); None for anything else."""
    try:
        repeats = int(value or 1)
    except (TypeError, ValueError):
        return None
    return repeats if 1 <= repeats <= MAX_REPEATS else None


@dataclass(frozen=True)
class Form:
    """The settings every transcribing event gets, as the page or the API client sent them."""

    modes: Sequence[str] | None
    timestamps: bool | None
    long_form: str | None
    language: str | None
    reference: str | None
    repeats: object
    word_timestamps: bool | None = False  # implies timestamps
    precision: str | None = None  # the decoders' (core/precision.py); None: the device's default

    def options(self) -> Options:
        chosen = tuple(mode for mode in MODES if mode in (self.modes or ()))
        if not chosen:
            raise refusal("Tick at least one mode: student, teacher or speculative.")
        return Options(
            modes=chosen,
            timestamps=bool(self.timestamps),
            word_timestamps=bool(self.word_timestamps),
            long_form=self.long_form or "chunked",
            language=None if self.language == "auto" else (self.language or "en"),
            precision=self.precision or None,
        )

    def repeat_count(self) -> int:
        repeats = parse_repeats(self.repeats)
        if repeats is None:
            raise refusal(f"Repeats must be a whole number from 1 to {MAX_REPEATS}.")
        return repeats


@dataclass(frozen=True)
class Source:
    """Where a request's audio comes from: a file, a YouTube link or samples already in memory. `kind` is the
    run's source (upload | microphone | youtube); `clip` names the run where the audio has no name of its own."""

    kind: str
    file: str | None = None
    url: str | None = None
    samples: np.ndarray | None = None
    clip: str = ""
    missing: str = ""  # the refusal when nothing was sent

    def load(self, progress) -> tuple[np.ndarray, str]:
        """The audio and the run's name for it."""
        if self.samples is not None:
            return self.samples, self.clip
        if self.url is not None:
            return _youtube_audio(self.url, progress)
        if not self.file:
            raise refusal(self.missing)
        return load_audio(self.file, max_seconds=max_seconds()), self.clip or Path(self.file).name


def _youtube_audio(url, progress) -> tuple[np.ndarray, str]:
    """Download into a private folder that is gone once the audio is in memory, on success or error."""
    limit = max_seconds()
    progress(0, desc="Downloading the audio from YouTube…")
    with tempfile.TemporaryDirectory(prefix="arena-youtube-") as download_dir:
        video = fetch_audio(url, max_seconds=limit, out_dir=download_dir)
        return load_audio(video.path, max_seconds=limit), video.title


def stream_run(source: Source, form: Form, out_dir: str, progress, page: bool = True) -> Iterator[Run]:
    """Yield the run once before decoding and again after each mode, with that mode's subtitle files. With
    repeats > 1 the chosen modes run that many rounds, interleaved (every round runs them all). `page`: the
    run is shown in the page (with word times, its player gets the clip; an API call needs none)."""
    options = form.options()
    audio, clip = source.load(progress)
    repeats = form.repeat_count()
    arena = require_arena()
    run = Run(clip, source.kind, arena.info, duration_s(audio), options, form.reference or "", repeats)
    if page and options.word_timestamps:
        run.playback = write_playback(audio)
    yield run

    for round_ in range(repeats):
        def report(fraction: float, message: str) -> None:
            progress((round_ + fraction) / repeats, desc=f"Transcribing: {message}")

        for result in arena.iter_transcribe(audio, options, progress=report):
            run.add(result)
            if result.segments is not None and result.mode not in run.subtitles:
                files = write_subtitles(result, out_dir, Path(run.clip).stem)
                run.subtitles[result.mode] = [files[fmt] for fmt in SUBTITLE_FORMATS]
            yield run
    log.info(
        "%s (%.1f s, %s): %s", run.clip, run.audio_s, run.source,
        ", ".join(f"{m} {run.latency(m):.2f} s" for m in run.results),
    )
