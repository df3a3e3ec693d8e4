"""Long audio that drops nothing, and no loops or invented sentences: windows cut at pauses, the early-stop
repair, Whisper's safeguards and the loop guard, in every mode, with speculative decoding still the
teacher's output."""

import re
from types import SimpleNamespace

import numpy as np
import torch
import pytest

from conftest import AUDIO, manifest
from core.audio import SAMPLE_RATE, load_audio
from core.decoding import Decoded, LoopGuard
from core.engine import Options
from core.gate import best_attempt, is_no_speech, needs_fallback
from core.metrics import normalize, repetition_rate, wer
from core.transcribe import transcribe
from core.vad import Region, speech_regions
from core.windows import Features, Window, halves, plan, split_segments

BY_ID = {c["id"]: c for c in manifest()}
GRID_CHUNK_S, GRID_STRIDE_S = 20.0, 20.0 / 6  # the fixed grid the chunked algorithm used before


def clip(name: str) -> tuple[np.ndarray, str]:
    return load_audio(AUDIO / BY_ID[name]["file"]), BY_ID[name]["text"]


def sentences(text: str) -> list[str]:
    return [normalize(s) for s in re.split(r"[.!?]+", text) if normalize(s)]


def assert_no_repeated_sentence(text: str) -> None:
    said = sentences(text)
    assert all(a != b for a, b in zip(said, said[1:])), text


@pytest.fixture(scope="module")
def mid_word_clip():
    """Real speech joined so that a word is being said where the old fixed 20 s grid started its second chunk
    (13.3 s): JFK, a pause, then JFK again from 12.3 s, so "so, my" straddles the grid's cut."""
    jfk, jfk_text = clip("jfk")
    echo, echo_text = clip("asterisk_demo-echotest_8k")
    goforward, go_text = clip("goforward")
    austen, austen_text = clip("sense_and_sensibility_01_austen_64kb-0930")
    lead_gap = np.zeros(int(12.3 * SAMPLE_RATE) - len(jfk), np.float32)
    gap = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([jfk, lead_gap, jfk, gap, echo, gap, goforward, gap, austen])
    return audio, " ".join([jfk_text, jfk_text, echo_text, go_text, austen_text])


# ---- planning ----------------------------------------------------------------------------------


def test_vad_finds_the_pauses_of_real_speech():
    audio, _ = clip("jfk")
    regions = speech_regions(audio)
    assert 3 <= len(regions) <= 8  # JFK's phrases
    assert regions[0].start < 0.5 * SAMPLE_RATE and regions[-1].end > 10.5 * SAMPLE_RATE
    assert all(a.end <= b.start for a, b in zip(regions, regions[1:]))
    assert all(r.start <= r.voiced_start < r.voiced_end <= r.end for r in regions)
    assert speech_regions(load_audio(AUDIO / "silence_5s.wav")) == []


def test_windows_are_cut_between_regions_and_never_longer_than_the_chunk():
    regions = [Region(s, s + 5 * SAMPLE_RATE, s + 1000, s + 5 * SAMPLE_RATE - 1000) for s in
               range(0, 60 * SAMPLE_RATE, 6 * SAMPLE_RATE)]
    windows = plan(regions, 20.0)
    assert [len(w.regions) for w in windows] == [4, 4, 2]
    assert all(w.seconds <= 20.0 for w in windows)
    assert [r for w in windows for r in w.regions] == regions
    one = plan(regions, float("inf"))
    assert len(one) == 1 and one[0].seconds == pytest.approx(50.0)


def test_window_time_maps_back_to_the_clip_across_left_out_silences():
    window = Window((Region(16000, 48000, 16000, 48000), Region(160000, 192000, 160000, 192000)))
    assert window.seconds == pytest.approx(4.0)
    assert window.clip_time(0.0) == pytest.approx(1.0)
    assert window.clip_time(1.5) == pytest.approx(2.5)
    assert window.clip_time(2.0, end=True) == pytest.approx(3.0)  # the end of the first region ...
    assert window.clip_time(2.0) == pytest.approx(10.0)  # ... or the start of the second
    assert window.clip_time(3.0) == pytest.approx(11.0)
    first, second = halves(window)
    assert first.regions == window.regions[:1] and second.regions == window.regions[1:]
    assert halves(Window(window.regions[:1])) is None


def test_split_segments_follows_whispers_seek_rule():
    tb = 50364
    # two closed segments, then an unfinished one: seek to the start of the unfinished one
    tokens = [tb, 1, 2, tb + 100, tb + 100, 3, tb + 200, tb + 200, 4, 5]
    pieces, advance = split_segments(tokens, tb, 0, 3000)
    assert [(p.start_s, p.end_s) for p in pieces] == [(0.0, 2.0), (2.0, 4.0)]
    assert advance == 400
    # a single timestamp at the end: no speech after it, the whole segment is done
    pieces, advance = split_segments([tb, 1, tb + 100, tb + 100, 2, tb + 150], tb, 500, 3000)
    assert advance == 3000 and pieces[-1].end_s == pytest.approx(5.0 + 3.0)


def test_vad_cuts_every_chunk_in_a_pause(mid_word_clip):
    audio, _ = mid_word_clip
    regions = speech_regions(audio, max_region_s=20.0)
    windows = plan(regions, 20.0)
    assert len(windows) >= 3 and all(w.seconds <= 20.0 for w in windows)
    for a, b in zip(windows, windows[1:]):
        # the cut lies between two regions: after the last voiced sample of one, before the first of the next
        assert a.regions[-1].voiced_end <= b.regions[0].voiced_start
    grid_cut = int((GRID_CHUNK_S - 2 * GRID_STRIDE_S) * SAMPLE_RATE)  # where the old grid's second chunk began
    assert any(r.voiced_start < grid_cut < r.voiced_end for r in regions)  # the old grid cut a word there


@pytest.mark.slow
def test_a_chunk_boundary_mid_word_loses_no_sentence(arena, mid_word_clip):
    """Chunked decoding of real speech whose old fixed-grid cut falls mid-word: within 1 point of the
    sequential algorithm's WER, every mode's speculative decoding identical to the teacher."""
    audio, text = mid_word_clip
    chunked = {r.mode: r for r in arena.transcribe(audio, Options(long_form="chunked"))}
    (sequential,) = arena.transcribe(audio, Options(modes=("teacher",), long_form="sequential"))
    assert wer(text, chunked["teacher"].text) <= wer(text, sequential.text) + 0.01
    assert "fellow americans" in normalize(chunked["teacher"].text)
    assert chunked["speculative"].identical_to_teacher is True


# ---- the early-stop repair ----------------------------------------------------------------------


class StubRunner:
    """A decoder that stops early on any window of more than one region (the failure the repair catches)."""

    batch_size, timestamp_begin = 8, 50364

    def __init__(self):
        self.decoded = []

    def encode(self, jobs):
        return np.zeros((len(jobs), 1))

    def decode(self, states, task, jobs):
        out = []
        for window, _, _ in jobs:
            words = 1 if len(window.regions) > 1 else int(3 * window.voiced_s())
            self.decoded.append(window)
            out.append(Decoded(list(range(1, words + 1)), sum_logprob=-0.1, logprob_count=words + 1))
        return out

    def text(self, tokens):
        return " ".join(f"w{t}" for t in tokens)


def test_a_window_that_stops_early_is_decoded_again_in_halves():
    regions = (Region(0, 6 * SAMPLE_RATE, 0, 6 * SAMPLE_RATE), Region(7 * SAMPLE_RATE, 13 * SAMPLE_RATE,
                                                                      7 * SAMPLE_RATE, 13 * SAMPLE_RATE))
    window = Window(regions)
    features = lambda w: Features(np.zeros((80, 3000)), 1200)  # noqa: E731
    runner = StubRunner()
    out = transcribe([window], features, runner, lambda ts: (1,), False)
    assert [t.window for t in out] == list(halves(window)) and all(t.repaired for t in out)
    assert sum(len(t.kept) for t in out) == 2 * 18
    # a window that says enough is left alone
    runner = StubRunner()
    single = Window(regions[:1])
    out = transcribe([single], features, runner, lambda ts: (1,), False)
    assert len(out) == 1 and not out[0].repaired and runner.decoded == [single]


class StopsAtFirstPause:
    """A timestamped decoder that, from the start of a window, says its first 4 s and then "no more speech"
    (text, then a single final timestamp), and from any later seek says the rest, to the segment's end."""

    batch_size, timestamp_begin = 8, 50364

    def __init__(self):
        self.seeks = []

    def encode(self, jobs):
        return np.zeros((len(jobs), 1))

    def decode(self, states, task, jobs):
        out = []
        for _, seek, _ in jobs:
            self.seeks.append(seek)
            stamp = self.timestamp_begin + (200 if seek == 0 else (1000 - seek) // 2)  # 4 s, or the end
            tokens = [self.timestamp_begin, 7 if seek == 0 else 9, stamp]
            out.append(Decoded(tokens, sum_logprob=-0.1, logprob_count=len(tokens) + 1))
        return out

    def text(self, tokens):
        return " ".join(f"w{t}" for t in tokens if t < self.timestamp_begin)


def test_a_timestamped_decode_that_stops_early_in_a_short_segment_resumes():
    """A 10 s window (less than one 30 s segment) voiced to its end: a decode that ends at 4 s is resumed
    there, not taken as the end of the window's speech."""
    window = Window((Region(0, 10 * SAMPLE_RATE, 0, 10 * SAMPLE_RATE),))
    features = lambda w: Features(torch.zeros((80, 1000)), 1000)  # noqa: E731
    runner = StopsAtFirstPause()
    (out,) = transcribe([window], features, runner, lambda ts: (1,), True)
    assert runner.seeks == [0, 400] and out.kept.count(9) == 1 and 7 in out.kept


# ---- silence, noise and loops, in every mode -----------------------------------------------------


@pytest.fixture(scope="module")
def speech_then_silence():
    jfk, text = clip("jfk")
    silence = np.zeros(25 * SAMPLE_RATE, np.float32)
    return np.concatenate([jfk, silence]), text, len(jfk) / SAMPLE_RATE


@pytest.fixture(scope="module")
def speech_with_noise():
    """JFK, 12 s of white noise at -30 dBFS, then the Asterisk prompt: 45 s of real speech around noise."""
    jfk, jfk_text = clip("jfk")
    echo, echo_text = clip("asterisk_demo-echotest_8k")
    noise = (np.random.default_rng(0).standard_normal(12 * SAMPLE_RATE) * 10 ** (-30 / 20)).astype(np.float32)
    noise_from = len(jfk) / SAMPLE_RATE
    return np.concatenate([jfk, noise, echo]), f"{jfk_text} {echo_text}", (noise_from, noise_from + 12.0)


@pytest.mark.slow
@pytest.mark.parametrize("long_form", ["chunked", "sequential"])
def test_speech_then_silence_gives_no_text_in_the_silence(arena, speech_then_silence, long_form):
    audio, text, speech_ends = speech_then_silence
    results = {r.mode: r for r in arena.transcribe(audio, Options(long_form=long_form, timestamps=True))}
    for mode, r in results.items():
        assert all(s.start < speech_ends for s in r.segments), (mode, r.segments)
        assert_no_repeated_sentence(r.text)
        assert repetition_rate([r.text]) <= repetition_rate([text]) + 0.05, (mode, r.text)
        assert wer(text, r.text) <= (0.5 if mode == "student" else 0.05), (mode, r.text)
    assert results["speculative"].identical_to_teacher is True


@pytest.mark.slow
def test_speech_with_noise_gives_no_text_in_the_noise(arena, speech_with_noise):
    audio, text, (noise_from, noise_to) = speech_with_noise
    results = {r.mode: r for r in arena.transcribe(audio, Options(timestamps=True))}
    for mode, r in results.items():
        inside = [s for s in r.segments if s.start >= noise_from + 0.5 and s.end <= noise_to - 0.5]
        assert inside == [], (mode, inside)
        assert_no_repeated_sentence(r.text)
        assert repetition_rate([r.text]) <= repetition_rate([text]) + 0.05, (mode, r.text)
    assert wer(text, results["teacher"].text) <= 0.05
    assert results["speculative"].identical_to_teacher is True


def test_loop_guard_ends_a_repeated_block_and_keeps_it_once():
    guard = LoopGuard(eot=50257)
    sentence = [400, 370, 452, 7177, 6280, 13]  # 6 tokens: twice in a row is speech, three times a loop
    tokens = [1, 2] + sentence * 2
    assert guard.cut(tokens) is None
    tokens += sentence
    assert guard.cut(tokens) == 2 + len(sentence)
    no = [642, 11]  # "no," three times is speech; six times is a loop
    assert guard.cut(no * 3) is None and guard.cut(no * 6) == 2
    assert guard.cut([7, 50400, 7, 50500, 7]) is None  # timestamps between are ignored, 3 copies of 1 token is fine
    assert guard.cut([50400] * 30) is None  # timestamp tokens alone are not text


def test_the_safeguards_decide_from_what_decoding_computed():
    assert is_no_speech(0.9, -1.5, "I'm going to put the oil on the pan.") and is_no_speech(0.9, -0.2, "")
    assert not is_no_speech(0.9, -0.2, "And so, my fellow Americans")  # a confident transcript stays
    assert not is_no_speech(0.9, -0.2, "thank you thank you")  # a loop is the fallback's, not silence
    assert not is_no_speech(0.4, -3.0, "whatever")  # the teacher heard speech
    assert needs_fallback(-1.2, "hmm", False) and needs_fallback(-0.1, "a b", True)
    assert needs_fallback(-0.1, "na " * 100, False) and not needs_fallback(-0.3, "Go forward ten meters.", False)
    # every temperature failed: keep the most likely decode that is not a loop, else the first
    assert best_attempt([(-0.5, "x", True), (-1.5, "y", False), (-1.2, "z", False)]) == 2
    assert best_attempt([(-0.5, "x", True), (-0.4, "y", True)]) == 0


def test_a_live_hypothesis_the_safeguards_doubt_is_never_committed():
    from core.streaming import LiveTranscriber

    class Doubtful:
        multilingual = False

        def __init__(self):
            self.suspect = True

        def transcribe(self, audio, options):
            assert options.fallback is False and options.vad is False
            window = SimpleNamespace(suspect=self.suspect)
            return [SimpleNamespace(text="the the the invented words", windows=[window])]

    arena = Doubtful()
    live = LiveTranscriber(arena, "student", clock=lambda: 0.0)
    speech, _ = clip("jfk")
    for start in range(0, 6 * SAMPLE_RATE, SAMPLE_RATE // 2):
        state = live.update(speech[start : start + SAMPLE_RATE // 2], SAMPLE_RATE)
    assert state.committed_text == "" and state.decodes >= 2
    arena.suspect = False
    for start in range(6 * SAMPLE_RATE, 9 * SAMPLE_RATE, SAMPLE_RATE // 2):
        state = live.update(speech[start : start + SAMPLE_RATE // 2], SAMPLE_RATE)
    assert "invented" in state.committed_text  # the same words, once trusted, are committed
