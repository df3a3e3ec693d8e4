"""Teacher pseudo-labels, filtered by WER against the source text, with everything training needs cached.

For each window the teacher runs once: its encoder output is stored in fp16 (training never runs the
encoder again), greedy decoding (batched, the app's own loop: core/decoding.py) gives the pseudo-label,
and one teacher-forced pass over that label gives the teacher's top-k logits at every position, for
the KL term (the same numbers as generate's raw logits, within 1e-4: docs/distillation.md).
A fraction of windows is labelled with timestamps so the student also learns that mode.

Distil-Whisper's filter keeps a window only when the teacher's text is close to the source text
(WER <= threshold): it removes windows where the TTS voice garbled words or the teacher looped.
Real speech has no source text (core/distill/real.py), so there the teacher's own confidence decides,
from what its decode computed: an average log-probability of at least MIN_AVG_LOGPROB (stricter than
Whisper's -1 fallback threshold: a pseudo-label should be one the teacher is sure of), no loop (gzip
ratio at most 2.4, the loop guard silent), P(no speech) at most 0.6, and English as the language the
teacher hears (megaglest's replies are of unverified language). Every window is stored with its WER or
those figures; the thresholds are applied when training, so they can be changed without labelling again.

Layout under <run>/labels/: cache/wNNNNNN.safetensors (enc, prompt, tokens, topk_ids, topk_logits;
metadata "record" = JSON of the window's label record), labels.jsonl and info.json (summaries).
Multi-GPU: `accelerate launch -m core.distill label ...` splits the windows between processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.audio import SAMPLE_RATE
from core.decoding import DecoderModel, SpecialTokens, Task, decode, first_position_logits
from core.gate import COMPRESSION_RATIO_THRESHOLD, NO_SPEECH_THRESHOLD, compression_ratio
from core.distill.data import data_dir, read_manifest
from core.metrics import normalize, wer
from core.transcribe import max_new_tokens

LABEL_BATCH = 8
TOP_K = 64
TIMESTAMP_FRACTION = 0.2  # Distil-Whisper trains 50% with timestamps; the app mostly runs without
MAX_WER = 0.2  # default training filter (teacher vs source text; espeak voices score worst)
MIN_AVG_LOGPROB = -0.5  # real speech (no source text): the teacher's own confidence


def labels_dir(run: Path) -> Path:
    return Path(run) / "labels"


def cache_path(run: Path, window_id: str) -> Path:
    return labels_dir(run) / "cache" / f"{window_id}.safetensors"


def wants_timestamps(window_id: str, seed: int, fraction: float) -> bool:
    return bool(np.random.default_rng([seed, int(window_id[1:]), ord(window_id[0])]).random() < fraction)


def prompt_ids(generation_config, timestamps: bool) -> list[int]:
    """<|startoftranscript|><|en|><|transcribe|>, plus <|notimestamps|> without timestamps."""
    ids = [generation_config.decoder_start_token_id, generation_config.lang_to_id["<|en|>"],
           generation_config.task_to_id["transcribe"]]
    return ids if timestamps else ids + [generation_config.no_timestamps_token_id]


def load_teacher(teacher_dir: Path, device: torch.device):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from core.models import bf16_encoder_wanted, run_encoder_in_bf16

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=dtype).to(device).eval()
    if bf16_encoder_wanted(device):  # the encoder output the app's teacher computes on this CPU, in less time
        run_encoder_in_bf16(teacher.model.encoder)
    return teacher, WhisperProcessor.from_pretrained(teacher_dir)


@torch.inference_mode()
def label_batch(teacher, processor, audios: list[np.ndarray], timestamps: list[bool], top_k: int = TOP_K) -> list[dict]:
    """Encoder output, pseudo-label and teacher top-k logits for a batch of windows (<= 30 s each)."""
    device, dtype = teacher.device, teacher.dtype
    config = teacher.generation_config
    eos = config.eos_token_id
    special = SpecialTokens.from_config(config, teacher.config.vocab_size)
    features = processor.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    enc = teacher.model.encoder(features.to(device, dtype)).last_hidden_state
    results: list[dict] = [{} for _ in audios]
    for mode in (False, True):
        index = [i for i, ts in enumerate(timestamps) if ts == mode]
        if not index:
            continue
        prompt = prompt_ids(config, mode)
        limits = tuple(max_new_tokens(len(audios[i]) / SAMPLE_RATE) for i in index)
        decoded = decode(DecoderModel(teacher), enc[index], Task(tuple(prompt), mode, limits), special)
        for i, d in zip(index, decoded):
            results[i].update(prompt=prompt, tokens=d.tokens + [eos], truncated=d.truncated or d.looped,
                              timestamps=mode, avg_logprob=d.avg_logprob, no_speech_prob=d.no_speech_prob)
    languages = first_position_logits(teacher, special.sot, enc)  # what the teacher hears, for real speech
    codes = config.lang_to_id
    for r, logits in zip(results, languages):
        r["language"] = max(codes, key=lambda code: float(logits[codes[code]])).strip("<|>")

    # one teacher-forced pass: the teacher's distribution at every position of its own label
    sequences = [r["prompt"] + r["tokens"] for r in results]
    width = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(sequences), width), eos, dtype=torch.long)
    for i, s in enumerate(sequences):
        inputs[i, : len(s) - 1] = torch.tensor(s[:-1])
    hidden = teacher.model.decoder(input_ids=inputs.to(device), encoder_hidden_states=enc).last_hidden_state
    for i, r in enumerate(results):
        start = len(r["prompt"]) - 1
        logits = teacher.proj_out(hidden[i, start : start + len(r["tokens"])]).float()
        values, ids = logits.topk(top_k, dim=-1)
        r.update(enc=enc[i].to(torch.float16).cpu(), topk_ids=ids.to(torch.int32).cpu(),
                 topk_logits=values.to(torch.float16).cpu())
        text_ids = [t for t in r["tokens"] if t < eos]
        r["text"] = processor.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
    return results


def save_label(path: Path, result: dict, record: dict) -> None:
    from safetensors.torch import save_file

    tensors = {
        "enc": result["enc"].contiguous(),
        "prompt": torch.tensor(result["prompt"], dtype=torch.int32),
        "tokens": torch.tensor(result["tokens"], dtype=torch.int32),
        "topk_ids": result["topk_ids"].contiguous(),
        "topk_logits": result["topk_logits"].contiguous(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"record": json.dumps(record)})
    tmp.replace(path)


def read_record(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["record"])


def load_records(run: Path) -> list[dict]:
    """The label record of every labelled window, by id."""
    return sorted((read_record(p) for p in (labels_dir(run) / "cache").glob("*.safetensors")), key=lambda r: r["id"])


def keep(record: dict, max_wer: float = MAX_WER, min_avg_logprob: float = MIN_AVG_LOGPROB) -> bool:
    """The Distil-Whisper filter where there is a source text, the teacher's confidence where there is not;
    and always: the teacher did not loop and said something."""
    if record["truncated"] or record["n_tokens"] <= 1:
        return False
    if record.get("wer") is not None:
        return record["wer"] <= max_wer
    return (record["avg_logprob"] >= min_avg_logprob and record["no_speech_prob"] <= NO_SPEECH_THRESHOLD
            and record["compression_ratio"] <= COMPRESSION_RATIO_THRESHOLD and record["language"] == "en")


def label(run: Path, teacher_dir: Path, batch_size: int = LABEL_BATCH, top_k: int = TOP_K,
          timestamp_fraction: float = TIMESTAMP_FRACTION, seed: int = 0, max_wer: float = MAX_WER,
          progress: Callable[[str], None] = print) -> dict:
    """Label every window of <run>/data not labelled yet; returns the summary written to labels/info.json."""
    import soundfile as sf
    from accelerate import Accelerator

    accelerator = Accelerator()
    rows = read_manifest(data_dir(run) / "manifest.jsonl")
    if not rows:
        raise RuntimeError(f"no data in {data_dir(run)}: run `python -m core.distill data` first")
    todo = [r for r in rows if not cache_path(run, r["id"]).is_file()]
    todo.sort(key=lambda r: -r["duration_s"])  # similar lengths batch together: less padding in decoding
    if todo:
        teacher, processor = load_teacher(Path(teacher_dir), accelerator.device)
        progress(f"label: {len(todo)} of {len(rows)} windows to label on {accelerator.device} "
                 f"({accelerator.num_processes} process(es))")
        with accelerator.split_between_processes(todo) as mine:
            started, done = time.perf_counter(), 0
            for start in range(0, len(mine), batch_size):
                batch = mine[start : start + batch_size]
                audios = [sf.read(data_dir(run) / r["file"], dtype="float32")[0] for r in batch]
                flags = [wants_timestamps(r["id"], seed, timestamp_fraction) for r in batch]
                for row, result in zip(batch, label_batch(teacher, processor, audios, flags, top_k)):
                    record = {
                        "id": row["id"], "split": row["split"], "engine": row["engine"], "voice": row["voice"],
                        "source": row["source"], "augment": row["augment"], "duration_s": row["duration_s"],
                        "text": row["text"], "teacher_text": result["text"],
                        "wer": round(wer(row["text"], result["text"]), 4) if row["text"] else None,
                        "timestamps": result["timestamps"], "n_tokens": len(result["tokens"]),
                        "truncated": result["truncated"], "avg_logprob": round(result["avg_logprob"], 4),
                        "no_speech_prob": round(result["no_speech_prob"], 4), "language": result["language"],
                        "compression_ratio": round(compression_ratio(result["text"]), 3),
                    }
                    save_label(cache_path(run, row["id"]), result, record)
                done += len(batch)
                per = (time.perf_counter() - started) / done
                if accelerator.is_main_process:
                    progress(f"label: {done}/{len(mine)} windows, {per:.2f} s/window, "
                             f"ETA {per * (len(mine) - done) / 60:.1f} min")
        accelerator.wait_for_everyone()
    info = summarize(run, max_wer)
    if accelerator.is_main_process:
        records = load_records(run)
        (labels_dir(run) / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (labels_dir(run) / "info.json").write_text(json.dumps(info, indent=1))
        progress(f"label: {info['windows']} windows labelled, {info['kept']} kept at WER <= {max_wer} "
                 f"(teacher vs source WER by engine: {info['wer_by_engine']})")
    return info


def summarize(run: Path, max_wer: float = MAX_WER) -> dict:
    records = load_records(run)
    by_engine: dict[str, list[float]] = {}
    for r in records:
        if r.get("wer") is not None:
            by_engine.setdefault(r["engine"], []).append(r["wer"])
    real = [r for r in records if r.get("wer") is None]
    kept = [r for r in records if keep(r, max_wer)]
    return {
        "windows": len(records),
        "kept": len(kept),
        "kept_train": sum(r["split"] == "train" for r in kept),
        "kept_hours": round(sum(r["duration_s"] for r in kept) / 3600, 3),
        "max_wer": max_wer,
        "truncated": sum(r["truncated"] for r in records),
        "with_timestamps": sum(r["timestamps"] for r in records),
        "wer_by_engine": {k: round(float(np.mean(v)), 3) for k, v in sorted(by_engine.items())},
        "kept_by_engine": {k: sum(r["engine"] == k for r in kept) for k in sorted({r["engine"] for r in records})},
        "real_windows": len(real),
        "real_kept": sum(keep(r, max_wer) for r in real),
        "real_kept_hours": round(sum(r["duration_s"] for r in real if keep(r, max_wer)) / 3600, 3),
        "real_dropped_not_english": sum(r["language"] != "en" for r in real),
        "empty_source_text": sum(not normalize(r["text"]) for r in records),
    }
