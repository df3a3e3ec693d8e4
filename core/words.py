"""Word timing for one mode's run: its kept decodes aligned by the model that wrote them (core/alignment.py).

After the seek loop, every decode that kept text gets one teacher-forced pass of the mode's own model
(the student's for the student, the teacher's for the teacher and for speculative decoding) over its text
tokens, in batches of the request's batch size, whatever the mode: the same rows in the same batches give
speculative decoding the teacher's times to the bit. Each piece (timestamped segment) keeps the words of
its own tokens; times are in window seconds, mapped to the clip when the result is assembled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from core.alignment import align, attention, heads_of, is_spaced, merge_punctuation, split_words
from core.audio import SAMPLE_RATE
from core.transcribe import SegmentDecode, WindowTranscript
from core.windows import HOP, INPUT_STRIDE


def time_words(run, transcripts: Sequence[WindowTranscript], model, prompt: Sequence[int], batch_size: int) -> float:
    """Fill `words` of every kept decode of `transcripts` (`run`: the mode's core.mode_run.ModeRun;
    `prompt`: the request's prompt without timestamps). Returns the seconds it took, encoder outputs not
    counted (the request charges those, computed again or not, as encoder time)."""
    special, tokenizer, clock = run.arena.special, run.arena.tokenizer, run.arena.clock
    seconds = 0.0
    spaced = is_spaced(run.request.options.language)
    heads = heads_of(model)
    jobs = [(t.window, d) for t in transcripts for d in t.decodes if d.pieces]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        states = run.encode([(w, d.seek, run.features_of(w).segment(d.seek)) for w, d in batch])
        started = clock()
        pieces = [[split_words(tokenizer, special.text_only(p.tokens), special.eot, spaced) for p in d.pieces]
                  for _, d in batch]
        sequences = [[*prompt, *(t for words in per_piece for _, ids in words for t in ids), special.eot]
                     for per_piece in pieces]
        rows = attention(model, states, sequences, heads, special.eot)
        for (window, decode), per_piece, (scores, probs) in zip(batch, pieces, rows):
            frames = run.features_of(window).segment_frames(decode.seek) // INPUT_STRIDE
            flat = [word for words in per_piece for word in words]
            timed = align(scores, probs, flat, len(prompt) - 1, frames) if flat else []
            _share_out(decode, per_piece, timed, decode.seek * HOP / SAMPLE_RATE)
        seconds += clock() - started
    return seconds


def _share_out(decode: SegmentDecode, per_piece, timed, offset_s: float) -> None:
    """Give each piece its own words, shifted from the decode's start to window seconds."""
    decode.words = []
    for words in per_piece:
        mine, timed = timed[: len(words)], timed[len(words):]
        decode.words.append(merge_punctuation(
            [replace(w, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in mine]))
