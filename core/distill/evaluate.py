"""WER, speed and speculative acceptance of a student against its teacher, measured by the app itself.

The numbers come from core.engine.Arena with a preset whose student is the given folder, so they are
what the app would show: same windows, draft length, shared encoder, one decoding loop. Like for like, as
core.bench measures: every mode runs alone on each clip at batch size 1, the modes interleaved in
rotating order, `repeat` times; the fastest run of each mode is kept (the CPU is shared).
Manifests are JSONL with `file` (relative to the manifest) and `text`, like assets/audio/manifest.jsonl.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from core.metrics import corpus_wer, normalize
from core.presets import LOCAL_CHUNK_LENGTH_S

# the goals of the distillation issue, on the real clips
TARGET_WER_RATIO = 1.3  # student WER <= 1.3 x teacher WER
TARGET_STUDENT_SPEEDUP = 1.5
TARGET_SPECULATIVE_SPEEDUP = 1.25


def read_clips(manifests: list[Path]) -> list[dict]:
    """Clips from every manifest, deduplicated by file content path; silent clips (empty text) skipped."""
    clips, seen = [], set()
    for manifest in manifests:
        manifest = Path(manifest)
        for line in manifest.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            path = (manifest.parent / row["file"]).resolve()
            key = (path.name, row["text"])
            if key in seen or not normalize(row["text"]):
                continue
            seen.add(key)
            clips.append({"id": row.get("id", path.stem), "path": path, "text": row["text"]})
    return clips


def load_arena(student_dir: Path, teacher_dir: Path, max_draft_tokens: int | None = None, chunk_length_s: float = LOCAL_CHUNK_LENGTH_S,
               warmup: bool = True, whole_vocabulary: bool = False):
    """An Arena whose preset points at two model folders (absolute paths survive MODELS_DIR / name).
    `whole_vocabulary`: draft from every token instead of the student's draft vocabulary (the output is
    the teacher's either way; only the speed changes)."""
    from core.engine import Arena
    from core.models import load_models
    from core.presets import LOCAL_DRAFT, Preset

    draft = LOCAL_DRAFT if max_draft_tokens is None else replace(LOCAL_DRAFT, max_tokens=max_draft_tokens)
    preset = Preset("distill-eval", str(Path(teacher_dir).resolve()), str(Path(student_dir).resolve()), local=True,
                    draft=draft, chunk_length_s=chunk_length_s)
    models = load_models(preset)
    if whole_vocabulary:
        models.draft_vocabulary = None
    arena = Arena(models)
    if warmup:
        arena.warmup()
    return arena


def evaluate(student_dir: Path, teacher_dir: Path, manifests: list[Path], repeat: int = 1,
             max_draft_tokens: int | None = None,
             chunk_length_s: float = LOCAL_CHUNK_LENGTH_S, progress: Callable[[str], None] = print, warmup: bool = True,
             whole_vocabulary: bool = False) -> dict:
    from core.audio import load_audio
    from core.engine import Options
    from core.modes import MODES

    arena = load_arena(student_dir, teacher_dir, max_draft_tokens, chunk_length_s, warmup, whole_vocabulary)
    clips = read_clips(manifests)
    rows = []
    for clip in clips:
        audio = load_audio(clip["path"])
        best: dict[str, object] = {}
        for r in range(max(repeat, 1)):
            order = list(MODES[r % len(MODES):] + MODES[: r % len(MODES)])
            for mode in order:
                (result,) = arena.transcribe(audio, Options(modes=(mode,), batch_size=1))
                if result.mode not in best or result.latency_s < best[result.mode].latency_s:
                    best[result.mode] = result
        best["speculative"].identical_to_teacher = best["speculative"].token_ids == best["teacher"].token_ids
        row = {"id": clip["id"], "text": clip["text"], "audio_s": round(best["teacher"].audio_s, 3)}
        for mode, result in best.items():
            row[mode] = {"text": result.text, "latency_s": round(result.latency_s, 4), "tokens": result.tokens}
        spec = best["speculative"]
        row["speculative"].update(draft_tokens=spec.draft_tokens, accepted_tokens=spec.accepted_tokens,
                                  identical_to_teacher=spec.identical_to_teacher)
        rows.append(row)
        progress(f"eval: {clip['id']}: teacher {best['teacher'].latency_s:.2f} s, student "
                 f"{best['student'].latency_s:.2f} s, speculative {spec.latency_s:.2f} s "
                 f"(accepted {spec.accepted_tokens}/{spec.draft_tokens})")
    summary = summarize(rows)
    summary["clips"] = len(rows)
    summary["student"], summary["teacher"] = str(student_dir), str(teacher_dir)
    summary["device"] = arena.info.device
    summary["draft_vocabulary"] = "whole" if whole_vocabulary else "shipped"
    return {"summary": summary, "clips": rows}


def summarize(rows: list[dict]) -> dict:
    refs = [r["text"] for r in rows]
    out = {}
    for mode in ("student", "teacher", "speculative"):
        out[f"wer_{mode}"] = round(corpus_wer(refs, [r[mode]["text"] for r in rows]), 4)
        out[f"latency_{mode}_s"] = round(sum(r[mode]["latency_s"] for r in rows), 3)
    drafted = sum(r["speculative"]["draft_tokens"] or 0 for r in rows)
    accepted = sum(r["speculative"]["accepted_tokens"] or 0 for r in rows)
    compared = [r["speculative"]["identical_to_teacher"] for r in rows if r["speculative"]["identical_to_teacher"] is not None]
    out["acceptance_rate"] = round(accepted / drafted, 4) if drafted else None
    out["speculative_identical"] = f"{sum(compared)}/{len(compared)}"
    out["student_speedup"] = round(out["latency_teacher_s"] / max(out["latency_student_s"], 1e-9), 3)
    out["speculative_speedup"] = round(out["latency_teacher_s"] / max(out["latency_speculative_s"], 1e-9), 3)
    out["wer_ratio"] = round(out["wer_student"] / out["wer_teacher"], 3) if out["wer_teacher"] > 0 else None
    out["targets"] = {
        f"student WER <= {TARGET_WER_RATIO}x teacher": out["wer_student"] <= TARGET_WER_RATIO * out["wer_teacher"],
        f"student >= {TARGET_STUDENT_SPEEDUP}x faster": out["student_speedup"] >= TARGET_STUDENT_SPEEDUP,
        f"speculative >= {TARGET_SPECULATIVE_SPEEDUP}x faster": out["speculative_speedup"] >= TARGET_SPECULATIVE_SPEEDUP,
        "speculative token-identical": bool(compared) and all(compared),
    }
    return out


def format_summary(summary: dict) -> str:
    lines = [
        f"clips {summary.get('clips')}  device {summary.get('device')}  draft vocabulary {summary.get('draft_vocabulary')}",
        f"WER      student {summary['wer_student']:.1%}  teacher {summary['wer_teacher']:.1%}  "
        f"speculative {summary['wer_speculative']:.1%}",
        f"latency  student {summary['latency_student_s']:.2f} s  teacher {summary['latency_teacher_s']:.2f} s  "
        f"speculative {summary['latency_speculative_s']:.2f} s",
        f"speed-up student {summary['student_speedup']:.2f}x  speculative {summary['speculative_speedup']:.2f}x  "
        f"acceptance {summary['acceptance_rate']}  identical {summary['speculative_identical']}",
    ]
    lines += [f"  [{'x' if ok else ' '}] {goal}" for goal, ok in summary["targets"].items()]
    return "\n".join(lines)
