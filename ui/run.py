"""A transcription request as it fills in (`Run`), and one page update of it as plain data (`Snapshot`)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from core.metrics import wer
from core.results import ModelInfo, ModeResult


@dataclass
class Run:
    """One transcription request as it fills in: each mode's result (the run of median latency when the
    modes are repeated), every latency measured, and the subtitle files."""

    clip: str
    source: str  # upload | microphone | youtube
    info: ModelInfo
    audio_s: float
    options: object  # core.engine.Options
    reference: str = ""
    repeats: int = 1
    results: dict[str, ModeResult] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    subtitles: dict[str, list[Path]] = field(default_factory=dict)
    playback: str | None = None  # the clip's URL for the page's player (word times only)

    @property
    def modes(self) -> tuple[str, ...]:
        return self.options.modes

    def add(self, result: ModeResult) -> None:
        """Record one mode's result; the shown one is the run of median latency."""
        runs = self.latencies.setdefault(result.mode, [])
        runs.append(result.latency_s)
        shown = self.results.get(result.mode)
        if shown is None or abs(result.latency_s - statistics.median(runs)) < abs(shown.latency_s - statistics.median(runs)):
            self.results[result.mode] = result

    def wer(self, mode: str) -> float | None:
        if not self.reference.strip() or mode not in self.results:
            return None
        return wer(self.reference, self.results[mode].text)

    def wer_vs_teacher(self, mode: str) -> float | None:
        """Fidelity: how far a mode's words are from the teacher's (the student's distillation target)."""
        if mode == "teacher" or "teacher" not in self.results or mode not in self.results:
            return None
        return wer(self.results["teacher"].text, self.results[mode].text)

    def latency(self, mode: str) -> float:
        return statistics.median(self.latencies[mode])

    def speedup_vs_teacher(self, mode: str) -> float | None:
        if "teacher" not in self.latencies or mode not in self.latencies or self.latency(mode) <= 0:
            return None
        return self.latency("teacher") / self.latency(mode)

    @property
    def finished(self) -> bool:
        return set(self.results) == set(self.modes) and all(len(self.latencies[m]) >= self.repeats for m in self.modes)


@dataclass(frozen=True)
class Snapshot:
    """What one page update shows, as plain data (ZeroGPU pickles what a GPU function yields): the run so
    far; once it is finished, the grown session history and the run's export; after a live session, its
    final text."""

    run: Run | None = None
    history: list[dict] | None = None
    export: str | None = None
    live: str | None = None
