"""core.audio against real files made by the real ffmpeg binary from the bundled JFK clip:
every container/codec a user may upload, broken and hostile files, the length cap, the decode
timeout, and the in-memory (microphone) conversion path."""

import os
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from core import audio
from core.audio import (
    DEFAULT_MAX_SECONDS, SAMPLE_RATE, AudioInfo, duration_s, load_audio, probe, to_mono_16k,
)
from core.errors import (
    ArenaError, AudioError, AudioTooLongError, DecodeTimeoutError, EmptyAudioError,
    NoAudioStreamError, NotAudioError,
)

from tests.media import GOOD, JFK, VIDEO
JFK_SECONDS = 11.0

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg binary not installed")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def read_wav(path):
    """Raw samples via the stdlib, independent of the code under test."""
    with wave.open(str(path)) as w:
        raw = w.readframes(w.getnframes())
        assert w.getsampwidth() == 2
        x = np.frombuffer(raw, "<i2").reshape(-1, w.getnchannels())
        return x, w.getframerate()


@pytest.fixture(scope="session")
def jfk16():
    x, sr = read_wav(JFK)
    assert sr == SAMPLE_RATE and x.shape[1] == 1
    return x[:, 0].astype(np.float32) / 32768.0


def best_corr(a, b, max_lag=800):
    """Normalised cross-correlation at the best lag within +-50 ms (codecs shift a little)."""
    n = min(len(a), len(b))
    a = np.asarray(a[:n], np.float64)
    b = np.asarray(b[:n], np.float64)
    size = 1 << (2 * n - 1).bit_length()
    cc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    cc = np.concatenate([cc[-max_lag:], cc[: max_lag + 1]])
    return float(cc.max() / (np.linalg.norm(a) * np.linalg.norm(b)))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def assert_plain_message(err):
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg and len(msg) < 300, msg
    for leak in ("ffmpeg version", "Invalid data", "@ 0x", "Stream #", "pipe:", "file:", "\n", "Traceback"):
        assert leak not in msg, msg
    return msg


# --------------------------------------------------------------------------------------
# media fixtures (built once per session, ~3 s)
# --------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------
# files that decode
# --------------------------------------------------------------------------------------


def test_reference_wav_is_returned_bit_exact(jfk16):
    x = load_audio(JFK)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous and x.flags.writeable
    assert len(x) == len(jfk16) == int(JFK_SECONDS * SAMPLE_RATE)
    np.testing.assert_allclose(x, jfk16, atol=1e-6)
    assert duration_s(x) == pytest.approx(JFK_SECONDS)


@pytest.mark.parametrize("name", sorted(GOOD) + sorted(VIDEO))
def test_every_format_decodes_to_the_same_speech(media, jfk16, name):
    min_corr = {**GOOD, **VIDEO}[name][1]
    x = load_audio(media / name)
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    assert abs(duration_s(x) - JFK_SECONDS) <= 0.1, duration_s(x)
    assert best_corr(x, jfk16) > min_corr
    # level preserved, also for 5.1 (ffmpeg's float downmix is not normalised by default)
    assert 0.9 < rms(x) / rms(jfk16) < 1.1


@pytest.mark.parametrize("name,codec,rate,channels,video", [
    ("jfk.flac", "flac", 16000, 1, False),
    ("jfk.opus", "opus", 48000, 1, False),
    ("jfk.m4a", "aac", 16000, 1, False),
    ("jfk_6ch_48k.wav", "pcm_s16le", 48000, 6, False),
    ("jfk_video.mp4", "aac", 16000, 1, True),
    ("jfk_video.mkv", "flac", 16000, 1, True),
])
def test_probe_reports_the_audio_stream(media, name, codec, rate, channels, video):
    info = probe(media / name)
    assert isinstance(info, AudioInfo)
    assert (info.codec, info.sample_rate, info.channels, info.has_video) == (codec, rate, channels, video)
    assert info.duration_s == pytest.approx(JFK_SECONDS, abs=0.1)


def test_truncated_mp3_decodes_what_is_there(media, jfk16):
    x = load_audio(media / "truncated.mp3")
    assert 4.5 < duration_s(x) < 6.5  # half the bytes of an 11 s CBR mp3
    assert best_corr(x, jfk16[: len(x)]) > 0.98


@pytest.mark.parametrize("name", ["lying_big.wav", "lying_ffff.wav", "lying_zero.wav"])
def test_wav_header_claiming_too_much_data_reads_what_is_there(media, jfk16, name):
    # ffmpeg clamps the data size to the file, so the probe does not report a huge length
    assert probe(media / name).duration_s == pytest.approx(JFK_SECONDS, abs=0.1)
    x = load_audio(media / name)
    assert len(x) == len(jfk16)
    np.testing.assert_allclose(x, jfk16, atol=1e-6)


def test_wav_header_claiming_less_data_is_believed(media, jfk16):
    x = load_audio(media / "lying_short.wav")
    assert duration_s(x) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(x, jfk16[: len(x)], atol=1e-6)


def test_odd_file_names_are_taken_literally(tmp_path, media):
    # a name ffmpeg could read as an option or a protocol ("concat:", "-...")
    weird = tmp_path / "-concat:a|b.flac"
    shutil.copy(media / "jfk.flac", weird)
    assert duration_s(load_audio(weird)) == pytest.approx(JFK_SECONDS, abs=0.01)


def test_path_given_as_str(media):
    assert len(load_audio(str(media / "jfk.flac"))) == len(load_audio(media / "jfk.flac"))


# --------------------------------------------------------------------------------------
# files that must be refused, with a plain-language message
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,exc,words", [
    ("text.wav", NotAudioError, "could not be read"),
    ("image.png", NotAudioError, "image"),
    ("silent_video.mp4", NoAudioStreamError, "no audio track"),
    ("empty.wav", EmptyAudioError, "empty"),
    ("does_not_exist.wav", EmptyAudioError, "could not be found"),
])
def test_bad_files_raise_specific_errors(media, name, exc, words):
    for fn in (probe, load_audio):
        with pytest.raises(exc) as e:
            fn(media / name)
        assert isinstance(e.value, AudioError) and isinstance(e.value, ArenaError)
        assert words in assert_plain_message(e)


def test_playlist_cannot_make_ffmpeg_fetch_urls(tmp_path):
    """An uploaded HLS playlist must not turn the server into an HTTP client."""
    p = tmp_path / "playlist.wav"
    p.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n")
    with pytest.raises(NotAudioError) as e:
        load_audio(p)
    assert_plain_message(e)


def test_folder_is_not_audio(tmp_path):
    with pytest.raises(NotAudioError) as e:
        load_audio(tmp_path)
    assert_plain_message(e)


def test_ffmpeg_diagnostics_go_to_the_log_not_the_message(media, caplog):
    with caplog.at_level("WARNING", logger="core.audio"), pytest.raises(NotAudioError) as e:
        load_audio(media / "text.wav")
    assert "Invalid data" in caplog.text
    assert "Invalid data" not in str(e.value)


# --------------------------------------------------------------------------------------
# length cap and timeout
# --------------------------------------------------------------------------------------


def test_cap_is_checked_from_the_probe(media):
    with pytest.raises(AudioTooLongError) as e:
        load_audio(media / "jfk.flac", max_seconds=5)
    msg = assert_plain_message(e)
    assert "11 s" in msg and "5 s" in msg


def test_cap_allows_exact_length_despite_codec_padding(media):
    assert duration_s(load_audio(media / "jfk.m4a", max_seconds=11)) == pytest.approx(11, abs=0.1)


def test_three_hour_file_is_refused_before_decoding(three_hours):
    assert probe(three_hours).duration_s == pytest.approx(10800, abs=1)
    t = time.monotonic()
    with pytest.raises(AudioTooLongError) as e:
        load_audio(three_hours)
    assert time.monotonic() - t < 2.0  # decoding 3 h would take far longer
    msg = assert_plain_message(e)
    assert "3 h" in msg and "60 min" in msg
    assert DEFAULT_MAX_SECONDS == 3600


def test_cap_without_container_duration_stops_decoding(media):
    assert probe(media / "no_duration.webm").duration_s is None
    assert duration_s(load_audio(media / "no_duration.webm")) == pytest.approx(JFK_SECONDS, abs=0.1)
    with pytest.raises(AudioTooLongError) as e:
        load_audio(media / "no_duration.webm", max_seconds=5)
    assert "longer than the 5 s limit" in assert_plain_message(e)


def test_decode_timeout_kills_ffmpeg(media, tmp_path, monkeypatch):
    """A decoder that hangs is killed at the deadline, not waited for."""
    pid_file = tmp_path / "pid"
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text(f"#!/bin/sh\necho $$ > '{pid_file}'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(audio, "FFMPEG", str(fake))
    t = time.monotonic()
    with pytest.raises(DecodeTimeoutError) as e:
        load_audio(media / "jfk.flac", timeout_s=1.0)
    assert time.monotonic() - t < 5
    assert "too long" in assert_plain_message(e)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_ffmpeg_is_an_audio_error(media, monkeypatch):
    monkeypatch.setattr(audio, "FFPROBE", "/nonexistent/ffprobe")
    with pytest.raises(AudioError) as e:
        probe(media / "jfk.flac")
    assert "ffmpeg" in assert_plain_message(e)


# --------------------------------------------------------------------------------------
# in-memory arrays (Gradio microphone / numpy audio)
# --------------------------------------------------------------------------------------


def test_int16_stereo_48k_gradio_layout(media, jfk16):
    x48, sr = read_wav(media / "jfk_48k.wav")
    assert sr == 48000
    stereo = np.repeat(x48, 2, axis=1)  # (N, 2) int16, as Gradio gives it
    y = to_mono_16k(stereo, 48000)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    assert abs(len(y) - len(jfk16)) <= 2
    assert best_corr(y, jfk16, max_lag=4) > 0.98
    assert rms(y) / rms(jfk16) == pytest.approx(1.0, abs=0.05)


def test_channels_first_is_accepted(media, jfk16):
    x48, _ = read_wav(media / "jfk_48k.wav")
    y = to_mono_16k(np.repeat(x48, 2, axis=1).T, 48000)  # (2, N)
    assert abs(len(y) - len(jfk16)) <= 2 and best_corr(y, jfk16, max_lag=4) > 0.98


def test_int32_mono_16k_is_scaled_exactly(jfk16):
    x = (np.round(jfk16 * 32768).astype(np.int32) << 16)
    np.testing.assert_allclose(to_mono_16k(x, 16000), jfk16, atol=1e-7)


def test_float64_8k_is_upsampled(media, jfk16):
    x8, sr = read_wav(media / "jfk_8k_s16.wav")
    y = to_mono_16k(x8[:, 0].astype(np.float64) / 32768.0, sr)
    assert len(y) == len(jfk16)
    assert best_corr(y, jfk16, max_lag=4) > 0.95


def test_uint8_is_centred(jfk16):
    x = np.clip(np.round(jfk16 * 128 + 128), 0, 255).astype(np.uint8)
    y = to_mono_16k(x, 16000)
    assert abs(float(y.mean())) < 0.01
    assert best_corr(y, jfk16, max_lag=0) > 0.95


def test_44k1_stereo_uses_numpy_polyphase(media, jfk16):
    x, sr = read_wav(media / "jfk_44k1_stereo.wav")
    y = to_mono_16k(x, sr)
    assert abs(len(y) - len(jfk16)) <= 2 and best_corr(y, jfk16, max_lag=4) > 0.98


def test_odd_rate_and_long_arrays_go_through_ffmpeg(jfk16, monkeypatch):
    calls = []
    real = audio._resample_ffmpeg
    monkeypatch.setattr(audio, "_resample_ffmpeg", lambda x, sr: calls.append(sr) or real(x, sr))
    y = to_mono_16k(jfk16, 16001)  # gcd 1: ratio too awkward for the numpy filter
    assert calls == [16001]
    assert abs(len(y) - len(jfk16) * 16000 / 16001) <= 2
    # the two resamplers agree (numpy forced onto the 16000/16001 ratio it normally declines)
    assert best_corr(y, audio._resample_poly(jfk16, 16000, 16001), max_lag=4) > 0.999
    monkeypatch.setattr(audio, "_RESAMPLE_MAX_NUMPY_S", 1.0)
    y = to_mono_16k(np.repeat(jfk16, 3), 48000)  # crude 48k; only the route is checked
    assert calls == [16001, 48000] and abs(len(y) - len(jfk16)) <= 2


def test_resampler_keeps_speech_band_and_rejects_aliases():
    t = np.arange(48000) / 48000
    for freq, lo, hi in [(1000, 0.70, 0.71), (6000, 0.69, 0.72), (12000, 0.0, 0.005)]:
        y = to_mono_16k(np.sin(2 * np.pi * freq * t).astype(np.float32), 48000)
        assert lo <= rms(y[100:-100]) <= hi, (freq, rms(y[100:-100]))


def test_streaming_chunks_are_fast():
    chunk = (np.random.default_rng(0).standard_normal((24000, 2)) * 3000).astype(np.int16)  # 0.5 s
    to_mono_16k(chunk, 48000)
    t = time.perf_counter()
    for _ in range(10):
        y = to_mono_16k(chunk, 48000)
    assert len(y) == 8000
    assert (time.perf_counter() - t) / 10 < 0.05  # typically ~2 ms


@pytest.mark.parametrize("n,sr,expected", [(1, 48000, 1), (2, 8000, 4), (3, 44100, 2), (5, 16000, 5)])
def test_tiny_arrays(n, sr, expected):
    assert len(to_mono_16k(np.full(n, 0.1, np.float32), sr)) == expected


def test_16k_float32_returns_a_copy(jfk16):
    y = to_mono_16k(jfk16, 16000)
    assert y is not jfk16 and not np.shares_memory(y, jfk16)
    np.testing.assert_array_equal(y, jfk16)


def test_non_finite_samples_are_zeroed():
    y = to_mono_16k(np.array([0.5, np.nan, np.inf, -np.inf], np.float32), 16000)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("arr", [np.zeros(0, np.int16), np.zeros((0, 2), np.float32), []])
def test_empty_array_is_refused(arr):
    with pytest.raises(EmptyAudioError) as e:
        to_mono_16k(arr, 48000)
    assert_plain_message(e)


@pytest.mark.parametrize("arr,sr", [
    (np.zeros(10, np.float32), 0),
    (np.zeros(10, np.float32), 44100.5),
    (np.zeros((2, 3, 4), np.float32), 16000),
    (np.array(["a", "b"]), 16000),
    (np.zeros(10, np.complex64), 16000),
])
def test_unusable_arrays_are_refused(arr, sr):
    with pytest.raises(NotAudioError) as e:
        to_mono_16k(arr, sr)
    assert_plain_message(e)


def test_module_stays_light():
    """No torch/gradio: the UI and the CLI import this before any model is loaded."""
    code = ("import sys, core.audio; "
            "bad = [m for m in ('torch', 'gradio', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   cwd=Path(__file__).parents[1])
