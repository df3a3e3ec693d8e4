"""Word timing on held-out speech: `python tools/word_timing_eval.py [--clips data/eval/short] [--group 5]`.

The benchmark's short clips (no test or training run uses them) are joined in groups with PAUSE_S of
silence, so each utterance's true start and end are known (core.metrics.loud_span: energy alone). Every mode
transcribes each group with word timestamps; for each utterance, the error of its first word's start and
its last word's end is recorded. Prints per mode the median and 90th percentile of those errors, the share
within 0.3 s, and what word timing cost (its own part of the latency, and the latency without it). Time it
with nothing else on the cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio import SAMPLE_RATE, load_audio  # noqa: E402
from core.cli import quiet_libraries  # noqa: E402
from core.costs import device_name  # noqa: E402
from core.engine import Arena  # noqa: E402
from core.metrics import loud_span  # noqa: E402
from core.modes import MODES  # noqa: E402
from core.options import Options  # noqa: E402

PAUSE_S = 1.5


def groups(folder: Path, size: int):
    """(audio, [(start, end) per utterance]) for each group of `size` clips of the folder's manifest."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]
    for first in range(0, len(rows), size):
        pieces, truth, offset = [], [], 0.0
        for row in rows[first : first + size]:
            audio = load_audio(folder / row["file"])
            start, end = loud_span(audio)
            truth.append((offset + start, offset + end))
            pieces += [audio, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)]
            offset += len(audio) / SAMPLE_RATE + PAUSE_S
        yield np.concatenate(pieces), truth


def errors(result, truth) -> list[tuple[float, float]]:
    """(start error, end error) per utterance: its first word's start and last word's end against the truth."""
    words = [w for s in result.segments for w in s.words]
    out = []
    for start, end in truth:
        mine = [w for w in words if start - PAUSE_S / 2 <= (w.start_s + w.end_s) / 2 <= end + PAUSE_S / 2]
        out.append((mine[0].start_s - start, mine[-1].end_s - end) if mine else (float("inf"), float("inf")))
    return out


def summary(values: list[float]) -> str:
    a = np.abs(np.array(values))
    return f"median {np.median(a):.3f} s, p90 {np.percentile(a, 90):.3f} s, within 0.3 s {np.mean(a <= 0.3):.0%}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=Path("data/eval/short"))
    parser.add_argument("--group", type=int, default=5)
    args = parser.parse_args(argv)
    quiet_libraries()
    arena = Arena.load("local")
    starts = {m: [] for m in MODES}
    ends = {m: [] for m in MODES}
    words_s = {m: [] for m in MODES}
    with_words = {m: [] for m in MODES}
    without = {m: [] for m in MODES}
    same = True
    for audio, truth in groups(args.clips, args.group):
        plain = {r.mode: r for r in arena.transcribe(audio, Options(timestamps=True))}
        timed = {r.mode: r for r in arena.transcribe(audio, Options(word_timestamps=True))}
        same &= timed["speculative"].segments == timed["teacher"].segments
        for mode, result in timed.items():
            for start_error, end_error in errors(result, truth):
                starts[mode].append(start_error)
                ends[mode].append(end_error)
            words_s[mode].append(result.timing.words_s)
            with_words[mode].append(result.latency_s)
            without[mode].append(plain[mode].latency_s)
    print(f"{device_name(arena.models)} · {len(starts['teacher'])} utterances from {args.clips} in groups of {args.group}")
    for mode in MODES:
        print(f"{mode:<12} first word start: {summary(starts[mode])}")
        print(f"{'':<12} last word end:    {summary(ends[mode])}")
        share = sum(words_s[mode]) / sum(with_words[mode])
        print(f"{'':<12} word timing {statistics.fmean(words_s[mode]):.3f} s a group ({share:.1%} of the latency); "
              f"latency with words {sum(with_words[mode]):.2f} s, with segment timestamps only {sum(without[mode]):.2f} s")
    print(f"speculative words and times identical to the teacher's: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
