"""The training corpus: synthetic speech windows of up to ~30 s, made offline and reproducibly.

Window i is a function of (seed, i) alone: its generator picks a length, a voice, a speaking rate, a
text source and a start sentence, reads consecutive sentences with natural pauses until the length
is reached, then applies a random augmentation chain. So the corpus is resumable (windows already in
the manifest are skipped) and can be regenerated bit for bit (piper, espeak-ng, flite and festival
are deterministic; the codecs are too).

Layout under <run>/data/: audio/wNNNNNN.flac (16 kHz), manifest.jsonl (one window per line: id,
file, text, voice, engine, rate, pitch, source, augment, duration_s, split) and info.json (engines, voices,
text sources and counts).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from core.audio import SAMPLE_RATE
from core.distill.augment import DITHER, augment
from core.distill.corpus import SOURCE_WEIGHTS, SOURCES, Corpus
from core.distill.voices import ENGINE_WEIGHTS, ENGINES, Voice, list_voices, synthesize

MAX_WINDOW_S = 28.0  # Whisper sees 30 s; leave room for codec padding and tempo rounding
SHORT_FRACTION, SHORT_RANGE_S = 0.25, (1.5, 8.0)  # the real clips are often a few seconds
LONG_MIN_S = 8.0
RATE_RANGE, PITCH_RANGE = (0.85, 1.15), (-0.5, 0.5)
PAUSE_RANGE_S, EDGE_RANGE_S = (0.15, 0.8), (0.05, 0.6)
VAL_EVERY = 20  # window i is held out when i % VAL_EVERY == 0 (5%)
MAX_TRIES = 6  # sentences skipped when one is longer than the window or its voice fails on it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    hours: float = 3.0
    windows: int | None = None  # an exact count instead of hours
    seed: int = 0
    engines: tuple[str, ...] = ENGINES
    sources: tuple[str, ...] = tuple(SOURCES)
    max_window_s: float = MAX_WINDOW_S
    val_every: int = VAL_EVERY
    augment: bool = True


def data_dir(run: Path) -> Path:
    return Path(run) / "data"


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: everything after it is redone
    return rows


def _weighted(rng: np.random.Generator, weights: dict[str, float], names) -> str:
    names = sorted(names)
    p = np.array([weights.get(n, 0.0) for n in names], dtype=float)
    p = p / p.sum() if p.sum() > 0 else np.full(len(names), 1 / len(names))
    return names[int(rng.choice(len(names), p=p))]


@dataclass(frozen=True)
class _Plan:
    """What a window reads and how, drawn from its generator before any audio is made."""

    target_s: float
    voice: Voice
    rate: float
    pitch: float
    source: str
    position: int  # the first sentence read, in corpus.sentences[source]


def make_window(index: int, config: DataConfig, voices: list[Voice], corpus: Corpus) -> tuple[np.ndarray, dict]:
    """Window `index`: a voice reading consecutive sentences, then augmented. Deterministic in (seed, index)."""
    rng = np.random.default_rng([config.seed, index])
    plan = _plan(rng, config, voices, corpus)
    audio, texts = _read_aloud(index, plan, corpus.sentences[plan.source], rng, config.max_window_s)
    applied = []
    if config.augment:
        audio, applied = augment(audio, rng, config.max_window_s)
    else:
        audio = audio + DITHER * rng.standard_normal(len(audio)).astype(np.float32)
    record = {
        "id": f"w{index:06d}",
        "file": f"audio/w{index:06d}.flac",
        "text": " ".join(texts),
        "voice": plan.voice.id,
        "engine": plan.voice.engine,
        "rate": round(plan.rate, 3),
        "pitch": round(plan.pitch, 3),
        "source": plan.source,
        "augment": applied,
        "duration_s": round(len(audio) / SAMPLE_RATE, 3),
        "split": "val" if index % config.val_every == 0 else "train",
    }
    return audio.astype(np.float32), record


def _plan(rng: np.random.Generator, config: DataConfig, voices: list[Voice], corpus: Corpus) -> _Plan:
    """A length (a quarter of windows short, like the real clips), a voice, a rate and pitch, a start sentence."""
    max_s = config.max_window_s
    if rng.random() < SHORT_FRACTION:
        target = float(rng.uniform(SHORT_RANGE_S[0], min(SHORT_RANGE_S[1], max_s)))
    else:
        target = float(rng.uniform(min(LONG_MIN_S, max_s), max_s))
    engine = _weighted(rng, ENGINE_WEIGHTS, {v.engine for v in voices})
    engine_voices = [v for v in voices if v.engine == engine]
    voice = engine_voices[int(rng.integers(len(engine_voices)))]
    rate, pitch = float(rng.uniform(*RATE_RANGE)), float(rng.uniform(*PITCH_RANGE))
    source = _weighted(rng, SOURCE_WEIGHTS, corpus.names)
    position = int(rng.integers(len(corpus.sentences[source])))
    return _Plan(target, voice, rate, pitch, source, position)


def _silence(rng: np.random.Generator, range_s: tuple[float, float]) -> np.ndarray:
    return np.zeros(int(rng.uniform(*range_s) * SAMPLE_RATE), np.float32)


def _read_aloud(index: int, plan: _Plan, sentences: list[str], rng: np.random.Generator,
                max_s: float) -> tuple[np.ndarray, list[str]]:
    """Sentences from plan.position on, with natural pauses, until the target length; silence at both ends.
    A sentence that does not fit, or that the voice cannot read, is skipped (at most MAX_TRIES times)."""
    pieces, texts, length, tries = [_silence(rng, EDGE_RANGE_S)], [], 0.0, 0
    edge = _silence(rng, EDGE_RANGE_S)
    position = plan.position
    while True:
        sentence = sentences[position % len(sentences)]
        position += 1
        try:
            speech = synthesize(plan.voice, sentence, rate=plan.rate * float(rng.uniform(0.95, 1.05)), pitch=plan.pitch)
        except RuntimeError as error:  # a voice that chokes on one sentence (festival's ked on a leading "...")
            tries += 1
            if tries >= MAX_TRIES:
                raise
            log.warning("window %d: %s: sentence skipped", index, error)
            continue
        pause = _silence(rng, PAUSE_RANGE_S)
        added = (len(speech) + (len(pause) if texts else 0)) / SAMPLE_RATE
        total = (sum(len(p) for p in pieces) + len(edge)) / SAMPLE_RATE + added
        if total > max_s or (texts and length + added > plan.target_s):
            if texts:
                break
            tries += 1
            if tries >= MAX_TRIES:
                raise RuntimeError(f"window {index}: no sentence of {plan.source} fits {max_s} s with {plan.voice.id}")
            continue
        if texts:
            pieces.append(pause)
        pieces.append(speech)
        texts.append(sentence)
        length += added
    pieces.append(edge)
    return np.concatenate(pieces), texts


def _synthetic(rows: list[dict]) -> list[dict]:
    """The TTS windows (ids wNNNNNN); real speech (core/distill/real.py, ids rNNNNNN) is counted apart."""
    return [r for r in rows if r["id"].startswith("w")]


def _done(rows: list[dict], config: DataConfig, index: int) -> bool:
    if config.windows is not None:
        return index >= config.windows
    return sum(r["duration_s"] for r in _synthetic(rows)) >= config.hours * 3600


def build(run: Path, config: DataConfig, progress: Callable[[str], None] = print) -> Path:
    """Make (or finish making) the corpus under <run>/data; returns the manifest path."""
    out = data_dir(run)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    rows = read_manifest(manifest)
    rows = [r for r in rows if (out / r["file"]).is_file()]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))  # drop a torn last line
    voices = list_voices(config.engines)
    if not voices:
        raise RuntimeError(f"no TTS engine among {', '.join(config.engines)} is installed (apt-get install espeak-ng)")
    index = max((int(r["id"][1:]) + 1 for r in _synthetic(rows)), default=0)
    if _done(rows, config, index):
        progress(f"data: complete ({len(rows)} windows, {sum(r['duration_s'] for r in rows) / 3600:.2f} h)")
        return manifest
    corpus = Corpus.load(config.sources)
    _write_info(out, config, voices, corpus)
    progress(f"data: {len(voices)} voices ({', '.join(sorted({v.engine for v in voices}))}), "
             f"text {corpus.summary()['words']} words; resuming at window {index}")
    started, made = time.perf_counter(), 0
    with open(manifest, "a") as f:
        while not _done(rows, config, index):
            audio, record = make_window(index, config, voices, corpus)
            path = out / record["file"]
            tmp = path.with_suffix(".tmp.flac")
            sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16")
            tmp.replace(path)
            f.write(json.dumps(record) + "\n")
            f.flush()
            rows.append(record)
            index += 1
            made += 1
            if made % 20 == 0 or _done(rows, config, index):
                hours = sum(r["duration_s"] for r in rows) / 3600
                rate = made / (time.perf_counter() - started)
                goal = f"{config.windows} windows" if config.windows is not None else f"{config.hours} h"
                progress(f"data: {len(rows)} windows, {hours:.2f} h of {goal} ({rate:.2f} windows/s)")
    return manifest


def _write_info(out: Path, config: DataConfig, voices: list[Voice], corpus: Corpus) -> None:
    info = {
        "hours_requested": config.hours if config.windows is None else None,
        "windows_requested": config.windows,
        "seed": config.seed,
        "engines": sorted({v.engine for v in voices}),
        "engines_missing": sorted(set(config.engines) - {v.engine for v in voices}),
        "voices": len(voices),
        "voice_ids": [v.id for v in voices],
        "text": corpus.summary(),
        "max_window_s": config.max_window_s,
        "augment": config.augment,
    }
    (out / "info.json").write_text(json.dumps(info, indent=1))


def summarize(run: Path) -> dict:
    """Hours, windows and voices actually in the manifest (for the model card)."""
    out = data_dir(run)
    rows = read_manifest(out / "manifest.jsonl")
    info = json.loads((out / "info.json").read_text()) if (out / "info.json").is_file() else {}
    by_engine: dict[str, float] = {}
    for r in rows:
        by_engine[r["engine"]] = by_engine.get(r["engine"], 0.0) + r["duration_s"] / 3600
    return {
        "windows": len(rows),
        "hours": round(sum(r["duration_s"] for r in rows) / 3600, 3),
        "hours_by_engine": {k: round(v, 3) for k, v in sorted(by_engine.items())},
        "voices_used": len({r["voice"] for r in rows}),
        "val_windows": sum(r["split"] == "val" for r in rows),
        "augmented_fraction": round(sum(bool(r["augment"]) for r in rows) / max(len(rows), 1), 3),
        "engines_available": info.get("engines", []),
        "engines_missing": info.get("engines_missing", []),
        "text": info.get("text", {}),
        "hours_requested": info.get("hours_requested"),
        "max_window_s": info.get("max_window_s"),
        "seed": info.get("seed"),
    }
