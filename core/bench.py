"""The seed's table, like for like: `python -m core.bench --preset P [--data DIR] [--long DIR] [--noisy DIR]`.

Every mode runs alone on each clip (a request of its own: it pays its own VAD, features and encoder), the
modes interleaved in rotating order and the whole set repeated (`--repeat`), all through the same decoding
loop, algorithm and batch size (`--batch-size`, 1 by default: speculative decoding takes one window at a
time, so the student and the teacher do too; the teacher batching its windows is reported on its own row,
because batching and speculation compete on long audio). Relative latency follows the Distil-Whisper
paper: teacher latency / mode latency per clip (median over repeats), median over clips; the range beside
it is over repeats (total teacher time / total mode time per repeat). faster-whisper runs the same weights
in CTranslate2, fp32 and int8, as the peer columns (`--no-peer` to skip them), each in a process of its
own (core/peer.py).

Hallucination columns (on `--long` and `--noisy`): 5-gram repetition rate and insertion rate per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.audio import SAMPLE_RATE, load_audio
from core.engine import Arena, Options
from core.metrics import corpus_wer, insertion_rate, repetition_rate
from core.modes import MODES
from core.peer import PEERS, FasterWhisperPeer
from core.precision import check as check_precision
from core.report import report, run_entry
from core.windows import WINDOW_S

REPO = Path(__file__).resolve().parents[1]
BATCHED = "teacher, batch {batch}"
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
class Runs:
    """One row's measurements: latency per (set, algorithm, clip) over repeats, texts per (set, algorithm)."""

    latency: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    audio_s: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    texts: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    # over each clip's first run: drafted, accepted, passes, fallbacks, looped, windows; and mismatches
    counts: Counter = field(default_factory=Counter)
    peak_rss_mb: float = 0.0

    def add(self, group: str, clip: Clip, latency: float, text: str, algorithm: str, result=None) -> None:
        self.latency.setdefault((group, algorithm, clip.name), []).append(latency)
        self.texts.setdefault((group, algorithm), {})[clip.name] = text
        first = len(self.latency[(group, algorithm, clip.name)]) == 1
        if first and group == "short":
            self.audio_s[group] = self.audio_s.get(group, 0.0) + clip.seconds
        if result is not None and first:
            self.tokens[group] = self.tokens.get(group, 0) + result.tokens
            self.counts.update(drafted=result.draft_tokens or 0, accepted=result.accepted_tokens or 0,
                               passes=result.model_passes, fallbacks=sum(w.attempts > 1 for w in result.windows),
                               looped=sum(w.looped for w in result.windows), windows=len(result.windows))


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


def load_clips(data: Path | None, limit: int | None = None) -> list[Clip]:
    if data is None:
        return []
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    return [Clip(Path(r["file"]).stem, load_audio(data / r["file"]), r["text"]) for r in rows[:limit]]


def _rotated(items: list, by: int) -> list:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def measure(arena: Arena, sets: dict[str, list[Clip]], modes: tuple[str, ...], peers: dict, repeat: int,
            batch: int, precision: str | None = None, progress=print) -> tuple[dict[str, Runs], list[dict]]:
    """Every clip, every row, `repeat` times, interleaved. Returns the rows and the report's run entries."""
    rows = {m: Runs() for m in modes} | {name: Runs() for name in peers}
    batched = BATCHED.format(batch=8)
    if "teacher" in modes and (sets.get("long") or sets.get("noisy")):
        rows[batched] = Runs()
    entries = []
    for r in range(repeat):
        for group, clips in sets.items():
            algorithms = ("short-form",) if group == "short" else ("chunked", "sequential")
            if group == "noisy" and r:
                continue  # texts only: once is enough
            for index, clip in enumerate(clips):
                for algorithm in algorithms:
                    runs = {}
                    base = Options(modes=modes, long_form="chunked" if algorithm == "short-form" else algorithm,
                                   batch_size=batch, precision=precision)
                    order = [*modes] + ([batched] if batched in rows and algorithm == "chunked" else [])
                    for name in _rotated(order, r + index):
                        mode = "teacher" if name == batched else name
                        options = replace(base, modes=(mode,), batch_size=8 if name == batched else batch)
                        (result,) = arena.transcribe(clip.audio, options)
                        rows[name].add(group, clip, result.latency_s, result.text, algorithm, result)
                        runs[name] = result
                    if "teacher" in runs and "speculative" in runs:
                        differ = runs["teacher"].token_ids != runs["speculative"].token_ids
                        rows["speculative"].counts["mismatches"] += differ
                    if r == 0:
                        entries.append(run_entry(clip.name, f"bench/{group}", clip.seconds, clip.text, base,
                                                 [runs[m] for m in modes]))
                if group != "noisy" or not r:
                    for name in _rotated(list(peers), r):
                        text, latency = peers[name].transcribe(clip.audio)
                        rows[name].add(group, clip, latency, text, "sequential" if group != "short" else "short-form")
            progress(f"bench: repeat {r + 1}/{repeat}, {group} done")
    return rows, entries


def measure_rss(arena: Arena, clips: list[Clip], modes: tuple[str, ...], rows: dict[str, Runs],
                precision: str | None = None) -> None:
    """Peak RSS per mode on the longest short clip (modes run one after another, so peaks are per mode)."""
    if not clips:
        return
    clip = max(clips, key=lambda c: c.seconds)
    for mode in modes:
        with RssPeak() as rss:
            arena.transcribe(clip.audio, Options(modes=(mode,), precision=precision))
        rows[mode].peak_rss_mb = rss.peak


def _ratios(rows: dict[str, Runs], name: str, group: str, algorithm: str) -> tuple[float | None, list[float]]:
    """Median over clips of the per-clip ratio teacher/row (medians over repeats), and per-repeat totals; none
    when the teacher was not measured (`--modes student`: WER only)."""
    if "teacher" not in rows:
        return None, []
    teacher, mine = rows["teacher"].latency, rows[name].latency
    keys = [k for k in mine if k[:2] == (group, algorithm) and k in teacher]
    if not keys:
        return None, []
    per_clip = [statistics.median(teacher[k]) / statistics.median(mine[k]) for k in keys]
    repeats = min(min(len(mine[k]), len(teacher[k])) for k in keys)
    totals = [sum(teacher[k][i] for k in keys) / sum(mine[k][i] for k in keys) for i in range(repeats)]
    return statistics.median(per_clip), totals


def summarise(arena: Arena, rows: dict[str, Runs], sets: dict[str, list[Clip]], batch: int, precision: str) -> dict:
    info = arena.info
    params = {"student": info.student_params_m, "teacher": info.teacher_params_m,
              "speculative": info.teacher_params_m + info.student_decoder_params_m}
    refs = {group: {c.name: c.text for c in clips} for group, clips in sets.items()}
    summary = {}
    for name, runs in rows.items():
        row = {"params_m": round(params.get("teacher" if name.startswith(("teacher", "faster")) else name, 0.0), 1)}
        # long clips: the modes chunked against the chunked teacher, the peers against the sequential teacher
        for group, algorithm in (("short", "short-form"), ("long", "sequential" if name in PEERS else "chunked")):
            ratio, totals = _ratios(rows, name, group, algorithm)
            row[f"rel_latency_{group}"] = None if ratio is None else round(ratio, 3)
            row[f"rel_latency_{group}_range"] = [round(min(totals), 3), round(max(totals), 3)] if totals else None
        seconds = sum(statistics.median(v) for (g, _, _), v in runs.latency.items() if g == "short")
        row["rtfx_short"] = round(runs.audio_s.get("short", 0) / seconds, 2) if seconds else None
        row["tokens_per_s_short"] = round(runs.tokens.get("short", 0) / seconds, 1) if seconds and runs.tokens else None
        for (group, algorithm), texts in runs.texts.items():
            names = sorted(texts)
            key = f"wer_{group}" if group == "short" else f"wer_{group}_{algorithm}"
            row[key] = round(corpus_wer([refs[group][n] for n in names], [texts[n] for n in names]), 4)
        hallucination = [(refs[g][n], t) for (g, a), texts in runs.texts.items() if g in ("long", "noisy")
                         and a in ("chunked", "sequential") for n, t in texts.items()]
        if hallucination:
            row["repetition_5gram"] = round(repetition_rate(t for _, t in hallucination), 4)
            row["insertion_rate"] = round(insertion_rate(*zip(*hallucination)), 4)
        counts = runs.counts
        row["acceptance_rate"] = round(counts["accepted"] / counts["drafted"], 4) if counts["drafted"] else None
        row["tokens_per_pass"] = (round(sum(runs.tokens.values()) / counts["passes"], 2)
                                  if counts["passes"] and name == "speculative" else None)
        row["fallback_windows"] = counts["fallbacks"] if counts["windows"] else None
        row["looped_windows"] = counts["looped"] if counts["windows"] else None
        row["windows"] = counts["windows"] or None
        row["peak_rss_mb"] = round(runs.peak_rss_mb) if runs.peak_rss_mb else None
        summary[name] = row
    reference_rep = [c.text for g in ("long", "noisy") for c in sets.get(g, [])]
    return {
        "preset": info.preset, "device": info.device, "dtype": info.dtype, "precision": precision, "batch_size": batch,
        "chunk_length_s": arena.models.preset.chunk_length_s,
        "clips": {g: len(c) for g, c in sets.items()},
        "audio_s": {g: round(sum(c.seconds for c in clips), 1) for g, clips in sets.items()},
        "speculative_mismatches": rows["speculative"].counts["mismatches"] if "speculative" in rows else None,
        "reference_repetition_5gram": round(repetition_rate(reference_rep), 4) if reference_rep else None,
        "rows": summary,
    }


def markdown(summary: dict) -> str:
    def fmt(value, spec="{:.2f}"):
        return "–" if value is None else spec.format(value)

    def ratio(row, group):
        value, span = row[f"rel_latency_{group}"], row[f"rel_latency_{group}_range"]
        if value is None:
            return "–"
        return f"{value:.2f}" + (f" ({span[0]:.2f}-{span[1]:.2f})" if span and span[0] != span[1] else "")

    clips = ", ".join(f"{g} {n} clips / {summary['audio_s'][g]:.0f} s" for g, n in summary["clips"].items())
    lines = [
        f"preset `{summary['preset']}` on {summary['device']} ({summary['dtype']}), decoders in "
        f"{summary['precision']}; {clips}; chunks of "
        f"{summary['chunk_length_s']:g} s; batch size "
        f"{summary['batch_size']} for every mode (the batched-teacher row aside); speculative ≠ teacher: "
        f"{summary['speculative_mismatches']}",
        "",
        "| | params (M) | rel. latency short | rel. latency long | RTFx short | tokens/s short | WER short "
        "| WER long chunked / sequential | acceptance | tokens per teacher pass | 5-gram repetition | insertions "
        "| fallback / looped windows | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["rows"].items():
        long_wer = " / ".join(fmt(r.get(f"wer_long_{a}"), "{:.1%}") for a in ("chunked", "sequential"))
        windows = "–" if r["windows"] is None else f"{r['fallback_windows']} / {r['looped_windows']} of {r['windows']}"
        lines.append(
            f"| {name} | {fmt(r['params_m'], '{:.1f}')} | {ratio(r, 'short')} | {ratio(r, 'long')} | "
            f"{fmt(r['rtfx_short'], '{:.1f}')} | {fmt(r['tokens_per_s_short'], '{:.1f}')} | "
            f"{fmt(r.get('wer_short'), '{:.1%}')} | {long_wer} | {fmt(r['acceptance_rate'], '{:.0%}')} | "
            f"{fmt(r['tokens_per_pass'])} | {fmt(r.get('repetition_5gram'), '{:.1%}')} | "
            f"{fmt(r.get('insertion_rate'), '{:.1%}')} | {windows} | {fmt(r['peak_rss_mb'], '{:.0f}')} |"
        )
    lines += ["", "Rel. latency long: the modes and the batched teacher chunked, against the teacher chunked at batch "
                  f"{summary['batch_size']}; the peers (their own sequential algorithm) against the teacher's sequential."]
    if summary.get("reference_repetition_5gram") is not None:
        lines += [f"The references' own 5-gram repetition rate: {summary['reference_repetition_5gram']:.1%}."]
    return "\n".join(lines)


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.modes import TRAITS

    names = [n for n, r in summary["rows"].items() if r["rel_latency_short"] is not None]
    values = [summary["rows"][n]["rel_latency_short"] for n in names]
    colours = [TRAITS[n].colour if n in TRAITS else "#8172B2" for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    bars = ax.bar(names, values, color=colours)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.bar_label(bars, fmt="%.2fx")
    ax.set_ylabel("speed vs teacher (×), short clips")
    ax.set_title(f"{summary['preset']} on {summary['device']}, like for like (batch {summary['batch_size']})")
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _costs(arena: Arena, precision: str, out: Path | None):
    from core import costs

    models, _ = arena.in_precision(precision)
    table, batched = costs.measure_models(models, arena.draft, load_audio(REPO / "assets" / "audio" / "jfk.wav"))
    print(f"Decoders in {precision}. " + costs.markdown(table, costs.device_name(models)) + "\n\n"
          + costs.batched_markdown(batched, table) + "\n", flush=True)
    if out:
        out.write_text(json.dumps(table.to_dict(), indent=1))
    return table, batched


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--preset")
    parser.add_argument("--student", type=Path, help="a student folder in place of the preset's (a core.distill candidate)")
    parser.add_argument("--data", type=Path, default=REPO / "assets" / "audio",
                        help="clips up to 30 s (manifest.jsonl); 'none' for no short clips")
    parser.add_argument("--long", type=Path, help="clips over 30 s (e.g. data/eval/long from core.bench_data)")
    parser.add_argument("--noisy", type=Path, help="long clips with silence and noise (hallucination columns)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--limit", type=int, help="the first N clips of each manifest")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1, help="windows decoded together, every mode")
    parser.add_argument("--chunk-length-s", type=float, help="the chunked algorithm's window length (default: the preset's)")
    parser.add_argument("--precision", help="the decoders' precision for every mode (default: the device's; "
                        "core/precision.py)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="faster-whisper on the same weights, fp32 and int8 (local preset, when installed)")
    parser.add_argument("--json", type=Path, help="the report (core/report.py schema) with the summary")
    parser.add_argument("--costs", action=argparse.BooleanOptionalAction, default=True,
                        help="first measure and print speculative decoding's cost table (core/costs.py)")
    parser.add_argument("--costs-json", type=Path, help="write the cost table here (tools/tune_draft.py reads it)")
    parser.add_argument("--plot", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.cli import quiet_libraries

    args = _parser().parse_args(argv)
    quiet_libraries()
    arena = Arena.load(args.preset, student=args.student)
    precision = check_precision(args.precision, arena.models.device)
    if args.chunk_length_s:
        arena.models.preset = replace(arena.models.preset, chunk_length_s=args.chunk_length_s)
    short = [c for c in load_clips(None if str(args.data) == "none" else args.data, args.limit) if c.seconds <= WINDOW_S]
    sets = {"short": short, "long": load_clips(args.long, args.limit), "noisy": load_clips(args.noisy, args.limit)}
    sets = {g: c for g, c in sets.items() if c}
    peers = {}
    if args.peer and arena.info.preset == "local":
        try:
            import torch

            peers = {name: FasterWhisperPeer(torch.get_num_threads(), kind) for name, kind in PEERS.items()}
        except ImportError:
            print("faster-whisper is not installed: peer columns skipped (pip install -r requirements-dev.txt)")
    tables = _costs(arena, precision, args.costs_json) if (args.costs and "speculative" in args.modes) or args.costs_json else None
    modes = tuple(m for m in MODES if m in args.modes)
    try:
        rows, entries = measure(arena, sets, modes, peers, args.repeat, args.batch_size, precision)
    finally:
        for peer in peers.values():
            peer.close()
    measure_rss(arena, sets.get("short", []), modes, rows, precision)
    summary = summarise(arena, rows, sets, args.batch_size, precision)
    if tables is not None:
        summary["costs"] = {**tables[0].to_dict(), "batched": tables[1].to_dict()}
    print(markdown(summary))
    if args.json:
        args.json.write_text(json.dumps(report(arena.info, entries, summary), indent=1))
    if args.plot:
        plot(summary, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
