"""Make clean synthetic speech sound recorded: tempo, room reverb, phone band, noise, lossy codecs, level.

Each effect is drawn with its own probability from the window's seeded generator, so a window is
reproducible from (seed, index). Noise and reverb are numpy; tempo, band limits and codecs are ffmpeg
(argument lists, no shell). The list of what was applied goes into the manifest.
"""

from __future__ import annotations

import subprocess

import numpy as np

from core.audio import FFMPEG, SAMPLE_RATE

P_TEMPO, TEMPO_RANGE = 0.2, (0.88, 1.15)
P_REVERB, RT60_RANGE = 0.25, (0.15, 0.7)  # seconds
P_PHONE = 0.12  # 300-3400 Hz at 8 kHz, sometimes through GSM
P_NOISE, SNR_RANGE_DB = 0.5, (6.0, 30.0)  # below ~6 dB the base teacher fails on TTS speech
P_CODEC = 0.25
CODECS = (  # (name, ffmpeg output arguments, container)
    ("mp3-32k", ["-c:a", "libmp3lame", "-b:a", "32k"], "mp3"),
    ("mp3-64k", ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3"),
    ("opus-12k", ["-c:a", "libopus", "-b:a", "12k"], "ogg"),
    ("opus-24k", ["-c:a", "libopus", "-b:a", "24k"], "ogg"),
    ("vorbis-q1", ["-c:a", "libvorbis", "-q:a", "1"], "ogg"),
)
PEAK_DBFS_RANGE = (-24.0, -1.0)
DITHER = 3e-5  # exact digital silence trips the speech gate and is never heard in real recordings
FFMPEG_TIMEOUT_S = 60


def _ffmpeg(audio: np.ndarray, output_args: list[str], fmt: str, rate: int = SAMPLE_RATE) -> bytes:
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1",
           "-i", "pipe:", *output_args, "-f", fmt, "pipe:"]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(audio, "<f4").tobytes(), capture_output=True,
                          timeout=FFMPEG_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return proc.stdout


def _decode(data: bytes, rate: int = SAMPLE_RATE, input_format: str | None = None) -> np.ndarray:
    """`input_format` for headerless streams (raw GSM), which ffmpeg's probe misreads now and then."""
    given = ["-f", input_format] if input_format else []
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", *given, "-i", "pipe:", "-f", "f32le", "-ac", "1",
           "-ar", str(rate), "pipe:"]
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return np.frombuffer(proc.stdout, "<f4").astype(np.float32)


def _filter(audio: np.ndarray, chain: str) -> np.ndarray:
    raw = _ffmpeg(audio, ["-af", chain, "-ar", str(SAMPLE_RATE), "-c:a", "pcm_f32le"], "f32le")
    return np.frombuffer(raw, "<f4").astype(np.float32)


def tempo(audio: np.ndarray, factor: float) -> np.ndarray:
    """Speak faster (> 1) or slower without changing pitch."""
    return _filter(audio, f"atempo={factor:.4f}")


def reverb(audio: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Convolve with a synthetic room: a direct path then exponentially decaying noise."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.005 * SAMPLE_RATE)] = 0.0  # first reflections arrive after ~5 ms
    impulse = np.concatenate([[1.0], 0.3 * tail / (np.abs(tail).max() + 1e-9)])
    size = 1 << int(np.ceil(np.log2(len(audio) + len(impulse))))
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(impulse, size), size)[: len(audio)]
    return (wet * (np.abs(audio).max() / (np.abs(wet).max() + 1e-9))).astype(np.float32)


def phone_band(audio: np.ndarray, gsm: bool) -> np.ndarray:
    """A telephone line: 300-3400 Hz at 8 kHz, optionally through the GSM codec."""
    narrow = _ffmpeg(audio, ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-c:a", "pcm_s16le"], "wav")
    if gsm:
        coded = _ffmpeg(_decode(narrow, 8000), ["-c:a", "libgsm", "-ar", "8000"], "gsm", rate=8000)
        return _decode(coded, input_format="gsm")
    return _decode(narrow)


def noise(audio: np.ndarray, rng: np.random.Generator, kind: str, snr_db: float) -> np.ndarray:
    """Add white, pink, brown or mains-hum noise at a signal-to-noise ratio measured on the speech."""
    n = len(audio)
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice([50.0, 60.0])
        shaped = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
        shaped = shaped + 0.1 * rng.standard_normal(n)
    else:
        white = rng.standard_normal(n)
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spectrum /= np.maximum(freqs, 20.0) ** exponent
        shaped = np.fft.irfft(spectrum, n)
    speech = audio[np.abs(audio) > 0.02 * (np.abs(audio).max() + 1e-9)]
    signal_power = float(np.mean(speech**2)) if speech.size else float(np.mean(audio**2))
    noise_power = float(np.mean(shaped**2)) + 1e-12
    scale = np.sqrt(signal_power / noise_power / 10 ** (snr_db / 10))
    return (audio + scale * shaped).astype(np.float32)


def codec(audio: np.ndarray, name: str) -> np.ndarray:
    """Round-trip through a lossy codec; the length is restored (encoders pad a few ms)."""
    _, args, container = next(c for c in CODECS if c[0] == name)
    out = _decode(_ffmpeg(audio, args, container))
    if len(out) >= len(audio):
        return out[: len(audio)]
    return np.pad(out, (0, len(audio) - len(out)))


def augment(audio: np.ndarray, rng: np.random.Generator, max_s: float) -> tuple[np.ndarray, list[str]]:
    """Apply a random chain of effects; returns the audio and a description of each effect applied."""
    applied = []
    if rng.random() < P_TEMPO:
        # never stretch past the window limit
        low = max(TEMPO_RANGE[0], len(audio) / SAMPLE_RATE / max_s)
        factor = float(rng.uniform(low, max(low, TEMPO_RANGE[1])))
        audio = tempo(audio, factor)
        applied.append(f"tempo {factor:.2f}")
    if rng.random() < P_REVERB:
        rt60 = float(rng.uniform(*RT60_RANGE))
        audio = reverb(audio, rng, rt60)
        applied.append(f"reverb rt60 {rt60:.2f}s")
    phone = rng.random() < P_PHONE
    if phone:
        gsm = bool(rng.random() < 0.5)
        audio = phone_band(audio, gsm)
        applied.append("phone 8k" + (" gsm" if gsm else ""))
    if rng.random() < P_NOISE:
        kind = str(rng.choice(["white", "pink", "brown", "hum"], p=[0.3, 0.35, 0.2, 0.15]))
        snr = float(rng.uniform(*SNR_RANGE_DB))
        audio = noise(audio, rng, kind, snr)
        applied.append(f"noise {kind} {snr:.0f}dB")
    if not phone and rng.random() < P_CODEC:
        name = str(rng.choice([c[0] for c in CODECS]))
        audio = codec(audio, name)
        applied.append(name)
    peak_db = float(rng.uniform(*PEAK_DBFS_RANGE))
    audio = audio * (10 ** (peak_db / 20) / (np.abs(audio).max() + 1e-9))
    audio = audio + DITHER * rng.standard_normal(len(audio))
    return np.clip(audio, -1.0, 1.0).astype(np.float32), applied
