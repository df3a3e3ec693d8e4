"""The seed's table, measured here: `python -m core.bench --preset P --data DIR [--json OUT] [--plot OUT.png]`.

Relative latency follows the Distil-Whisper paper: teacher latency / mode latency (teacher = 1.0,
higher is faster), computed per clip with the modes interleaved in one process, median over clips.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.audio import SAMPLE_RATE, load_audio
from core.engine import Arena, Options
from core.windows import WINDOW_S
from core.metrics import corpus_wer
from core.modes import MODES

PEER = "faster-whisper"
LONG_GAP_S = 0.5
RSS_SAMPLE_S = 0.01


@dataclass
class Clip:
    name: str
    audio: np.ndarray
    text: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class ModeStats:
    latencies: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # teacher latency / this latency, per clip
    audio_s: float = 0.0
    tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    short_refs: list[str] = field(default_factory=list)
    short_hyps: list[str] = field(default_factory=list)
    long_wer: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


@dataclass
class Requests:
    """Short clips with every mode in one request: wall-clock against the sum of what the modes were
    charged (each mode pays the shared encoder pass as if alone, the request pays it once)."""

    wall_s: float = 0.0
    charged_s: float = 0.0


class RssPeak:
    """Peak resident memory of this process while a block runs (sampled: torch allocations bypass tracemalloc)."""

    def __enter__(self):
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_clips(data: Path, limit: int | None = None) -> list[Clip]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    clips = [Clip(Path(r["file"]).stem, load_audio(data / r["file"]), r["text"]) for r in rows[:limit]]
    return clips


def joined_long_clip(clips: list[Clip]) -> Clip:
    """When the data has no clip over 30 s, join its speech clips into one long-form test."""
    gap = np.zeros(int(LONG_GAP_S * SAMPLE_RATE), dtype=np.float32)
    speech = [c for c in clips if c.text]
    audio = np.concatenate([x for c in speech for x in (c.audio, gap)])
    while len(audio) <= WINDOW_S * SAMPLE_RATE * 2:
        audio = np.concatenate([audio, audio])
        speech = speech * 2
    return Clip("joined", audio, " ".join(c.text for c in speech))


class FasterWhisperPeer:
    """The same whisper-base weights in CTranslate2, as a CPU user would run them instead."""

    def __init__(self, threads: int):
        from faster_whisper import WhisperModel

        from core import weights

        self.model = WhisperModel(str(weights.ctranslate2_dir(weights.TEACHER_BASE)), device="cpu",
                                  compute_type="float32", cpu_threads=threads)

    def transcribe(self, audio: np.ndarray) -> tuple[str, float, int]:
        started = time.perf_counter()
        segments, _ = self.model.transcribe(audio, language="en", beam_size=1, without_timestamps=True,
                                            condition_on_previous_text=False, vad_filter=False, temperature=0.0)
        segments = list(segments)
        latency = time.perf_counter() - started
        return "".join(s.text for s in segments).strip(), latency, sum(len(s.tokens) for s in segments)


def run(arena: Arena, clips: list[Clip], modes: tuple[str, ...], peer: FasterWhisperPeer | None,
        long_forms: tuple[str, ...]) -> tuple[dict[str, ModeStats], int, Requests]:
    stats = {m: ModeStats() for m in modes}
    requests = Requests()
    if peer:
        stats[PEER] = ModeStats()
    mismatches = 0
    short = [c for c in clips if c.seconds <= WINDOW_S]
    long = [c for c in clips if c.seconds > WINDOW_S] or ([joined_long_clip(clips)] if long_forms else [])

    for clip in short:
        per_mode = {}
        started = time.perf_counter()
        for result in arena.iter_transcribe(clip.audio, Options(modes=modes)):
            per_mode[result.mode] = (result.text, result.latency_s, result.tokens)
            requests.charged_s += result.latency_s
            s = stats[result.mode]
            s.drafted += result.draft_tokens or 0
            s.accepted += result.accepted_tokens or 0
            mismatches += result.identical_to_teacher is False
        requests.wall_s += time.perf_counter() - started
        if peer:
            with RssPeak() as rss:
                per_mode[PEER] = peer.transcribe(clip.audio)
            stats[PEER].peak_rss_mb = max(stats[PEER].peak_rss_mb, rss.peak)
        teacher_latency = per_mode.get("teacher", (None, None))[1]
        for mode, (text, latency, tokens) in per_mode.items():
            s = stats[mode]
            s.latencies.append(latency)
            s.audio_s += clip.seconds
            s.tokens += tokens
            if teacher_latency:
                s.ratios.append(teacher_latency / latency)
            if clip.text or text:
                s.short_refs.append(clip.text)
                s.short_hyps.append(text)

    for clip in long:
        for algorithm in long_forms:
            for result in arena.iter_transcribe(clip.audio, Options(modes=modes, long_form=algorithm)):
                stats[result.mode].long_wer[result.algorithm] = corpus_wer([clip.text], [result.text])
                mismatches += result.identical_to_teacher is False
        if peer:
            text, _, _ = peer.transcribe(clip.audio)
            stats[PEER].long_wer["sequential"] = corpus_wer([clip.text], [text])
    return stats, mismatches, requests


def measure_rss(arena: Arena, clips: list[Clip], modes: tuple[str, ...], stats: dict[str, ModeStats]) -> None:
    """Peak RSS per mode on the longest short clip (modes run one after another, so peaks are per mode)."""
    clip = max((c for c in clips if c.seconds <= WINDOW_S), key=lambda c: c.seconds)
    for mode in modes:
        with RssPeak() as rss:
            arena.transcribe(clip.audio, Options(modes=(mode,)))
        stats[mode].peak_rss_mb = rss.peak


def summarise(arena: Arena, stats: dict[str, ModeStats], clips: int, mismatches: int, requests: Requests) -> dict:
    info = arena.info
    params = {"student": info.student_params_m, "teacher": info.teacher_params_m,
              "speculative": info.teacher_params_m + info.student_decoder_params_m, PEER: info.teacher_params_m}
    modes = {}
    for mode, s in stats.items():
        latency = sum(s.latencies)
        long_wer = s.long_wer or {}
        modes[mode] = {
            "params_m": round(params[mode], 1),
            "rel_latency": round(statistics.median(s.ratios), 3) if s.ratios else None,
            "rtfx": round(s.audio_s / latency, 2) if latency else None,
            "tokens_per_s": round(s.tokens / latency, 1) if latency else None,
            "wer_short": round(corpus_wer(s.short_refs, s.short_hyps), 4) if s.short_refs else None,
            "wer_long": {k: round(v, 4) for k, v in long_wer.items()} or None,
            "acceptance_rate": round(s.accepted / s.drafted, 4) if s.drafted else None,
            "peak_rss_mb": round(s.peak_rss_mb, 0) if s.peak_rss_mb else None,
        }
    return {"preset": info.preset, "device": info.device, "dtype": info.dtype, "clips": clips,
            "speculative_mismatches": mismatches, "modes": modes,
            "requests": {"wall_s": round(requests.wall_s, 2), "modes_charged_s": round(requests.charged_s, 2)}}


def markdown(summary: dict) -> str:
    def fmt(value, spec="{:.2f}"):
        return "–" if value is None else spec.format(value)

    def fmt_long(value):
        if not value:
            return "–"
        return " / ".join(f"{k} {v:.1%}" for k, v in sorted(value.items()))

    lines = [
        f"preset `{summary['preset']}` on {summary['device']} ({summary['dtype']}), {summary['clips']} clips, "
        f"speculative ≠ teacher: {summary['speculative_mismatches']}",
        "",
        "| mode | params (M) | rel. latency | RTFx | tokens/s | short-form WER | long-form WER | acceptance | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, m in summary["modes"].items():
        lines.append(
            f"| {mode} | {fmt(m['params_m'], '{:.1f}')} | {fmt(m['rel_latency'])} | {fmt(m['rtfx'], '{:.1f}')} | "
            f"{fmt(m['tokens_per_s'], '{:.1f}')} | {fmt(m['wer_short'], '{:.1%}')} | {fmt_long(m['wer_long'])} | "
            f"{fmt(m['acceptance_rate'], '{:.0%}')} | {fmt(m['peak_rss_mb'], '{:.0f}')} |"
        )
    requests = summary.get("requests") or {}
    if requests.get("wall_s"):
        lines += ["", f"Requests with every mode took {requests['wall_s']:.2f} s wall-clock in all; their modes were "
                      f"charged {requests['modes_charged_s']:.2f} s (each pays the shared encoder pass as if alone)."]
    return "\n".join(lines)


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m, v in summary["modes"].items() if v["rel_latency"] is not None]
    values = [summary["modes"][m]["rel_latency"] for m in names]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bars = ax.bar(names, values, color=["#4C72B0", "#55A868", "#C44E52", "#8172B2"][: len(names)])
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.bar_label(bars, fmt="%.2fx")
    ax.set_ylabel("speed vs teacher (×)")
    ax.set_title(f"{summary['preset']} on {summary['device']}, {summary['clips']} clips")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from core.cli import quiet_libraries

    parser = argparse.ArgumentParser(prog="python -m core.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "audio")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--limit", type=int, help="use the first N clips of the manifest")
    parser.add_argument("--long-form", nargs="*", default=["chunked", "sequential"], choices=["chunked", "sequential"],
                        help="long-form algorithms to score (none: skip long-form)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="add faster-whisper on the same weights (local preset, when installed)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)

    quiet_libraries()
    arena = Arena.load(args.preset)
    clips = load_clips(args.data, args.limit)
    peer = None
    if args.peer and arena.info.preset == "local":
        try:
            import torch

            peer = FasterWhisperPeer(torch.get_num_threads())
        except ImportError:
            print("faster-whisper is not installed: peer column skipped (pip install -r requirements-dev.txt)")
    modes = tuple(m for m in MODES if m in args.modes)
    stats, mismatches, requests = run(arena, clips, modes, peer, tuple(args.long_form))
    measure_rss(arena, clips, modes, stats)
    summary = summarise(arena, stats, len(clips), mismatches, requests)
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if args.plot:
        plot(summary, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
