"""Word-level timestamps: the alignment maths, the subtitles, and every mode on real speech with known
boundaries (issue 23)."""

import json

import numpy as np
import pytest
import torch

from core.alignment import TimedWord, align, dtw, heads_of, merge_punctuation, split_words
from core.audio import SAMPLE_RATE, load_audio
from core.metrics import loud_span
from core.options import Options
from core.results import Segment, Word
from core.student import student_alignment_heads
from core.subtitles import to_json, to_srt, to_vtt

from conftest import AUDIO, manifest

# clean utterances (no applause or line noise at their ends), joined with pauses longer than the VAD keeps
UTTERANCES = ["sense_and_sensibility_01_austen_64kb-0880", "goforward", "asterisk_demo-echotest_8k",
              "sense_and_sensibility_01_austen_64kb-0930"]
PAUSE_S = 1.5
TOLERANCE_S = 0.3
LOUD_DB = -20  # an utterance's speech: 50 ms frames within 20 dB of its loudest frame


def dtw_reference(cost: np.ndarray) -> tuple[list[int], list[int]]:
    """openai/whisper's dtw_cpu, cell by cell."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1))
    total[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            total[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    return total[n, m]


def path_cost(cost, rows, columns) -> float:
    return float(sum(cost[i, j] for i, j in zip(rows, columns)))


@pytest.mark.parametrize("seed", range(5))
def test_dtw_finds_the_cheapest_monotonic_path(seed):
    cost = np.random.default_rng(seed).random((7, 23))
    rows, columns = dtw(cost)
    assert rows[0] == 0 and columns[0] == 0 and rows[-1] == 6 and columns[-1] == 22
    steps = np.stack([np.diff(rows), np.diff(columns)], 1)
    assert all(tuple(s) in {(0, 1), (1, 0), (1, 1)} for s in steps)  # right, down or diagonal
    assert path_cost(cost, rows, columns) == pytest.approx(dtw_reference(cost), abs=1e-9)


def test_dtw_follows_a_clear_diagonal():
    cost = np.ones((4, 12))
    for i, j in enumerate([1, 4, 7, 10]):
        cost[i, j] = 0
    rows, columns = dtw(cost)
    assert {(0, 1), (1, 4), (2, 7), (3, 10)} <= set(zip(rows.tolist(), columns.tolist()))
    assert path_cost(cost, rows, columns) == pytest.approx(dtw_reference(cost))


def test_words_join_subword_tokens_and_punctuation(arena):
    tokenizer, eot = arena.tokenizer, arena.special.eot
    tokens = tokenizer.encode(' He said "ill-disposed", then left.', add_special_tokens=False)
    words = split_words(tokenizer, tokens, eot)
    assert "".join(w for w, _ in words) == ' He said "ill-disposed", then left.'
    assert sum(len(ids) for _, ids in words) == len(tokens)
    timed = [TimedWord(w, tuple(ids), i, i + 1, 1.0) for i, (w, ids) in enumerate(words)]
    merged = [w.text for w in merge_punctuation(timed)]
    assert merged[:2] == [" He", " said"] and merged[-1] == " left." and "".join(merged) == "".join(w for w, _ in words)
    assert all(not w.strip() in ',."' for w in merged)


def test_align_reads_times_from_the_attention_path():
    # three one-token words attended at frames 10-19, 30-39 and 60-69 of 100; end-of-text from frame 80
    scores = torch.full((1, 5, 100), -10.0)
    for row, (a, b) in enumerate([(10, 20), (30, 40), (60, 70), (80, 100)], start=1):
        scores[0, row, a:b] = 10.0
    words = [(" a", [1]), (" b", [2]), (" c", [3])]
    timed = align(scores, torch.full((5,), 0.5), words, 1, 100)
    starts = [w.start_s for w in timed]
    assert starts == sorted(starts) and [w.text for w in timed] == [" a", " b", " c"]
    assert abs(timed[1].start_s - 0.6) <= 0.1 and abs(timed[2].start_s - 1.2) <= 0.1
    assert all(w.probability == 0.5 for w in timed)


def test_the_student_names_heads_it_has(arena):
    student = arena.models.student
    heads = student.generation_config.alignment_heads
    assert heads and all(layer < student.config.decoder_layers for layer, _ in heads)
    assert heads_of(student) == [tuple(h) for h in heads]
    # the source of the fix: a new student keeps the teacher's heads of the layers it copies, renumbered
    teacher_config = arena.models.teacher.generation_config
    assert student_alignment_heads(teacher_config, [0, 2, 5]) == [[2, h] for l, h in teacher_config.alignment_heads if l == 5]
    assert student_alignment_heads(teacher_config, [0, 1]) is None


def test_word_timestamps_imply_timestamps():
    assert Options(word_timestamps=True).timestamps
    assert not Options().word_timestamps


def test_vtt_tags_words_and_srt_keeps_one_cue_per_segment():
    words = (Word(" Ask", 1.0, 1.3, 0.9), Word(" not.", 1.3, 2.0, 0.8), Word(" Now", 2.5, 2.9, 0.7))
    segments = [Segment(1.0, 2.9, "Ask not. Now", words), Segment(3.0, 4.0, "Plain.", None)]
    vtt = to_vtt(segments)
    assert "00:01.000 --> 00:02.900\nAsk<00:01.300> not.<00:02.500> Now\n" in vtt
    assert "00:03.000 --> 00:04.000\nPlain.\n" in vtt
    assert to_srt(segments).count("-->") == 2 and "<" not in to_srt(segments)
    data = json.loads(to_json(type("R", (), {"mode": "teacher", "text": "x", "segments": segments})()))
    assert data["segments"][0]["words"][1] == {"text": " not.", "start": 1.3, "end": 2.0, "probability": 0.8}
    assert "words" not in data["segments"][1]


@pytest.fixture(scope="module")
def joined():
    """The utterances joined with PAUSE_S of silence, and each one's true speech (start, end) in the join."""
    by_id = {c["id"]: c for c in manifest()}
    pieces, truth, offset = [], [], 0.0
    for name in UTTERANCES:
        audio = load_audio(AUDIO / by_id[name]["file"])
        start, end = loud_span(audio)  # the utterance's speech, by energy alone
        truth.append((offset + start, offset + end))
        pieces += [audio, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)]
        offset += len(audio) / SAMPLE_RATE + PAUSE_S
    return np.concatenate(pieces), truth


@pytest.fixture(scope="module")
def worded(arena, joined):
    return {r.mode: r for r in arena.transcribe(joined[0], Options(word_timestamps=True))}


def test_every_mode_times_each_utterance_within_tolerance(worded, joined):
    _, truth = joined
    for mode, result in worded.items():
        words = [w for s in result.segments for w in s.words]
        for start, end in truth:
            mine = [w for w in words if start - PAUSE_S / 2 <= (w.start_s + w.end_s) / 2 <= end + PAUSE_S / 2]
            assert mine, (mode, start, end)
            assert abs(mine[0].start_s - start) <= TOLERANCE_S, (mode, mine[0], start)
            assert abs(mine[-1].end_s - end) <= TOLERANCE_S, (mode, mine[-1], end)


def test_word_times_are_monotonic_inside_their_segments(worded):
    for mode, result in worded.items():
        previous = 0.0
        for segment in result.segments:
            assert segment.words, (mode, segment)
            assert "".join(w.text for w in segment.words).strip() == segment.text
            for w in segment.words:
                assert segment.start <= w.start_s <= w.end_s <= segment.end, (mode, segment.start, w, segment.end)
                assert w.start_s >= previous, (mode, w, previous)
                assert 0.0 <= w.probability <= 1.0
                previous = w.end_s


def test_speculative_words_are_the_teachers(worded):
    assert worded["speculative"].segments == worded["teacher"].segments


def test_word_timing_is_its_own_cost_and_off_costs_nothing(arena, worded, joined):
    assert all(r.timing.words_s > 0 for r in worded.values())
    plain = arena.transcribe(joined[0][: 10 * SAMPLE_RATE], Options(timestamps=True))
    assert all(r.timing.words_s == 0 and all(s.words is None for s in r.segments) for r in plain)
