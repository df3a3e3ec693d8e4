"""Real media files for tests, made by the real ffmpeg binary from the bundled JFK clip: every
container/codec a user may upload, broken and hostile files, and very long audio."""

import struct
import subprocess
import time
import wave
from pathlib import Path

from core.audio import SAMPLE_RATE

ASSETS = Path(__file__).parents[1] / "assets" / "audio"
JFK = ASSETS / "jfk.wav"


def ff(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=60)


GOOD = {  # name -> (ffmpeg args after "-i jfk.wav" or a full arg list, min correlation)
    "jfk.flac": (["-c:a", "flac"], 0.999),
    "jfk.mp3": (["-c:a", "libmp3lame", "-b:a", "64k"], 0.98),
    "jfk.ogg": (["-c:a", "libvorbis", "-q:a", "4"], 0.98),
    "jfk.opus": (["-c:a", "libopus", "-b:a", "48k"], 0.98),
    "jfk.m4a": (["-c:a", "aac", "-b:a", "96k"], 0.98),
    "jfk.webm": (["-c:a", "libopus", "-b:a", "48k", "-f", "webm"], 0.98),
    "jfk_6ch_48k.wav": (["-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-ar", "48000"], 0.999),
    "jfk_8k.wav": (["-ar", "8000"], 0.99),
    "jfk_96k_float.wav": (["-ar", "96000", "-c:a", "pcm_f32le"], 0.999),
}
VIDEO = {  # audio track of a video: mp4 (h264 + aac), mkv (mpeg4 + flac)
    "jfk_video.mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"], 0.98),
    "jfk_video.mkv": (["-c:v", "mpeg4", "-c:a", "flac"], 0.999),
}


def build_media(d: Path) -> Path:
    """Every file below, made by the real ffmpeg from jfk.wav in ~3 s."""
    for name, (args, _) in GOOD.items():
        ff("-i", JFK, *args, d / name)
    for name, (args, _) in VIDEO.items():
        ff("-f", "lavfi", "-i", "color=c=black:s=64x64:r=5", "-i", JFK,
           "-map", "0:v", "-map", "1:a", "-shortest", *args, d / name)
    ff("-f", "lavfi", "-i", "color=c=black:s=64x64:r=5", "-t", "2", "-c:v", "libx264",
       "-preset", "ultrafast", "-pix_fmt", "yuv420p", d / "silent_video.mp4")
    ff("-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1", d / "image.png")
    # webm written to a pipe: the muxer cannot seek back, so there is no duration at all
    with open(d / "no_duration.webm", "wb") as f:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(JFK), "-c:a", "libopus",
                        "-f", "webm", "pipe:1"], stdout=f, check=True, timeout=60)
    ff("-i", JFK, "-ar", "48000", d / "jfk_48k.wav")
    ff("-i", JFK, "-ar", "8000", d / "jfk_8k_s16.wav")
    ff("-i", JFK, "-ac", "2", "-ar", "44100", d / "jfk_44k1_stereo.wav")

    mp3 = (d / "jfk.mp3").read_bytes()
    (d / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    (d / "text.wav").write_text("Dear diary, this is not a sound file.\n" * 20)
    (d / "empty.wav").write_bytes(b"")

    wav = JFK.read_bytes()
    data = wav.find(b"data")
    assert wav[:4] == b"RIFF" and data > 0
    for name, riff, size in [("lying_big.wav", 0x7FFFFFF0, 0x7FFFFF00),
                             ("lying_ffff.wav", 0xFFFFFFFF, 0xFFFFFFFF),
                             ("lying_zero.wav", 0, 0),
                             ("lying_short.wav", None, 2 * SAMPLE_RATE)]:  # claims 1 s of 11 s
        b = bytearray(wav)
        if riff is not None:
            b[4:8] = struct.pack("<I", riff)
        b[data + 4 : data + 8] = struct.pack("<I", size)
        (d / name).write_bytes(bytes(b))
    return d


def three_hour_flac(path: Path) -> Path:
    """3 h of silence as FLAC: ~2 MB and under a second to make (opus took ~55 s)."""
    t = time.monotonic()
    ff("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono:nb_samples=8000", "-t", "10800", "-c:a", "flac", path)
    assert time.monotonic() - t < 15
    return path


def write_wav(path: Path, samples, rate: int = SAMPLE_RATE) -> Path:
    import numpy as np

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def noise_clips(d: Path, seconds: float = 8.0) -> dict[str, Path]:
    """Sounds with no speech in them, loud enough to pass an energy gate: the ones Whisper turns into
    'Thank you.' or a looping phrase when nothing stops it."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.arange(1, n // 2 + 2)), n)
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5))
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 40)] = 1
    clicks = np.convolve(clicks, np.exp(-np.arange(200) / 20), "same") * rng.standard_normal(n)
    tones = np.sin(2 * np.pi * np.repeat(rng.choice([262, 294, 330, 392, 440], 16), n // 16 + 1)[:n] * t)
    sounds = {"white_noise": (white, -20), "quiet_hiss": (white, -45), "pink_noise": (pink, -20),
              "mains_hum": (hum, -25), "clicks": (clicks, -30), "tone_melody": (tones, -20)}
    return {name: write_wav(d / f"{name}.wav", x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20))
            for name, (x, dbfs) in sounds.items()}


def decompression_bomb(path: Path) -> Path:
    """9 min 50 s (under the CPU cap) of 7.1 audio at 384 kHz (~1.8 G samples) in a small FLAC: ffmpeg
    needs many seconds to decode it, the way a damaged or hostile container keeps it busy."""
    ff("-f", "lavfi", "-i", "anullsrc=r=384000:cl=7.1", "-t", "590", "-c:a", "flac", path)
    return path
