"""Held-out benchmark clips from Debian packages: `python -m core.bench_data [--out data/eval]`.

Real human speech with transcripts that no test and no training run uses (the bundled clips in
assets/audio come from the same packages, so none of them is taken here; FACTS lists these packages
as never to be trained on):

    short/   up to 30 s: Asterisk prompts (Allison Smith, CC-BY-SA 3.0) and LibriVox clips from
             pocketsphinx-testdata (public domain)
    long/    31-104 s: the three longest Asterisk prompts, and three runs of prompts joined with
             0.5 s pauses (each prompt whole, in a fixed order)
    noisy/   long/ with stretches of silence and of noise between prompts (the hallucination columns)

The packages are fetched with `apt-get download` into a cache and unpacked there; nothing is installed.
Each folder gets a manifest.jsonl (`file`, `text`, `duration_s`, `source`) as core.bench reads it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import SAMPLE_RATE, load_audio

PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-en", "pocketsphinx-testdata")
ALLISON = "usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
LIBRIVOX = "usr/share/pocketsphinx/test/data/librivox"
BUNDLED = {"demo-echotest", "sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"}
LONG_WHOLE = ("demo-instruct", "priv-callee-options", "demo-congrats")
LONG_JOINED = (
    ("conf-adminmenu-18", "conf-usermenu-162"),
    ("screen-callee-options", "vm-options", "vm-msginstruct", "dir-intro-fn"),
    ("basic-pbx-ivr-main", "demo-abouttotry", "demo-moreinfo", "vm-opts-full", "confbridge-mute-extended",
     "demo-nogo", "queue-periodic-announce"),
)
SHORT_MIN_S, SHORT_MAX_S = 5.0, 30.0
SHORT_PROMPTS = 17  # the longest prompts not used for long clips, plus every LibriVox clip
GAP_S = 0.5
SILENCE_S, NOISE_S, NOISE_DBFS = 8.0, 6.0, -35.0


def fetch(cache: Path) -> Path:
    """Unpacked packages under cache/root."""
    root = cache / "root"
    if (root / ALLISON).is_dir() and (root / LIBRIVOX).is_dir() and (root / TRANSCRIPTS).is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=cache, check=True, capture_output=True)
    for deb in cache.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def asterisk_texts(root: Path) -> dict[str, str]:
    texts = {}
    for line in gzip.open(root / TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and "[" not in text:
            texts[name.strip()] = re.sub(r"\s+", " ", text).strip()
    return texts


def librivox_texts(root: Path) -> dict[str, str]:
    texts = {}
    for line in (root / LIBRIVOX / "transcription").read_text().splitlines():
        match = re.match(r"(.*)\((.+)\)\s*$", line.strip())
        if match:
            texts[match.group(2).strip()] = match.group(1).replace("<s>", "").replace("</s>", "").strip().lower()
    return texts


def _write(folder: Path, rows: list[tuple[str, np.ndarray, str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, audio, text, source in rows:
        sf.write(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        lines.append(json.dumps({"file": f"{name}.wav", "text": text, "duration_s": round(len(audio) / SAMPLE_RATE, 3),
                                 "source": source}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")


def build(out: Path, cache: Path) -> dict[str, int]:
    root = fetch(cache)
    texts = asterisk_texts(root)
    prompt = lambda name: load_audio(root / ALLISON / f"{name}.wav")  # noqa: E731
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)
    source = "Asterisk core sounds (Allison Smith, CC-BY-SA 3.0), Debian asterisk-core-sounds-en-wav"

    long_rows = [(name, prompt(name), texts[name], source) for name in LONG_WHOLE]
    for i, names in enumerate(LONG_JOINED, 1):
        audio = np.concatenate([x for n in names for x in (prompt(n), gap)][:-1])
        long_rows.append((f"joined-{i}", audio, " ".join(texts[n] for n in names), source + ", joined"))

    used = set(LONG_WHOLE) | {n for names in LONG_JOINED for n in names} | BUNDLED
    candidates = []
    for path in sorted((root / ALLISON).glob("*.wav")):
        name = path.stem
        if name in used or name not in texts:
            continue
        seconds = sf.info(path).duration
        if SHORT_MIN_S <= seconds <= SHORT_MAX_S:
            candidates.append((seconds, name))
    short_rows = [(name, prompt(name), texts[name], source) for _, name in sorted(candidates, reverse=True)[:SHORT_PROMPTS]]
    for name, text in sorted(librivox_texts(root).items()):
        if name not in BUNDLED:
            short_rows.append((name, load_audio(root / LIBRIVOX / f"{name}.wav"), text,
                               "LibriVox (public domain), Debian pocketsphinx-testdata"))

    rng = np.random.default_rng(0)
    noisy_rows = []
    for name, audio, text, src in long_rows:
        silence = np.zeros(int(SILENCE_S * SAMPLE_RATE), np.float32)
        noise = (rng.standard_normal(int(NOISE_S * SAMPLE_RATE)) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)
        noisy_rows.append((f"{name}-gaps", np.concatenate([silence, audio, noise, silence]), text,
                           src + f"; {SILENCE_S:g} s silence before, {NOISE_S:g} s white noise at {NOISE_DBFS:g} dBFS "
                                 f"and {SILENCE_S:g} s silence after"))
    _write(out / "short", short_rows)
    _write(out / "long", long_rows)
    _write(out / "noisy", noisy_rows)
    return {"short": len(short_rows), "long": len(long_rows), "noisy": len(noisy_rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.bench_data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval"))
    parser.add_argument("--cache", type=Path, default=Path("data/debs"))
    args = parser.parse_args(argv)
    print(build(args.out, args.cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
