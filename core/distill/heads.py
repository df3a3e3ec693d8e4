"""The student's alignment heads, chosen by measurement: which of its cross-attention heads time words
as the teacher's heads do.

On held-out windows of the run (the `val` split, whole speakers held out), the teacher's own label is read
back by both models in one teacher-forced pass each (core/alignment.py): the teacher's alignment heads give
the reference word times, and every head of the student gives its own. Heads are ranked by their mean
boundary error against the reference; then the best k heads together (k = 1..MAX_HEADS) are scored the same
way, and the set with the smallest error wins, unless the heads the student started with (the teacher's of
the layers it copied) do better. The choice and its figures go to RUN/shipped/alignment_heads.json,
which ships with the decoder and which assembling the student writes into its generation config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.alignment import align, attention, heads_of, split_words
from core.checkpoints import ALIGNMENT_HEADS_FILE
from core.distill.label import labels_dir, load_records, prompt_ids
from core.windows import N_FRAMES, INPUT_STRIDE

MAX_WINDOWS = 60  # held-out windows measured (the error settles well before)
MAX_HEADS = 8


def boundary_error(words, reference) -> float:
    """Mean absolute difference of word starts and ends (seconds) between two timings of the same words."""
    return float(np.mean([abs(a.start_s - b.start_s) + abs(a.end_s - b.end_s) for a, b in zip(words, reference)]) / 2)


def _windows(run: Path, limit: int) -> list[Path]:
    """Held-out windows with a whole label of a few tokens (the reference is the teacher's own text: no
    WER filter needed)."""
    records = [r for r in load_records(run) if r["split"] == "val" and not r["truncated"] and r["n_tokens"] > 3]
    return [labels_dir(run) / "cache" / f"{r['id']}.safetensors" for r in records[:limit]]


@torch.inference_mode()
def measure_heads(teacher, student, tokenizer, cached: list[Path]) -> dict:
    """Per-head and best-k boundary errors of the student against the teacher's word times on `cached` windows."""
    from safetensors.torch import load_file

    config = teacher.generation_config
    eot = config.eos_token_id
    prompt = prompt_ids(config, False)
    everyone = [(layer, head) for layer in range(student.config.decoder_layers)
                for head in range(student.config.decoder_attention_heads)]
    rows = []  # (reference words, the student's scores of every head, probabilities, words, frames)
    for path in cached:
        item = load_file(str(path))
        enc = item["enc"][None].to(student.dtype)
        text = [int(t) for t in item["tokens"] if int(t) < eot]
        words = split_words(tokenizer, text, eot)
        sequence = [*prompt, *text, eot]
        frames = N_FRAMES // INPUT_STRIDE
        (t_scores, t_probs), = attention(teacher, enc.to(teacher.dtype), [sequence], heads_of(teacher), eot)
        reference = align(t_scores, t_probs, words, len(prompt) - 1, frames)
        (s_scores, s_probs), = attention(student, enc, [sequence], everyone, eot)
        rows.append((reference, s_scores, s_probs, words, frames))

    def error(picked: list[int]) -> float:
        return float(np.mean([boundary_error(align(scores[picked], probs, words, len(prompt) - 1, frames), reference)
                              for reference, scores, probs, words, frames in rows]))

    single = {i: error([i]) for i in range(len(everyone))}
    ranked = sorted(single, key=single.get)
    by_k = {k: error(ranked[:k]) for k in range(1, min(MAX_HEADS, len(ranked)) + 1)}
    best_k = min(by_k, key=by_k.get)
    starting = [everyone.index(h) for h in heads_of(student)]
    starting_error = error(starting)
    chosen, chosen_error = (ranked[:best_k], by_k[best_k]) if by_k[best_k] <= starting_error else (starting, starting_error)
    return {
        "alignment_heads": [list(everyone[i]) for i in chosen],
        "error_s": round(chosen_error, 4),
        "error_by_k_s": {k: round(v, 4) for k, v in by_k.items()},
        "error_by_head_s": {f"{everyone[i][0]},{everyone[i][1]}": round(single[i], 4) for i in ranked},
        "starting_heads": [list(everyone[i]) for i in starting],
        "starting_heads_error_s": round(starting_error, 4),
        "windows": len(rows),
    }


def choose_heads(run: Path, teacher_dir: Path, student_dir: Path, out_dir: Path,
                 progress: Callable[[str], None] = print, limit: int = MAX_WINDOWS) -> Path:
    """Measure the student in `student_dir` on the run's held-out windows; write out_dir/alignment_heads.json."""
    from transformers import WhisperForConditionalGeneration, WhisperTokenizerFast

    cached = _windows(Path(run), limit)
    if not cached:
        raise RuntimeError(f"no labelled held-out windows in {labels_dir(Path(run))}: run `label` first")
    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    student = WhisperForConditionalGeneration.from_pretrained(student_dir, dtype=torch.float32).eval()
    result = measure_heads(teacher, student, WhisperTokenizerFast.from_pretrained(teacher_dir), cached)
    path = Path(out_dir) / ALIGNMENT_HEADS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    progress(f"heads: {result['alignment_heads']} on {result['windows']} held-out windows: word boundaries "
             f"{result['error_s'] * 1000:.0f} ms from the teacher's (the heads it started with, "
             f"{result['starting_heads']}: {result['starting_heads_error_s'] * 1000:.0f} ms) -> {path}")
    return path
