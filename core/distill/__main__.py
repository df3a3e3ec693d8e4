"""Command line of the distillation pipeline: `python -m core.distill STAGE --out RUN [options]`.

Stages (each resumable; `all` runs them in order and skips what is done):
  data      synthetic speech windows (TTS voices x free texts x augmentation)  -> RUN/data
  real      real human speech from Debian packages, speed and augmentation copies -> RUN/data
  label     teacher pseudo-labels + WER filter + encoder/top-k cache            -> RUN/labels
  train     Distil-Whisper objective on the cache (accelerate; GPU if present)  -> RUN/train
  export    latest checkpoint -> shipped fp16 decoder + assembled student       -> RUN/shipped, RUN/student
  heads     the student's alignment heads, measured on held-out windows         -> RUN/shipped (export runs it)
  eval      WER, speed, speculative acceptance through the app's Arena          -> RUN/eval.json
  ship      copy the shipped decoder and its model card into the repository     -> assets/student
  assemble  teacher + shipped decoder -> full student folder (what set-up does)
  create    an untrained student from a teacher (encoder + evenly picked decoder layers)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from core.distill import card
from core.presets import LOCAL_CHUNK_LENGTH_S
from core.weights import MODELS_DIR, REPO_ROOT, TEACHER_BASE

DEFAULT_TEACHER = MODELS_DIR / TEACHER_BASE
DEFAULT_MANIFESTS = [REPO_ROOT / "assets/audio/manifest.jsonl", REPO_ROOT.parent / "shared/audio/manifest.jsonl"]
DEFAULT_SHIP_TO = REPO_ROOT / "assets/student"


def _progress(run: Path | None):
    log_path = Path(run) / "progress.log" if run else None

    def report(message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as f:
                f.write(line + "\n")

    return report


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"


def _timed(run: Path, stage: str, fn):
    started = time.perf_counter()
    result = fn()
    card.add_compute(run, stage, time.perf_counter() - started, _device())
    return result


def _data_args(sub) -> None:
    from core.distill.data import MAX_WINDOW_S
    from core.distill.voices import ENGINES

    sub.add_argument("--hours", type=float, default=3.0, help="hours of speech to make (default: %(default)s)")
    sub.add_argument("--windows", type=int, default=None, help="an exact number of windows instead of --hours")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--engines", default=",".join(ENGINES), help="TTS engines to use when installed (%(default)s)")
    sub.add_argument("--max-window-s", type=float, default=MAX_WINDOW_S)
    sub.add_argument("--no-augment", action="store_true")
    sub.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                     help="add real speech from Debian packages (the `real` stage; `all` only)")
    sub.add_argument("--real-cache", type=Path, default=REPO_ROOT / "data" / "real-debs")


def _label_args(sub) -> None:
    from core.distill.label import LABEL_BATCH, MAX_WER, TIMESTAMP_FRACTION, TOP_K

    sub.add_argument("--label-batch", type=int, default=LABEL_BATCH)
    sub.add_argument("--top-k", type=int, default=TOP_K, help="teacher logits cached per position")
    sub.add_argument("--timestamp-fraction", type=float, default=TIMESTAMP_FRACTION)
    sub.add_argument("--max-wer", type=float, default=MAX_WER, help="keep windows whose teacher WER vs source <= this")


def _train_args(sub) -> None:
    from core.distill.label import MAX_WER
    from core.distill.train import BATCH, CE_WEIGHT, KL_WEIGHT, LR, STEPS, TEMPERATURE, WARMUP

    sub.add_argument("--steps", type=int, default=STEPS)
    sub.add_argument("--batch-size", type=int, default=BATCH, help="windows per step (and per process)")
    sub.add_argument("--lr", type=float, default=LR)
    sub.add_argument("--warmup", type=int, default=WARMUP)
    sub.add_argument("--kl-weight", type=float, default=KL_WEIGHT)
    sub.add_argument("--ce-weight", type=float, default=CE_WEIGHT)
    sub.add_argument("--temperature", type=float, default=TEMPERATURE)
    sub.add_argument("--decoder-layers", type=int, default=2)
    sub.add_argument("--init", default=None, help="start from this student folder instead of the teacher's layers")
    sub.add_argument("--stop-at", type=int, default=None,
                     help="pause at this step with a checkpoint (the schedule still ends at --steps); rerun to go on")
    sub.add_argument("--log-every", type=int, default=10)
    sub.add_argument("--eval-every", type=int, default=100)
    sub.add_argument("--save-every", type=int, default=100)
    sub.add_argument("--max-wer", type=float, default=MAX_WER)
    sub.add_argument("--seed", type=int, default=0)


def _eval_args(sub) -> None:
    sub.add_argument("--student", type=Path, default=None, help="student folder (default: RUN/student)")
    sub.add_argument("--manifest", type=Path, action="append", default=None,
                     help="clip manifest(s) (default: assets/audio and ../shared/audio manifests)")
    sub.add_argument("--repeat", type=int, default=2, help="runs per clip; the fastest counts")
    sub.add_argument("--max-draft-tokens", type=int, default=None,
                     help="longest speculative draft (default: the local preset's draft policy)")
    sub.add_argument("--chunk-length-s", type=float, default=LOCAL_CHUNK_LENGTH_S)
    sub.add_argument("--whole-vocabulary", action="store_true",
                     help="draft from the whole vocabulary instead of RUN/student/draft_vocabulary.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.distill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = parser.add_subparsers(dest="stage", required=True)

    def add(name, help_text, *groups):
        sub = stages.add_parser(name, help=help_text, conflict_handler="resolve")  # `all` repeats --seed/--max-wer
        sub.add_argument("--out", "--run", dest="out", type=Path, required=name != "eval",
                         help="run folder (runs/NAME); for create/assemble: the student folder")
        sub.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER, help="teacher folder (default: %(default)s)")
        sub.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
        for group in groups:
            group(sub)
        return sub

    add("data", "make synthetic speech windows", _data_args)
    add("real", "add real human speech (no transcripts: the teacher labels it)", _data_args)
    add("label", "teacher pseudo-labels, WER filter, encoder and top-k cache", _label_args)
    add("train", "train the student's decoder on the cache", _train_args)
    add("export", "latest checkpoint -> RUN/shipped (fp16 decoder) + RUN/student (assembled)")
    add("eval", "WER, speed and acceptance through the app's Arena", _eval_args)
    heads = add("heads", "measure which of a student's heads time words as the teacher's do")
    heads.add_argument("--student", type=Path, default=None, help="student folder (default: RUN/student)")
    heads.add_argument("--to", type=Path, default=None, help="where alignment_heads.json goes (default: RUN/shipped)")
    ship = add("ship", "copy RUN/shipped + model card into the repository")
    ship.add_argument("--to", type=Path, default=DEFAULT_SHIP_TO)
    assemble = add("assemble", "teacher + shipped decoder -> full student folder (--out)")
    assemble.add_argument("--shipped", type=Path, default=DEFAULT_SHIP_TO)
    create = add("create", "an untrained student from a teacher (--out)")
    create.add_argument("--layers", type=int, default=2)
    everything = add("all", "data, label, train, export, eval (and ship with --ship-to)",
                     _data_args, _label_args, _train_args, _eval_args)
    everything.add_argument("--ship-to", type=Path, default=None, help="also copy the result here (assets/student)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import torch

    from core.cli import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = args.out
    report = _progress(run if args.stage not in ("create", "assemble") else None)
    if run and args.stage not in ("create", "assemble"):
        card.add_command(run, ["python", "-m", "core.distill", *(argv if argv is not None else sys.argv[1:])])
    stages = ["data", *(["real"] if getattr(args, "real", False) else []), "label", "train", "export", "eval"] \
        if args.stage == "all" else [args.stage]
    for stage in stages:
        _STAGES[stage](args, run, report)
    if args.stage == "all" and args.ship_to:
        _STAGES["ship"](argparse.Namespace(**{**vars(args), "to": args.ship_to}), run, report)
    return 0


def _data(args, run, report):
    from core.distill.data import DataConfig, build

    config = DataConfig(hours=args.hours, windows=args.windows, seed=args.seed,
                        engines=tuple(e for e in args.engines.split(",") if e), max_window_s=args.max_window_s,
                        augment=not args.no_augment)
    _timed(run, "data", lambda: build(run, config, report))


def _real(args, run, report):
    from core.distill.data import data_dir
    from core.distill.real import build

    _timed(run, "real", lambda: build(data_dir(run), args.real_cache, args.seed, report))


def _label(args, run, report):
    from core.distill.label import label

    _timed(run, "label", lambda: label(run, args.teacher, args.label_batch, args.top_k, args.timestamp_fraction,
                                       getattr(args, "seed", 0), args.max_wer, report))


def _train(args, run, report):
    from core.distill.train import TrainConfig, train

    config = TrainConfig.from_dict({k.replace("-", "_"): v for k, v in vars(args).items()})
    result = _timed(run, "train", lambda: train(run, args.teacher, config, report))
    report(f"train: done: {json.dumps(result)}")


def _export(args, run, report):
    from core.distill.ship import export

    _timed(run, "export", lambda: export(run, args.teacher, report))


def _eval(args, run, report):
    from core.distill.evaluate import evaluate, format_summary

    student = args.student or (run / "student" if run else None)
    if student is None:
        raise SystemExit("eval needs --student DIR or --out RUN (with RUN/student from `export`)")
    manifests = args.manifest or [m for m in DEFAULT_MANIFESTS if m.is_file()]
    result = evaluate(student, args.teacher, manifests, args.repeat, args.max_draft_tokens, args.chunk_length_s, report,
                      whole_vocabulary=args.whole_vocabulary)
    if run:
        name = "eval_whole_vocabulary.json" if args.whole_vocabulary else "eval.json"
        (run / name).write_text(json.dumps(result, indent=1))
    report("eval:\n" + format_summary(result["summary"]))


def _heads(args, run, report):
    from core.distill.heads import choose_heads

    choose_heads(run, args.teacher, args.student or run / "student", args.to or run / "shipped", report)


def _ship(args, run, report):
    from core.distill.ship import publish

    publish(run, args.to, report)


def _assemble(args, run, report):
    from core.distill.ship import assemble_student

    report(f"assemble: {assemble_student(args.teacher, args.shipped, run)}")


def _create(args, run, report):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from core.distill.create import create_student
    from core.weights import write_manifest

    teacher = WhisperForConditionalGeneration.from_pretrained(args.teacher, dtype=torch.float16)
    student = create_student(teacher, args.layers)
    student.save_pretrained(run)
    WhisperProcessor.from_pretrained(args.teacher).save_pretrained(run)
    write_manifest(Path(run), teacher=Path(args.teacher).name, trained=False)
    report(f"create: {run} (decoder layers {student.config.distilled_from_layers} of {args.teacher})")


_STAGES = {"data": _data, "real": _real, "label": _label, "train": _train, "export": _export, "eval": _eval, "heads": _heads, "ship": _ship,
           "assemble": _assemble, "create": _create}

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
