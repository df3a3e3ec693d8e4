"""Command line: `python -m core setup` and `python -m core transcribe FILE... [options]`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core.modes import MODES

def quiet_libraries() -> None:
    """Keep the console for results: no transformers warnings or progress bars."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _parser() -> argparse.ArgumentParser:
    from core.presets import PRESETS

    parser = argparse.ArgumentParser(prog="python -m core", description="Distil-Whisper Arena core")
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="fetch and convert the offline Whisper weights (idempotent)")
    setup.add_argument("--no-tiny", action="store_true", help="skip whisper tiny.en")

    run = commands.add_parser("transcribe", help="transcribe audio/video files in one or all modes")
    run.add_argument("files", nargs="+")
    run.add_argument("--preset", choices=sorted(PRESETS), help="default: ARENA_PRESET, else large-v3 on GPU / local on CPU")
    run.add_argument("--mode", default="all", choices=("all", *MODES))
    run.add_argument("--long-form", default="chunked", choices=("chunked", "sequential"))
    run.add_argument("--timestamps", action="store_true")
    run.add_argument("--word-timestamps", action="store_true",
                     help="a start, end and probability per word (implies --timestamps)")
    run.add_argument("--language", default="en", help="language code, or 'auto' to detect with the teacher")
    run.add_argument("--batch-size", type=int, default=8, help="windows the student and the teacher decode together")
    run.add_argument("--precision", help="the decoders' precision, every mode: fp32 or int8 on a CPU with native bf16, "
                     "fp16 on a GPU (default: the device's first)")
    run.add_argument("--json", action="store_true", help="one JSON object per file and mode")
    return parser


def _table(file: str, results) -> str:
    header = f"{'mode':<12} {'prec':>4} {'latency s':>9} {'RTFx':>6} {'tok/s':>6} {'tokens':>6} {'accept':>6} {'= teacher':>9}  text"
    rows = [f"== {file}", header]
    for r in results:
        accept = "" if r.acceptance_rate is None else f"{r.acceptance_rate:.0%}"
        same = {None: "", True: "yes", False: "NO"}[r.identical_to_teacher]
        rows.append(
            f"{r.mode:<12} {r.precision:>4} {r.latency_s:>9.2f} {r.rtfx:>6.1f} {r.tokens_per_s:>6.1f} {r.tokens:>6} {accept:>6} {same:>9}  {r.text}"
        )
        for s in r.segments or []:
            rows.append(f"{'':<12} [{s.start:7.2f} -> {s.end:7.2f}] {s.text}")
            if s.words:
                rows.append(f"{'':<12} {'':<20} " + " ".join(f"[{w.start_s:.2f}]{w.text.strip()}" for w in s.words))
    return "\n".join(rows)


def transcribe(args) -> int:
    from core.audio import load_audio
    from core.engine import Arena, Options
    from core.errors import ArenaError

    quiet_libraries()
    try:
        arena = Arena.load(args.preset)
    except ArenaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = Options(
        modes=MODES if args.mode == "all" else (args.mode,),
        timestamps=args.timestamps,
        word_timestamps=args.word_timestamps,
        long_form=args.long_form,
        language=None if args.language == "auto" else args.language,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    failed = 0
    for file in args.files:
        try:
            results = arena.transcribe(load_audio(file), options)
        except ArenaError as err:
            print(f"error: {file}: {err}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            for r in results:
                print(json.dumps({"file": file, **r.to_dict()}, ensure_ascii=False))
        else:
            print(_table(file, results))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "setup":
        from core.weights import ensure_models

        quiet_libraries()
        ensure_models(include_tiny=not args.no_tiny)
        return 0
    return transcribe(args)
