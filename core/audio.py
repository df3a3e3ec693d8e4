"""Turn whatever the user gives us (a file or an in-memory array) into 16 kHz mono float32.

Whisper only ever sees 16 kHz mono, so every input path ends here. Files go through the
ffmpeg binary (it reads every container we care about, including the audio track of a
video); arrays from the microphone are converted in numpy because that runs for every
streamed chunk and a subprocess per chunk is too slow.

Errors are `core.errors.AudioError` subclasses whose message is shown to the user as is;
ffmpeg's own diagnostics go to the log, never into the message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from core.errors import (
    AudioError,
    AudioTooLongError,
    DecodeTimeoutError,
    EmptyAudioError,
    NoAudioStreamError,
    NotAudioError,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what Whisper's feature extractor expects
DEFAULT_MAX_SECONDS = 3600  # one hour: beyond that CPU transcription takes too long to be useful
PROBE_TIMEOUT_S = 15.0  # ffprobe reads headers only; anything slower is a hostile/broken file
DECODE_TIMEOUT_S = float(os.environ.get("ARENA_DECODE_TIMEOUT_S", 120))  # probe + decode together
CAP_SLACK_S = 0.5  # codecs pad a few ms; "exactly 60 min" must not be rejected for 60:00.05
FFMPEG = os.environ.get("ARENA_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("ARENA_FFPROBE", "ffprobe")

# Only local files: an uploaded playlist (HLS, concat) must not make ffmpeg fetch URLs.
_PROTOCOL_WHITELIST = "file"
_STDERR_LOG_CHARS = 2000

# In-memory resampling (see to_mono_16k).
_RESAMPLE_HALF_LEN = 16  # filter half-length in taps of the slower rate: ~1 ms at 16 kHz
_RESAMPLE_KAISER_BETA = 8.0  # ~80 dB stopband: no audible aliasing
_RESAMPLE_MAX_FACTOR = 1000  # up/down beyond this (odd rates like 44101 Hz) -> ffmpeg
_RESAMPLE_MAX_NUMPY_S = 120.0  # long arrays -> ffmpeg, which is much faster per sample
_RESAMPLE_CHUNK = 1 << 15  # output samples per gather block: bounds memory
_MAX_CHANNELS = 64  # a 2-D array with more "channels" than this is channels-first

# Containers ffprobe reports for still images (img2dec.c names them "<codec>_pipe").
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "ico"}
_IMAGE_CODECS = {
    "png", "apng", "mjpeg", "jpegls", "ljpeg", "gif", "bmp", "webp", "tiff", "jpeg2000",
    "svg", "ppm", "pgm", "pbm", "pam", "pcx", "sgi", "sunrast", "targa", "xbm", "xpm",
    "xwd", "dds", "exr", "qoi", "ico", "psd", "photocd", "hdr",
}


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about a file's first audio stream (None where it does not say)."""

    duration_s: float | None
    sample_rate: int | None
    channels: int | None
    codec: str | None
    has_video: bool


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def probe(path: str | os.PathLike, timeout_s: float = PROBE_TIMEOUT_S) -> AudioInfo:
    """Read the file's headers only, so bad or huge files are refused before decoding.

    Raises EmptyAudioError (missing or 0-byte file), NotAudioError (not a media file, or an
    image), NoAudioStreamError (media without sound, e.g. a silent video), DecodeTimeoutError.
    """
    p = _check_file(path)
    cmd = [
        FFPROBE, "-v", "error", "-protocol_whitelist", _PROTOCOL_WHITELIST,
        "-print_format", "json", "-show_format", "-show_streams", _ffmpeg_url(p),
    ]
    proc = _run(cmd, timeout_s, what="reading", input_bytes=None)
    if proc.returncode != 0:
        _log_stderr("ffprobe failed", p, proc.stderr)
        raise NotAudioError(
            "This file could not be read as audio or video. It may be damaged, "
            "or it may not be a sound file at all."
        )
    try:
        meta = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except ValueError:
        _log_stderr("ffprobe returned unreadable JSON", p, proc.stdout)
        raise NotAudioError("This file could not be read as audio or video.") from None

    fmt = meta.get("format") or {}
    streams = meta.get("streams") or []
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    video = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not audio:
        _raise_no_audio(fmt, streams, video)

    a = audio[0]
    duration = _as_float(a.get("duration"))
    if duration is None:  # Matroska/WebM keep per-stream length in a tag, if at all
        duration = _parse_hms((a.get("tags") or {}).get("DURATION"))
    if duration is None:
        duration = _as_float(fmt.get("duration"))
    return AudioInfo(
        duration_s=duration,
        sample_rate=_as_int(a.get("sample_rate")),
        channels=_as_int(a.get("channels")),
        codec=a.get("codec_name") or None,
        has_video=bool(video),
    )


def load_audio(
    path: str | os.PathLike,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    timeout_s: float = DECODE_TIMEOUT_S,
) -> np.ndarray:
    """Decode the first audio track of any file ffmpeg reads into 16 kHz mono float32 (1-D).

    The probed duration is checked against `max_seconds` first, so a 3-hour upload is refused
    in milliseconds. Containers can lie or omit the duration, so decoding also stops at
    `max_seconds` + 1 s and the result is checked again. `timeout_s` bounds probe + decode.
    """
    deadline = time.monotonic() + timeout_s
    info = probe(path, timeout_s=min(PROBE_TIMEOUT_S, timeout_s))
    if info.duration_s is not None and info.duration_s > max_seconds + CAP_SLACK_S:
        raise AudioTooLongError(_too_long_message(info.duration_s, max_seconds))

    p = Path(path)
    remaining = max(deadline - time.monotonic(), 0.001)
    proc = _run(_decode_command(p, max_seconds), remaining, what="decoding", input_bytes=None, limit_s=timeout_s)
    audio = _decoded_samples(proc, p)
    if audio.size > (max_seconds + CAP_SLACK_S) * SAMPLE_RATE:
        raise AudioTooLongError(_too_long_message(None, max_seconds))
    return audio


def _decode_command(p: Path, max_seconds: float) -> list[str]:
    """ffmpeg: the first audio track as 16 kHz mono float32 on stdout, at most `max_seconds` + 1 s of it."""
    return (
        ffmpeg.input(_ffmpeg_url(p), protocol_whitelist=_PROTOCOL_WHITELIST)
        .output(
            "pipe:", map="0:a:0", format="f32le", acodec="pcm_f32le",
            ac=1, ar=SAMPLE_RATE, t=_fmt_seconds_arg(max_seconds + 1),
            # ffmpeg's 5.1->mono matrix favours the dialogue (centre) channel, which is what we
            # want, but for float output it is not normalised: identical channels come out
            # 3.4x too loud (peaks > 1). Cap the matrix gain at 1 like for integer output.
            rematrix_maxval=1,
        )
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=FFMPEG)
    )


def _decoded_samples(proc: subprocess.CompletedProcess, p: Path) -> np.ndarray:
    """The samples ffmpeg wrote. A failed decode that still wrote some is kept (a damaged tail loses only
    the tail); one that wrote nothing is refused."""
    out = proc.stdout
    if proc.returncode != 0:
        _log_stderr(f"ffmpeg exited with {proc.returncode}", p, proc.stderr)
        if len(out) < 4:
            raise NotAudioError(
                "The sound in this file could not be decoded. The file may be damaged "
                "or use an unsupported format."
            )
    elif proc.stderr:
        _log_stderr("ffmpeg reported problems (decoded anyway)", p, proc.stderr)

    usable = len(out) - len(out) % 4
    audio = np.frombuffer(out, dtype="<f4", count=usable // 4).astype(np.float32, copy=True)
    if audio.size == 0:
        raise EmptyAudioError("No sound could be decoded from this file (it is empty or damaged).")
    return audio


def duration_s(samples: np.ndarray) -> float:
    """Length in seconds of 16 kHz audio (first axis), as used for caps and display."""
    return len(samples) / SAMPLE_RATE


# --------------------------------------------------------------------------------------
# In-memory arrays (microphone, Gradio numpy audio)
# --------------------------------------------------------------------------------------


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Convert an array in Gradio's layout, (N,) or (N, channels), to 16 kHz mono float32.

    Integers are scaled to [-1, 1] (int16 / 32768, uint8 centred on 128, ...), floats are
    kept as is. Channels are averaged. A (channels, N) array is accepted when there are at
    most 64 channels and more samples than that. Common rates (8k, 24k, 32k, 44.1k, 48k,
    96k, ...) are resampled in numpy with a polyphase windowed-sinc filter because streaming
    calls this for every short chunk; odd rates and long arrays go through ffmpeg. Each
    call is independent, so chunks resampled separately get ~1 ms of filter edge at each
    end (harmless for speech recognition). Always returns a new contiguous 1-D array.
    """
    x = np.asarray(samples)
    if x.size == 0:
        raise EmptyAudioError("The recording is empty. Please record or upload some audio.")
    sr = _check_rate(sample_rate)
    x = _to_float32(x)
    if x.ndim == 2:
        if x.shape[1] > _MAX_CHANNELS and x.shape[0] <= _MAX_CHANNELS:
            x = x.T  # (channels, N) as soundfile/librosa users sometimes pass
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    elif x.ndim != 1:
        raise NotAudioError("The recording has an unexpected layout and could not be read as sound.")
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)

    if sr != SAMPLE_RATE:
        x = _resample(x, sr)
    return np.array(x, dtype=np.float32, order="C", copy=True)


def _to_float32(x: np.ndarray) -> np.ndarray:
    """Scale integer PCM to [-1, 1] so all downstream code sees one convention."""
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.signedinteger):
        scale = -float(np.iinfo(x.dtype).min)
        return (x.astype(np.float32) / np.float32(scale)).astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.unsignedinteger):
        mid = (float(np.iinfo(x.dtype).max) + 1.0) / 2.0
        return ((x.astype(np.float64) - mid) / mid).astype(np.float32)
    raise NotAudioError("The recording is in a sample format that could not be read as sound.")


def _check_rate(sample_rate) -> int:
    try:
        sr = int(sample_rate)
    except (TypeError, ValueError):
        sr = 0
    if sr <= 0 or sr != sample_rate:
        raise NotAudioError("The recording reports an invalid sample rate and could not be used.")
    return sr


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    """Pick numpy for short arrays at common rates, ffmpeg otherwise (speed in both cases)."""
    g = math.gcd(SAMPLE_RATE, sr)
    up, down = SAMPLE_RATE // g, sr // g
    if max(up, down) <= _RESAMPLE_MAX_FACTOR and len(x) <= _RESAMPLE_MAX_NUMPY_S * sr:
        return _resample_poly(x, up, down)
    return _resample_ffmpeg(x, sr)


def _lowpass_taps(up: int, down: int) -> np.ndarray:
    """Kaiser-windowed sinc at the lower of the two Nyquist rates, gain `up` (like scipy)."""
    factor = max(up, down)
    half = _RESAMPLE_HALF_LEN * factor
    t = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = 1.0 / factor  # relative to the upsampled Nyquist
    h = np.sinc(cutoff * t) * np.kaiser(2 * half + 1, _RESAMPLE_KAISER_BETA)
    return h * (up / h.sum())


def _resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase rational resampling: y[n] = sum_k h[k] * upsampled_x[n*down + half - k].

    Only the non-zero terms are gathered (taps h[r + j*up] against x[base - j]), so the cost
    is ~2*16*max(1, down/up) multiply-adds per output sample whatever the ratio.
    """
    h = _lowpass_taps(up, down)
    half = (len(h) - 1) // 2
    n_taps = -(-len(h) // up)  # taps per phase
    phases = np.zeros(n_taps * up, dtype=np.float64)
    phases[: len(h)] = h
    phases = phases.reshape(n_taps, up).T.astype(np.float32)  # phases[r, j] = h[r + j*up]

    n_in = len(x)
    n_out = -(-n_in * up // down)
    pad = n_taps
    xp = np.concatenate([np.zeros(pad, np.float32), x.astype(np.float32, copy=False),
                         np.zeros(pad + 1, np.float32)])
    j = np.arange(n_taps)
    y = np.empty(n_out, dtype=np.float32)
    for start in range(0, n_out, _RESAMPLE_CHUNK):
        n = np.arange(start, min(start + _RESAMPLE_CHUNK, n_out), dtype=np.int64)
        m0 = n * down + half
        idx = (m0 // up)[:, None] - j[None, :] + pad
        np.einsum("ij,ij->i", phases[m0 % up], xp[idx], out=y[start : start + len(n)])
    return y


def _resample_ffmpeg(x: np.ndarray, sr: int) -> np.ndarray:
    """ffmpeg's resampler: fast on long arrays, and any rate works."""
    cmd = (
        ffmpeg.input("pipe:", format="f32le", ac=1, ar=sr)
        .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=SAMPLE_RATE)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile(cmd=FFMPEG)
    )
    # Generous: ffmpeg resamples far faster than real time.
    timeout = DECODE_TIMEOUT_S + len(x) / sr / 100.0
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    proc = _run(cmd, timeout, what="converting", input_bytes=data)
    if proc.returncode != 0:
        _log_stderr("ffmpeg resampling failed", None, proc.stderr)
        raise AudioError("The recording could not be converted to 16 kHz. Please try again.")
    out = proc.stdout
    return np.frombuffer(out, dtype="<f4", count=len(out) // 4).astype(np.float32)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _check_file(path) -> Path:
    """Refuse missing/empty paths with a clear message before ffprobe says something cryptic."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise EmptyAudioError(
            "The audio file could not be found (it may have been moved or deleted). "
            "Please upload it again."
        ) from None
    except OSError as e:
        logger.warning("cannot stat %s: %s", p, e)
        raise NotAudioError("The audio file could not be opened. Please upload it again.") from None
    if p.is_dir():
        raise NotAudioError("This is a folder, not an audio file.")
    if st.st_size == 0:
        raise EmptyAudioError("This file is empty (0 bytes). Please upload a file with audio in it.")
    return p


def _ffmpeg_url(p: Path) -> str:
    """`file:` + absolute path, so names like `-x.wav` or `concat:a|b` are taken literally."""
    return "file:" + str(p.resolve())


def _run(cmd: list[str], timeout_s: float, *, what: str, input_bytes: bytes | None,
         limit_s: float | None = None) -> subprocess.CompletedProcess:
    """Run with a hard timeout (subprocess.run kills the child on expiry) and map failures."""
    try:
        return subprocess.run(
            cmd,
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=max(timeout_s, 0.001),
            check=False,
        )
    except subprocess.TimeoutExpired:
        limit = limit_s if limit_s is not None else timeout_s
        logger.warning("%s timed out after %.1f s: %s", cmd[0], timeout_s, cmd)
        raise DecodeTimeoutError(
            f"{what.capitalize()} this file took too long (over {_fmt_duration(limit)}) and was "
            "stopped. It may be damaged or very large; try a shorter clip or a common "
            "format such as WAV or MP3."
        ) from None
    except FileNotFoundError:
        logger.error("%s is not installed or not on PATH", cmd[0])
        raise AudioError(
            "Audio support is not installed on this server (ffmpeg is missing), "
            "so files cannot be read right now."
        ) from None


def _raise_no_audio(fmt: dict, streams: list[dict], video: list[dict]) -> None:
    """Explain *why* there is nothing to transcribe: image, text, or silent video."""
    formats = set(str(fmt.get("format_name") or "").split(","))
    codecs = {s.get("codec_name") for s in streams}
    is_image = bool(streams) and (
        any(f.endswith("_pipe") or f in _IMAGE_FORMATS for f in formats)
        or (video and all(s.get("codec_name") in _IMAGE_CODECS for s in video)
            and all(_as_int(s.get("nb_frames")) in (None, 0, 1) for s in video))
    )
    if is_image:
        raise NotAudioError("This looks like an image, not audio. Please upload a sound or video file.")
    if "tty" in formats or "ansi" in codecs:
        raise NotAudioError("This looks like a text file, not audio. Please upload a sound or video file.")
    if not streams:
        raise NotAudioError("This file does not contain any audio or video that could be read.")
    if video:
        raise NoAudioStreamError("This file contains no audio track (it may be a silent video).")
    raise NoAudioStreamError("This file contains no audio track.")


def _too_long_message(seconds: float | None, max_seconds: float) -> str:
    cap = _fmt_duration(max_seconds)
    if seconds is None:
        return (f"This recording is longer than the {cap} limit. "
                "Please trim it or upload a shorter clip.")
    return (f"This recording is {_fmt_duration(seconds)} long, but the limit is {cap}. "
            "Please trim it or upload a shorter clip.")


def _fmt_duration(seconds: float) -> str:
    """'3 h', '2 h 5 min', '60 min', '12 min 3 s', '45 s', '0.5 s': what a person would say."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if s >= 2 * 3600:
        return f"{h} h {m} min" if m else f"{h} h"
    m += 60 * h
    if m:
        return f"{m} min {sec} s" if sec else f"{m} min"
    return f"{sec} s"


def _fmt_seconds_arg(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _as_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f >= 0 else None


def _parse_hms(v) -> float | None:
    """'00:00:11.000000000' -> 11.0 (the form Matroska's DURATION tag takes)."""
    try:
        h, m, sec = str(v).split(":")
        return _as_float(int(h) * 3600 + int(m) * 60 + float(sec))
    except (TypeError, ValueError):
        return None


def _as_int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _log_stderr(msg: str, path: Path | None, stderr: bytes) -> None:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    if len(text) > _STDERR_LOG_CHARS:
        text = text[:_STDERR_LOG_CHARS] + " ..."
    logger.warning("%s%s: %s", msg, f" for {path}" if path else "", text)
