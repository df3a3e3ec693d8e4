"""The shipped student's model card, written from what the run recorded (nothing typed by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from core.checkpoints import ALIGNMENT_HEADS_FILE

TEXT_LICENCES = ("Licences: Jane Austen's novels are public domain; WordNet 3.0 (Princeton, WordNet licence); fortunes "
                 "(BSD); voices: espeak-ng (GPL-3), flite/CMU Arctic (BSD-like), festival voices (free), piper joe "
                 "(CC0 dataset).")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def compute_log(run: Path) -> dict:
    return _read(Path(run) / "compute.json")


def add_compute(run: Path, stage: str, seconds: float, device: str) -> None:
    """Wall time per stage, summed over resumed invocations."""
    path = Path(run) / "compute.json"
    data = _read(path)
    entry = data.get(stage, {"seconds": 0.0, "runs": 0})
    entry.update(seconds=round(entry["seconds"] + seconds, 1), runs=entry["runs"] + 1, device=device)
    data[stage] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def add_command(run: Path, argv: list[str]) -> None:
    """Every command run on this folder, in order: the model card quotes the one that made it."""
    import shlex

    Path(run).mkdir(parents=True, exist_ok=True)
    with open(Path(run) / "commands.log", "a") as f:
        f.write(shlex.join(argv) + "\n")


def write_model_card(run: Path, path: Path) -> Path:
    """Each section reads only the record its stage left, so a card can be written at any point of a run."""
    from core.distill.data import summarize as data_summary
    from core.distill.train import read_log, train_dir

    run = Path(run)
    data = data_summary(run)
    labels = _read(run / "labels" / "info.json")
    log = read_log(run)
    lines = [
        *_header(run),
        *_data_section(data, labels),
        *_labels_section(labels),
        *_training_section(_read(train_dir(run) / "config.json"), log),
        *_compute_section(compute_log(run)),
        *_evaluation_section(_read(run / "eval.json").get("summary", {})),
        *_whole_vocabulary_section(_read(run / "eval_whole_vocabulary.json").get("summary")),
        *_alignment_heads_section(_read(run / "shipped" / ALIGNMENT_HEADS_FILE)),
        *_reproduce_section(run, data, _latest(log, "loss")),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _latest(log: list[dict], key: str) -> dict:
    return next((x for x in reversed(log) if key in x), {})


def _header(run: Path) -> list[str]:
    """What the student is and what ships: only the trained layers, the rest is the teacher's."""
    from core.checkpoints import SHIPPED_FILE, read_shipped_metadata

    shipped = run / "shipped" / SHIPPED_FILE
    meta = read_shipped_metadata(run / "shipped") if shipped.is_file() else {}
    size_mb = shipped.stat().st_size / 1e6 if shipped.is_file() else 0.0
    return [
        "# Distil-Whisper Arena student (local preset)",
        "",
        f"Teacher: `{meta.get('teacher', '?')}`. Student: the teacher's encoder (frozen, shared with the teacher at "
        f"run time) and {meta.get('decoder_layers', '?')} decoder layers initialised from teacher layers "
        f"{meta.get('distilled_from_layers', '?')}, then distilled. Token and positional embeddings (tied to the "
        "output projection) stay frozen at the teacher's values, so this folder ships only the trained decoder "
        f"layers and the decoder's final layer norm: `{SHIPPED_FILE}`, fp16, {size_mb:.1f} MB. Set-up rebuilds the "
        "full student with `core.distill.ship.assemble_student(teacher_dir, this_folder, out_dir)`.",
    ]


def _data_section(data: dict, labels: dict) -> list[str]:
    lines = [
        "",
        "## Data (synthetic speech made offline, and real speech from Debian packages)",
        "",
        f"- {data['windows']} windows, {data['hours']} h ({data['val_windows']} held out), up to "
        f"{data.get('max_window_s') or 28} s each, seed {data.get('seed')}",
        f"- engines: {', '.join(data['engines_available']) or '?'}"
        + (f" (not installed: {', '.join(data['engines_missing'])})" if data["engines_missing"] else ""),
        f"- hours by engine: {data['hours_by_engine']}; {data['voices_used']} distinct voices used",
        f"- text: {data['text'].get('sentences', {})} sentences (Jane Austen novels via r-cran-janeaustenr, WordNet "
        "examples, fortunes); evaluation transcripts filtered out "
        f"({data['text'].get('dropped_as_evaluation_text', '?')} sentences dropped)",
        f"- augmented: {data['augmented_fraction']:.0%} of windows (noise at random SNR, reverb, tempo, 8 kHz phone "
        "band, mp3/opus/vorbis/gsm)",
    ]
    if labels.get("real_windows"):
        from core.distill.real import LICENCES, SPEEDS

        lines.append(
            f"- real human speech: {labels['real_windows']} windows ({data['hours_by_engine'].get('real', 0)} h with "
            f"its copies at speeds {', '.join(f'{x:g}' for x in SPEEDS)}, augmented but for the plain copy) from "
            + "; ".join(f"`{k}` ({v})" for k, v in LICENCES.items())
            + ". Whole speaker groups are held out (the real-speech dev set). None of this audio ships.")
    return lines


def _labels_section(labels: dict) -> list[str]:
    lines = [
        "",
        "## Teacher labels",
        "",
        f"- greedy pseudo-labels of {labels.get('windows', '?')} windows ({labels.get('with_timestamps', '?')} with "
        f"timestamps); kept {labels.get('kept', '?')} ({labels.get('kept_hours', '?')} h) at WER <= "
        f"{labels.get('max_wer', '?')} against the source text; {labels.get('truncated', '?')} truncated",
        f"- teacher vs source WER by engine: {labels.get('wer_by_engine', {})}",
    ]
    if labels.get("real_windows"):
        from core.distill.label import MIN_AVG_LOGPROB

        lines.append(
            f"- real speech has no source text, so the teacher's confidence filters it: kept {labels['real_kept']} of "
            f"{labels['real_windows']} ({labels['real_kept_hours']} h) at average log-probability >= {MIN_AVG_LOGPROB}, "
            f"compression ratio <= 2.4, P(no speech) <= 0.6, heard as English "
            f"({labels['real_dropped_not_english']} were not)")
    return lines


def _training_section(config: dict, log: list[dict]) -> list[str]:
    last = _latest(log, "loss")
    last_val = _latest(log, "val_agree")
    first_val = next((x for x in log if "val_agree" in x), {})
    return [
        "",
        "## Training",
        "",
        *_init_lines(config),
        f"- {last.get('step', '?')} steps, batch {config.get('batch_size', '?')} x {config.get('processes', 1)} "
        f"process(es), AdamW lr {config.get('lr', '?')} (warm-up {config.get('warmup', '?')}, linear decay), "
        f"{(config.get('trainable_params') or 0) / 1e6:.2f}M trainable parameters",
        f"- loss = {config.get('ce_weight', '?')} x CE(pseudo-label) + {config.get('kl_weight', '?')} x KL(teacher "
        f"top-k || student) at T = {config.get('temperature', '?')}",
        f"- final training loss {last.get('loss', '?')} (CE {last.get('ce', '?')}, KL {last.get('kl', '?')}), "
        f"token agreement {last.get('agree', '?')}",
        f"- held-out token agreement with the teacher (teacher-forced): {first_val.get('val_agree', '?')} at step "
        f"{first_val.get('step', '?')} -> {last_val.get('val_agree', '?')} at step {last_val.get('step', '?')}"
        + "".join(f"; {kind} speech {first_val[key]} -> {last_val.get(key, '?')}"
                  for kind in ("synthetic", "real") if (key := f"val_{kind}_agree") in first_val),
    ]


def _init_lines(config: dict) -> list[str]:
    """Where training started when it did not start from the teacher's layers (train --init)."""
    if not config.get("init"):
        return []
    had = _read(Path(config["init"]) / "config.json").get("decoder_layers")
    grown = f", grown from {had} to {config['decoder_layers']} decoder layers" if had != config["decoder_layers"] else ""
    return [f"- started from the student `{config['init']}`{grown}"]


def _compute_section(compute: dict) -> list[str]:
    return ["", "## Compute", "",
            *(f"- {stage}: {entry['seconds'] / 60:.1f} min on {entry['device']}" for stage, entry in compute.items())]


def _evaluation_section(summary: dict) -> list[str]:
    """The app's own Arena numbers (`eval`), against the goals of the distillation issue."""
    if not summary:
        return []
    wer = {mode: f"{summary[f'wer_{mode}']:.1%}" for mode in ("student", "teacher", "speculative")}
    latency = {mode: f"{summary[f'latency_{mode}_s']:.2f} s" for mode in ("student", "teacher", "speculative")}
    return [
        "",
        f"## Evaluation (the app's Arena, {summary.get('clips')} real clips, {summary.get('device')})",
        "",
        "| | student | teacher | speculative |",
        "|---|---|---|---|",
        f"| WER | {wer['student']} | {wer['teacher']} | {wer['speculative']} |",
        f"| latency (sum) | {latency['student']} | {latency['teacher']} | {latency['speculative']} |",
        f"| speed vs teacher | {summary['student_speedup']:.2f}x | 1.00x | {summary['speculative_speedup']:.2f}x |",
        "",
        f"Speculative decoding: acceptance rate {summary['acceptance_rate']}, token-identical to the teacher on "
        f"{summary['speculative_identical']} clips.",
        "",
        *(f"- [{'x' if ok else ' '}] {goal}" for goal, ok in summary["targets"].items()),
    ]


def _alignment_heads_section(heads: dict) -> list[str]:
    """`heads` (core/distill/heads.py): which heads time the student's words, and how well."""
    if not heads:
        return []
    return [
        "",
        "## Word timing",
        "",
        f"Alignment heads (layer, head): {heads['alignment_heads']}, chosen on {heads['windows']} held-out windows: "
        f"their word boundaries lie {heads['error_s'] * 1000:.0f} ms on average from the teacher's on the teacher's "
        f"own text (the heads it started with, {heads['starting_heads']}: "
        f"{heads['starting_heads_error_s'] * 1000:.0f} ms).",
    ]


def _whole_vocabulary_section(whole: dict | None) -> list[str]:
    """`eval --whole-vocabulary`: what the draft vocabulary buys in speed."""
    if not whole:
        return []
    return [
        "",
        f"Drafting from the whole vocabulary instead of `draft_vocabulary.json` (`eval --whole-vocabulary`): "
        f"speculative {whole['speculative_speedup']:.2f}x the teacher's speed, acceptance {whole['acceptance_rate']}, "
        f"identical {whole['speculative_identical']}.",
    ]


def _reproduce_section(run: Path, data: dict, last: dict) -> list[str]:
    return ["", "## Reproduce", "", "```bash", *_reproduce(run, data, last), "```", "", TEXT_LICENCES, ""]


def _reproduce(run: Path, data: dict, last: dict) -> list[str]:
    """The commands that made this run when they were logged; otherwise the one `all` that would."""
    path = Path(run) / "commands.log"
    commands = path.read_text().splitlines() if path.is_file() else []
    made = [c for c in commands if " core.distill all " in f"{c} " or " core.distill data " in f"{c} "]
    if made:
        return sorted(set(commands), key=commands.index)
    return [f"python -m core.distill all --hours {_hours_arg(data)} --steps {last.get('step', 1500)} --out {run}"]


def _hours_arg(data: dict) -> str:
    return f"{data['hours_requested'] or round(data['hours'], 2):g}"
