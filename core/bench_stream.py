"""Live transcription benchmark: a speaker talking in real time, one mode at a time.

    python -m core.bench_stream --preset local --modes student teacher speculative --clip assets/audio/jfk.wav

A feeder thread hands the clip to a LiveSession as the browser does (48 kHz int16 chunks, each at the
moment its last sample was spoken); the session's own thread appends whatever has arrived and
updates, as fast as it can, exactly as in the app. It never sees audio before it "arrives". Reported
per mode: commit latency (arrival of the chunk that completed a committed piece -> its commit; median
and p95), the delay from the end of speech to the final text, the largest buffer, the median RTFx of
the updates, whether the processor fell behind, and the WER of the live text against the same mode's
offline transcript.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from core.audio import FFMPEG
from core.modes import MODES

DEFAULT_CLIP = "assets/audio/jfk.wav"


def browser_pcm(path: str, rate: int) -> np.ndarray:
    """The clip as the microphone component sends it: int16 mono at `rate`."""
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", str(rate),
           "-f", "s16le", "pipe:"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, "<i2")


def simulate(arena, mode: str, pcm: np.ndarray, rate: int, chunk_s: float, **kwargs) -> dict:
    """Stream `pcm` in real time into a LiveSession; return its numbers."""
    from core.engine import Options
    from core.metrics import wer
    from core.streaming import LiveSession, LiveTranscriber

    session = LiveSession(LiveTranscriber(arena, mode, **kwargs))
    step = int(chunk_s * rate)
    t0 = time.perf_counter() + 0.05

    def feed():
        for start in range(0, len(pcm), step):
            due = t0 + min(start + step, len(pcm)) / rate  # the chunk's last sample has been spoken
            time.sleep(max(0.0, due - time.perf_counter()))
            session.feed(pcm[start : start + step], rate)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rtfx, decodes = [], 0
    while feeder.is_alive():  # an update takes far longer than this poll
        state = session.state
        if state.decodes > decodes:
            decodes = state.decodes
            rtfx.append(state.rtfx)
        time.sleep(0.02)
    state = session.finish()
    final = state.committed_text
    final_delay = time.perf_counter() - (t0 + len(pcm) / rate)
    (offline,) = arena.transcribe(session.recording(), Options(modes=(mode,)))
    return {
        "mode": mode,
        "audio_s": round(state.audio_s, 2),
        "chunk_s": chunk_s,
        "decodes": state.decodes,
        "commits": len(state.commit_latencies),
        "latency_median_s": _round(state.latency_median_s),
        "latency_p95_s": _round(state.latency_p95_s),
        "final_delay_s": round(final_delay, 3),
        "max_buffer_s": round(state.max_buffer_s, 2),
        "update_rtfx_median": _round(statistics.median(rtfx) if rtfx else None),
        "falling_behind": state.falling_behind,
        "decode_every_s": round(state.decode_every_s, 2),
        "wer_vs_offline": round(wer(offline.text, final), 4),
        "text": final,
        "offline_text": offline.text,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _table(rows: list[dict]) -> str:
    header = (f"{'mode':<12} {'audio s':>7} {'decodes':>7} {'lat p50':>7} {'lat p95':>7} {'final':>6} "
              f"{'max buf':>7} {'RTFx':>5} {'behind':>6} {'WER':>5}")
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['mode']:<12} {r['audio_s']:>7.1f} {r['decodes']:>7} {_cell(r['latency_median_s']):>7} "
            f"{_cell(r['latency_p95_s']):>7} {r['final_delay_s']:>6.2f} {r['max_buffer_s']:>7.1f} "
            f"{_cell(r['update_rtfx_median']):>5} {'yes' if r['falling_behind'] else 'no':>6} {r['wer_vs_offline']:>5.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from core.presets import PRESETS

    parser = argparse.ArgumentParser(prog="python -m core.bench_stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="default: ARENA_PRESET, else the device's default")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--clip", default=DEFAULT_CLIP, help=f"any audio/video file (default {DEFAULT_CLIP})")
    parser.add_argument("--chunk-s", type=float, default=0.1,
                        help="seconds per browser chunk (default 0.1: what the app's microphone sends)")
    parser.add_argument("--rate", type=int, default=48000, help="browser sample rate (default 48000)")
    parser.add_argument("--trim-s", type=float, help="trim the buffer beyond this many seconds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = parser.parse_args(argv)

    import torch

    from core.cli import quiet_libraries
    from core.engine import Arena
    from core.errors import ArenaError

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        arena = Arena.load(args.preset)
        pcm = browser_pcm(args.clip, args.rate)
    except (ArenaError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kwargs = {} if args.trim_s is None else {"trim_s": args.trim_s}
    info = arena.info
    print(f"# preset {info.preset} on {info.device} ({info.dtype}), torch threads {torch.get_num_threads()}, "
          f"clip {args.clip} ({len(pcm) / args.rate:.1f} s) in {args.chunk_s:g} s chunks at {args.rate} Hz, real time",
          file=sys.stderr)
    rows = []
    for mode in args.modes:
        row = simulate(arena, mode, pcm, args.rate, args.chunk_s, **kwargs)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(_table(rows))
        print("lat: arrival of the chunk completing a committed piece -> commit (s); final: end of speech -> "
              "final text (s); RTFx: buffer seconds per compute second, median over updates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
