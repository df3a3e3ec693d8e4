"""Real human speech for the corpus, from Debian packages: no transcripts, so the teacher labels it.

Synthetic voices taught the first students the words but not real voices (held-out real speech: student WER
4x the teacher's). These packages hold English human speech that no evaluation set here uses:

    warzone2100-data   voice acting: briefings, unit replies, tutorial (zip archives base.wz, mp.wz)
    hedgewars-data     voice packs (the English ones: the Spanish, Polish, Russian and Ukrainian packs are skipped)
    megaglest-data     unit replies (language unverified: the teacher keeps what it hears as English)
    codec2-examples    read speech, 8 kHz (raw files are s16le 8 kHz mono)
    flight-of-the-amazon-queen, beneath-a-steel-sky, drascula
                       adventure games' full English voice acting, hours of it (games.py reads the archives)

Each file is decoded to 16 kHz, cut to its speech by the VAD (sound effects and music have none, or the
teacher's confidence filter drops them when labelling), and the utterances of one speaker group (a voice
pack, a unit, a folder) are joined with short pauses into windows of up to MAX_WINDOW_S, as the synthetic
windows are. Every window is then multiplied: speed perturbation (SPEEDS) and, for each copy but the plain
one, a random augmentation chain (augment.py: noise, reverb, phone band, codecs, level): each copy is a
window of its own: `copies` per window (the games have hours, so one copy each, its speed and chain drawn).
Whole speaker groups are held out, in a fixed hashed order, until DEV_SHARE of a package's windows are:
the real-speech dev set.
Only what the student learnt ships, never this audio.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from core.audio import FFMPEG, SAMPLE_RATE, load_audio
from core.distill.augment import augment, tempo
from core.distill.games import game_lines
from core.vad import speech_regions

PACKAGES = ("warzone2100-data", "hedgewars-data", "megaglest-data", "codec2-examples",
            "flight-of-the-amazon-queen", "beneath-a-steel-sky", "drascula")
LICENCES = {  # from each package's debian/copyright
    "warzone2100-data": "GPL-2+ (Warzone 2100 Project)",
    "hedgewars-data": "GPL-2 and others (Hedgewars Project; voice packs by their authors)",
    "megaglest-data": "CC-BY-SA 3.0 (MegaGlest Team)",
    "codec2-examples": "LGPL-2.1 (David Rowe and contributors)",
    "flight-of-the-amazon-queen": "Flight-of-the-Amazon-Queen-License (freeware, redistributable; Interactive Binary Illusions)",
    "beneath-a-steel-sky": "Beneath-a-Steel-Sky-License (freeware, redistributable; Revolution Software)",
    "drascula": "Drascula-License (BSD-like; Alcachofa Soft)",
}
GAME_PACKAGES = PACKAGES[4:]
SKIPPED_PACKS = ("Default_es", "Default_pl", "Default_ru", "Default_uk", "Russian", "Russian_pl")
SKIPPED_NAMES = ("sine", "test", "frame", "datac", "700d")  # codec2's test signals
AUDIO_SUFFIXES = (".ogg", ".wav", ".opus", ".flac", ".mp3")
SPEEDS = (0.9, 1.0, 1.1)
MAX_WINDOW_S = 28.0
BASE_MAX_S = MAX_WINDOW_S * min(SPEEDS)  # slowed down, a window still fits
SHORT_FRACTION, SHORT_RANGE_S, LONG_MIN_S = 0.25, (1.5, 8.0), 8.0
PAUSE_RANGE_S = (0.25, 0.8)
MIN_SPEECH_S = 0.4  # shorter utterances (grunts, clicks the VAD kept) are dropped
DEV_SHARE = 0.05  # groups are held out until this share of a package's windows is


@dataclass(frozen=True)
class Utterance:
    package: str
    group: str  # the speaker group: a voice pack, a unit, a folder
    name: str
    audio: np.ndarray


def fetch(cache: Path) -> Path:
    """The packages, downloaded (not installed) and unpacked under cache/root."""
    root = Path(cache) / "root"
    marker = root / ".unpacked"
    if marker.is_file() and marker.read_text() == "\n".join(PACKAGES):
        return root
    Path(cache).mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=cache, check=True, capture_output=True)
    for deb in Path(cache).glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    marker.write_text("\n".join(PACKAGES))
    return root


def _raw_8k(path: Path) -> np.ndarray:
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "s16le", "-ar", "8000", "-ac", "1", "-i", str(path),
           "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, "<f4").astype(np.float32)


def _files(root: Path):
    """(package, group, name, loader) for every audio file worth listening to."""
    for archive in sorted((root / "usr/share/games/warzone2100").glob("*.wz")):
        with zipfile.ZipFile(archive) as z:
            for member in sorted(z.namelist()):
                if member.lower().endswith(AUDIO_SUFFIXES) and "/sfx/" not in member:
                    group = member.rsplit("/", 1)[0]
                    yield "warzone2100-data", group, member, lambda a=archive, m=member: _from_zip(a, m)
    voices = root / "usr/share/games/hedgewars/Data/Sounds/voices"
    for pack in sorted(p for p in voices.iterdir() if p.is_dir() and p.name not in SKIPPED_PACKS) if voices.is_dir() else ():
        for path in sorted(pack.iterdir()):
            if path.suffix.lower() in AUDIO_SUFFIXES:
                yield "hedgewars-data", pack.name, path.name, lambda p=path: load_audio(p)
    glest = root / "usr/share/games/megaglest/techs/megapack/factions"
    for path in sorted(glest.rglob("*")) if glest.is_dir() else ():
        if path.suffix.lower() in AUDIO_SUFFIXES and "/units/" in str(path):
            group = "/".join(path.relative_to(glest).parts[:3])  # faction/units/unit
            yield "megaglest-data", group, str(path.relative_to(glest)), lambda p=path: load_audio(p)
    codec2 = root / "usr/share/codec2"
    for path in sorted([*codec2.glob("wav/*.wav"), *codec2.glob("raw/*.raw")]) if codec2.is_dir() else ():
        if not any(s in path.name for s in SKIPPED_NAMES):
            loader = (lambda p=path: _raw_8k(p)) if path.suffix == ".raw" else (lambda p=path: load_audio(p))
            yield "codec2-examples", path.stem, path.name, loader
    for line in game_lines(root):
        yield line.package, line.group, line.name, line.load


def _from_zip(archive: Path, member: str) -> np.ndarray:
    with zipfile.ZipFile(archive) as z, tempfile.NamedTemporaryFile(suffix=Path(member).suffix) as tmp:
        tmp.write(z.read(member))
        tmp.flush()
        return load_audio(tmp.name)


def utterances(root: Path, progress: Callable[[str], None] = print) -> list[Utterance]:
    """Every file's speech (VAD), duplicates (the same audio in two packs or archives) kept once."""
    out, seen = [], set()
    for package, group, name, load in _files(root):
        try:
            audio = load()
        except Exception:  # noqa: BLE001 - a file ffmpeg cannot read is simply not speech we can use
            continue
        digest = hashlib.sha1(np.round(audio[: SAMPLE_RATE * 5], 3).tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        pieces = [audio[r.start : r.end] for r in speech_regions(audio, max_region_s=MAX_WINDOW_S)]
        speech = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if len(speech) >= MIN_SPEECH_S * SAMPLE_RATE:
            out.append(Utterance(package, group, name, speech.astype(np.float32)))
    progress(f"real: {len(out)} utterances, {sum(len(u.audio) for u in out) / SAMPLE_RATE / 60:.1f} min of speech "
             + ", ".join(f"{p} {sum(len(u.audio) for u in out if u.package == p) / SAMPLE_RATE / 60:.1f} min"
                         for p in PACKAGES))
    return out


def dev_groups(bases: list[tuple[np.ndarray, dict]]) -> set[tuple[str, str]]:
    """Whole speaker groups, in a fixed hashed order, until DEV_SHARE of each package's windows are held out.

    A group that alone holds more than twice that share (a game's hero) stays in training."""
    sizes: dict[tuple[str, str], int] = {}
    for _, meta in bases:
        key = (meta["package"], meta["group"])
        sizes[key] = sizes.get(key, 0) + 1
    held: set[tuple[str, str]] = set()
    for package in sorted({p for p, _ in sizes}):
        total = sum(n for (p, _), n in sizes.items() if p == package)
        taken = 0
        for key in sorted((k for k in sizes if k[0] == package), key=lambda k: hashlib.sha1(k[1].encode()).hexdigest()):
            if taken >= DEV_SHARE * total:
                break
            if sizes[key] <= 2 * DEV_SHARE * total or total < 1 / DEV_SHARE:
                held.add(key)
                taken += sizes[key]
    return held


def base_windows(items: list[Utterance], seed: int = 0) -> list[tuple[np.ndarray, dict]]:
    """Utterances of one speaker group joined into windows, in a fixed shuffled order."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[Utterance]] = {}
    for u in items:
        groups.setdefault((u.package, u.group), []).append(u)
    windows = []
    for (package, group), members in sorted(groups.items()):
        order = rng.permutation(len(members))
        run: list[Utterance] = []
        target = _target(rng)
        for i in order:
            u = members[i]
            length = sum(len(x.audio) for x in run) / SAMPLE_RATE + len(u.audio) / SAMPLE_RATE + PAUSE_RANGE_S[1] * len(run)
            if run and length > target:
                windows.append(_join(run, rng, package, group))
                run, target = [], _target(rng)
            if len(u.audio) <= BASE_MAX_S * SAMPLE_RATE:
                run.append(u)
        if run:
            windows.append(_join(run, rng, package, group))
    return windows


def _target(rng) -> float:
    if rng.random() < SHORT_FRACTION:
        return float(rng.uniform(*SHORT_RANGE_S))
    return float(rng.uniform(LONG_MIN_S, BASE_MAX_S))


def _join(run: list[Utterance], rng, package: str, group: str) -> tuple[np.ndarray, dict]:
    pieces = []
    for i, u in enumerate(run):
        if i:
            pieces.append(np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * SAMPLE_RATE), np.float32))
        pieces.append(u.audio)
    audio = np.concatenate(pieces)[: int(BASE_MAX_S * SAMPLE_RATE)]
    return audio, {"package": package, "group": group, "files": [u.name for u in run]}


def copies_of(package: str) -> int:
    """Speed/augmentation copies per window: three for the minutes of round 3's packages, one for the games' hours."""
    return 1 if package in GAME_PACKAGES else len(SPEEDS)


def _copy(audio: np.ndarray, b: int, s: int, copies: int, seed: int) -> tuple[np.ndarray, float, list[str]]:
    """Copy s of base window b: its speed (all of SPEEDS when there are that many copies, else one drawn by b)."""
    rng = np.random.default_rng([seed, b, s, 17])
    speed = SPEEDS[s] if copies == len(SPEEDS) else SPEEDS[(b + s) % len(SPEEDS)]
    copy, applied = audio, []
    if speed != 1.0:
        copy, chain = augment(tempo(audio, speed), rng, MAX_WINDOW_S)
        applied = [f"speed {speed:g}", *chain]
    return (copy + 3e-5 * rng.standard_normal(len(copy))).astype(np.float32), speed, applied


def build(data: Path, cache: Path, seed: int = 0, progress: Callable[[str], None] = print) -> int:
    """Add the real windows (every speed and augmentation copy) to <run>/data; returns how many were added."""
    data = Path(data)
    manifest = data / "manifest.jsonl"
    done = {json.loads(line)["id"] for line in manifest.read_text().splitlines() if line.strip()} if manifest.is_file() else set()
    bases = base_windows(utterances(fetch(cache), progress), seed)
    held = dev_groups(bases)
    (data / "audio").mkdir(parents=True, exist_ok=True)
    added = 0
    with open(manifest, "a") as f:
        for b, (audio, meta) in enumerate(bases):
            copies = copies_of(meta["package"])
            for s in range(copies):
                window_id = f"r{b * len(SPEEDS) + s:06d}"
                if window_id in done:
                    continue
                copy, speed, applied = _copy(audio, b, s, copies, seed)
                sf.write(data / "audio" / f"{window_id}.flac", copy, SAMPLE_RATE, subtype="PCM_16")
                record = {"id": window_id, "file": f"audio/{window_id}.flac", "text": "", "voice": meta["group"],
                          "engine": "real", "rate": speed, "pitch": 0.0, "source": meta["package"],
                          "augment": applied, "duration_s": round(len(copy) / SAMPLE_RATE, 3),
                          "split": "val" if (meta["package"], meta["group"]) in held else "train",
                          "files": meta["files"]}
                f.write(json.dumps(record) + "\n")
                added += 1
    progress(f"real: {len(bases)} windows, {len(held)} groups held out: {added} windows added")
    return added
