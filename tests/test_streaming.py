"""Live transcription (core/streaming.py): LocalAgreement-2 on one rolling buffer.

The acceptance tests stream real speech, converted to what a browser sends (48 kHz int16, stereo),
into the real models on a clock that ticks per reading (no sleeping, no dependence on the machine's
speed: the algorithm is under test, not the clock): the teacher on jfk and 50 s of clips, the student
(the live default) on the 22 s prompt spoken without a long pause. A tone-burst "model" with a fake clock covers trimming, the buffer cap,
the pace, queued chunks and the session cap in milliseconds.
"""

import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import AUDIO, TWO_WINDOWS, joined_speech
from core.audio import FFMPEG, SAMPLE_RATE, load_audio
from core.engine import Options
from core.errors import ArenaError, AudioTooLongError
from core.metrics import wer
from core.live.agreement import covered, through
from core.live.buffer import BUFFER_CAP_S
from core.streaming import LiveSession, LiveTranscriber, StreamTooLongError, percentile

BROWSER_RATE = 48000


def browser_pcm(audio: np.ndarray) -> np.ndarray:
    """16 kHz float -> 48 kHz int16 stereo (N, 2), as the microphone component delivers it."""
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:",
           "-ac", "2", "-ar", str(BROWSER_RATE), "-f", "s16le", "pipe:"]
    out = subprocess.run(cmd, input=audio.astype("<f4").tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i2").reshape(-1, 2)


def stream(transcriber: LiveTranscriber, pcm: np.ndarray, chunk_s: float, rate: int = BROWSER_RATE):
    """Feed chunks back to back; return the final text and every committed text seen on the way."""
    committed = []
    step = int(chunk_s * rate)
    for start in range(0, len(pcm), step):
        committed.append(transcriber.update(pcm[start : start + step], rate).committed_text)
    final = transcriber.finish().committed_text
    return final, committed + [final]


class Ticks:
    """A clock that moves 1 ms per reading: the real models decode as on an infinitely fast machine, so where
    updates fall (the pace reads compute time) never depends on how busy the cores are."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


def assert_never_revised(committed: list[str]):
    for before, after in zip(committed, committed[1:]):
        assert after.startswith(before), (before, after)


# ---- real speech, real teacher ---------------------------------------------------------------------


def test_jfk_streamed_matches_offline_teacher(arena):
    audio = load_audio(AUDIO / "jfk.wav")
    live = LiveTranscriber(arena, "teacher", clock=Ticks())
    final, committed = stream(live, browser_pcm(audio), chunk_s=1.0)
    (offline,) = arena.transcribe(live.recording(), Options(modes=("teacher",)))

    assert wer(offline.text, final) <= 0.10, (offline.text, final)
    assert_never_revised(committed)
    state = live.state
    assert state.finished and state.tentative_text == "" and state.committed_text == final
    assert state.decodes >= 2 and state.commit_latencies and state.rtfx > 0 and state.last_update_s > 0
    assert abs(len(live.recording()) / SAMPLE_RATE - len(audio) / SAMPLE_RATE) < 0.05


def test_long_speech_stays_within_the_buffer_cap(arena):
    """Over 1.5x the buffer cap of real clips joined with 0.5 s gaps, 3 s chunks."""
    audio, _ = joined_speech([*TWO_WINDOWS, "jfk_white_snr10"])
    assert len(audio) > 1.5 * BUFFER_CAP_S * SAMPLE_RATE

    live = LiveTranscriber(arena, "teacher", clock=Ticks())
    final, committed = stream(live, browser_pcm(audio), chunk_s=3.0)
    (offline,) = arena.transcribe(audio, Options(modes=("teacher",)))

    assert wer(offline.text, final) <= 0.10, (offline.text, final)
    assert_never_revised(committed)
    assert live.state.max_buffer_s <= live.buffer.cap_s


def test_student_streamed_matches_offline_student(arena):
    """The default live mode on 22 s without a 0.6 s pause: committed through phrase pauses and agreement."""
    audio = load_audio(AUDIO / "asterisk_demo-echotest_8k.wav")
    live = LiveTranscriber(arena, clock=Ticks())
    assert live.mode == "student"
    final, committed = stream(live, browser_pcm(audio), chunk_s=0.5)
    (offline,) = arena.transcribe(live.recording(), Options(modes=("student",)))

    assert wer(offline.text, final) <= 0.10, (offline.text, final)
    assert_never_revised(committed)
    assert live.state.max_buffer_s <= live.buffer.trim_s + 2.0  # trimmed (or flushed at a phrase pause), never near the cap


def test_silence_commits_nothing_and_never_reaches_the_model(arena):
    silence = load_audio(AUDIO / "silence_5s.wav")
    live = LiveTranscriber(arena, "teacher", clock=Ticks())
    final, committed = stream(live, browser_pcm(silence), chunk_s=0.5)
    assert final == "" and set(committed) == {""}
    assert live.state.decodes == 0 and live.state.max_buffer_s == 0


# ---- the algorithm on a tone-burst "model" (milliseconds) --------------------------------------------

WORD_S, GAP_S = 0.3, 0.1


def tone_speech(n_words: int, pause_every: int | None = None, pause_s: float = 1.0) -> np.ndarray:
    """Word i is a 0.3 s tone at 300 + 25 i Hz; words are 0.1 s apart, with longer pauses if asked."""
    rng = np.random.default_rng(0)
    t = np.arange(int(WORD_S * SAMPLE_RATE)) / SAMPLE_RATE
    parts = []
    for i in range(n_words):
        parts.append((0.3 * np.sin(2 * np.pi * (300 + 25 * i) * t)).astype(np.float32))
        gap = pause_s if pause_every and (i + 1) % pause_every == 0 else GAP_S
        parts.append((0.001 * rng.standard_normal(int(gap * SAMPLE_RATE))).astype(np.float32))
    return np.concatenate(parts)


def words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ToneArena:
    """'Transcribes' each complete tone burst as its word, a burst cut by the buffer end as 'wo'.

    Each call advances the fake clock by `cost(seconds of audio)`: compute time without computing.
    """

    def __init__(self, clock: Clock, cost=lambda s: 0.05 + 0.01 * s, flicker: bool = False):
        self.clock, self.cost, self.flicker, self.calls = clock, cost, flicker, 0
        self.options = []  # per call

    def transcribe(self, audio, options):
        self.calls += 1
        self.options.append(options)
        self.clock.t += self.cost(len(audio) / SAMPLE_RATE)
        frame = 160
        n = len(audio) // frame
        loud = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) > 1e-3
        out, k = [], 0
        while k < n:
            if not loud[k]:
                k += 1
                continue
            j = k
            while j < n and loud[j]:
                j += 1
            burst = audio[k * frame : j * frame]
            if j >= n - 1:
                out.append("wo")
            elif k > 0 or len(burst) > 0.8 * WORD_S * SAMPLE_RATE:
                hz = np.argmax(np.abs(np.fft.rfft(burst))) * SAMPLE_RATE / len(burst)
                out.append(f"word{round((hz - 300) / 25)}")
            k = j
        if self.flicker:  # a model that never says the same thing twice
            out = [f"{w}{self.calls % 2}" for w in out]
        prefix = options.prefix.split()  # forced: the first words are the prefix, whatever was heard
        return [SimpleNamespace(text=" ".join(prefix + out[len(prefix) :]), windows=[])]


def tone_stream(audio, chunk_s=0.5, cost=lambda s: 0.05 + 0.01 * s, flicker=False, **kwargs):
    """Real-time feed on the fake clock: chunk k arrives at (k + 1) x chunk_s, or when the last update ends."""
    clock = Clock()
    live = LiveTranscriber(ToneArena(clock, cost, flicker), "teacher", clock=clock, **kwargs)
    committed, step = [], int(chunk_s * SAMPLE_RATE)
    for start in range(0, len(audio), step):
        clock.t = max(clock.t, (start + step) / SAMPLE_RATE)
        committed.append(live.update(audio[start : start + step], SAMPLE_RATE).committed_text)
    committed.append(live.finish().committed_text)
    return live, committed


def test_continuous_speech_is_trimmed_and_committed_exactly():
    live, committed = tone_stream(tone_speech(150))  # 60 s without a pause
    assert committed[-1] == words(150)
    assert_never_revised(committed)
    state = live.state
    assert state.max_buffer_s <= live.buffer.trim_s + 2.0  # trimmed, never near the cap
    assert not state.falling_behind and state.message == ""
    assert max(state.commit_latencies) < 1.5  # two 0.5 s updates plus compute


@pytest.mark.parametrize("chunk_s", [0.1, 0.5, 2.0])  # 0.1 s: what the browser sends
def test_pauses_end_utterances(chunk_s):
    live, committed = tone_stream(tone_speech(40, pause_every=6), chunk_s=chunk_s)
    assert committed[-1] == words(40)
    assert_never_revised(committed)
    # each utterance is flushed at its pause, seen at the next update (per chunk, at most every 0.5 s)
    assert live.state.max_buffer_s < 3.5 + max(chunk_s, live.pace.min_every_s)


def test_buffer_never_exceeds_its_cap_even_when_nothing_agrees():
    live, committed = tone_stream(tone_speech(150), flicker=True)
    assert_never_revised(committed)
    assert live.state.max_buffer_s <= live.buffer.cap_s
    assert len(committed[-1].split()) >= 140  # forced cuts commit what they drop


def test_slow_device_is_flagged_and_decodes_less_often():
    live, committed = tone_stream(tone_speech(60), cost=lambda s: 1.0 + 0.05 * s)
    state = live.state
    assert state.falling_behind and "updates every" in state.message
    assert state.decode_every_s > live.pace.min_every_s
    assert committed[-1] == words(60)
    assert state.decodes < len(committed) / 2  # decodes skipped instead of queueing


def test_committed_words_are_the_prefix_and_the_no_speech_rule_is_judged_once_per_utterance():
    live, committed = tone_stream(tone_speech(40, pause_every=6))
    assert committed[-1] == words(40)
    calls = live.arena.options
    assert any(o.prefix for o in calls) and all(committed[-1].find(o.prefix) >= 0 for o in calls)
    judged = [o for o in calls if o.no_speech_rule]
    assert 7 <= len(judged) < len(calls) / 2  # 7 utterances: the first decode of each one is judged


def drained_stream(audio, cost, chunk_s=0.5, lost=()):
    """Real-time feed on the fake clock; the caller inserts every chunk that has arrived, then updates
    once (as core.bench_stream does). Chunks whose index is in `lost` never arrive."""
    clock = Clock()
    live = LiveTranscriber(ToneArena(clock, cost), "teacher", clock=clock)
    step, k, idle = int(chunk_s * SAMPLE_RATE), 0, 0.0  # idle: time waited for audio after the first chunk
    starts = list(range(0, len(audio), step))
    while k < len(starts):
        arrival = (starts[k] + step) / SAMPLE_RATE
        idle += max(0.0, arrival - clock.t) if k else 0.0
        clock.t = max(clock.t, arrival)
        while k < len(starts) and (starts[k] + step) / SAMPLE_RATE <= clock.t:
            if k not in lost:
                live.insert(audio[starts[k] : starts[k] + step], SAMPLE_RATE, arrived_at=(starts[k] + step) / SAMPLE_RATE)
            k += 1
        live.process()
    return live, idle


def test_a_caller_that_drains_the_arrivals_never_waits_for_a_pace():
    """Updates slower than a chunk (0.7 s per 0.5 s chunk) run back to back: no idle time between them."""
    audio = tone_speech(60)  # 24 s without a pause
    live, idle = drained_stream(audio, cost=lambda s: 0.7)
    assert live.state.falling_behind and "updates every 0.7 s" in live.state.message
    assert idle < 0.5  # at most one chunk, while the first utterance opens
    assert live.state.decodes >= 0.9 * len(audio) / SAMPLE_RATE / 0.7


def test_queued_chunks_are_appended_first_so_the_lag_stays_bounded():
    """One call per chunk (the browser's way), updates twice as slow as the chunks: calls that were queued
    behind a slow update only append, so the last chunk is handled within about one update of arriving."""
    audio = tone_speech(150)  # 60 s
    live, committed = tone_stream(audio, cost=lambda s: 1.0)
    end_of_speech = len(audio) / SAMPLE_RATE
    assert committed[-1] == words(150)
    assert live.state.decodes < 0.6 * len(committed)  # about every other chunk (trims add a few)
    assert live.pace.returned_at - end_of_speech < 1.0 + 0.5 + 0.1  # one update + one chunk, not a growing queue


def test_lost_audio_does_not_stall_the_updates():
    """Chunks lost on the way (a browser hiccup) make the audio look late for good; updates go on."""
    audio = tone_speech(50)  # 20 s
    live, _ = drained_stream(audio, cost=lambda s: 0.2, lost=set(range(10, 16)))  # 3 s lost
    assert live.state.decodes > 25  # about one per chunk after the gap too
    assert len(live.state.committed_text.split()) >= 40


class SlowToneArena(ToneArena):
    """Takes real time to decode, as a model does."""

    def transcribe(self, audio, options):
        time.sleep(0.03)
        return super().transcribe(audio, options)


def test_live_session_feeds_without_waiting_and_loses_no_chunk():
    """The browser's way: 0.1 s chunks handed over from another thread while the worker decodes."""
    audio = tone_speech(40, pause_every=6)
    session = LiveSession(LiveTranscriber(SlowToneArena(Clock()), "teacher"))
    waits, step = [], SAMPLE_RATE // 10
    for start in range(0, len(audio), step):
        began = time.perf_counter()
        session.feed(audio[start : start + step], SAMPLE_RATE)
        waits.append(time.perf_counter() - began)
        time.sleep(0.01)  # ten times real time
    state = session.finish()
    assert state.finished and state.committed_text == words(40)
    assert len(session.recording()) == len(audio)
    assert max(waits) < 0.02 and state.decodes > 5  # decodes ran meanwhile, on the worker


def test_live_session_hands_the_workers_error_to_the_caller():
    class Broken(ToneArena):
        def transcribe(self, audio, options):
            raise ArenaError("the models are gone")

    session = LiveSession(LiveTranscriber(Broken(Clock()), "teacher"))
    session.feed(tone_speech(5), SAMPLE_RATE)
    with pytest.raises(ArenaError, match="gone"):
        session.finish()


def test_session_cap_keeps_the_audio_heard_and_says_so():
    clock = Clock()
    live = LiveTranscriber(ToneArena(clock), "teacher", clock=clock, max_session_s=5.0)
    audio = tone_speech(15)  # 6 s
    with pytest.raises(StreamTooLongError) as err:
        for start in range(0, len(audio), SAMPLE_RATE):
            live.update(audio[start : start + SAMPLE_RATE], SAMPLE_RATE)
    assert isinstance(err.value, AudioTooLongError) and "5 s" in str(err.value)
    assert len(live.recording()) == 5 * SAMPLE_RATE
    with pytest.raises(StreamTooLongError):
        live.update(audio[:100], SAMPLE_RATE)
    assert live.finish().committed_text.startswith("word0 word1")
    with pytest.raises(ArenaError):
        live.update(audio[:100], SAMPLE_RATE)


def test_unknown_mode_is_refused():
    with pytest.raises(ArenaError):
        LiveTranscriber(ToneArena(Clock()), "fastest")


def test_alignment_and_percentile():
    committed = "and so my fellow americans ask".split()
    assert covered(committed, "and so my fellow americans ask not what".split()) == 6
    assert covered(committed, "and so my fellow american ask not".split()) == 6  # one word revised
    assert covered(committed, "and so my fellow".split()) == 4  # the model dropped words this time
    assert covered([], "ask not".split()) == 0
    # a phrase repeated later is not where the committed words end
    assert covered("can do for you".split(), "can do for you ask what you can do for".split()) == 4
    assert percentile([], 95) is None and percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile(range(100), 95) == 94


def test_a_trim_trusts_only_a_decode_that_ends_on_committed_words():
    committed = "the purpose of this test is to give you an audible sense".split()
    assert through(committed, "the purpose of this test".split()) == 5
    assert through(committed, "the purpose of these test".split()) == 5  # one word heard otherwise
    assert through(committed, "the purpose of this test you are country you are country".split()) is None  # a loop
    assert through(committed, "the purpose of this test is".split()) == 6
    assert through([], "the purpose".split()) is None
