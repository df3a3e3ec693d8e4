"""Whisper's seek loop over windows, with its safeguards: one straight loop, as in openai/whisper's transcribe.py.

Every mode and both long-form algorithms run this loop; they differ only in the windows it gets and the
decoder behind `runner`. Each round decodes the next 30 s segment of every window that has audio left, in
batches of `runner.batch_size` (the chunked algorithm's windows batch; speculative decoding takes one at a
time). Without timestamps a window (at most 30 s) is one segment. With timestamps a decode that ends inside
a segment resumes at its last timestamp, as Whisper's sequential algorithm does; a window over 30 s always
decodes with timestamps, since seeking needs them.

Safeguards per segment (core/gate.py): Whisper's no-speech rule and its temperature fallback, and the
decoding loop's guard against repetition. A window that stops early is caught:
- with timestamps, a decode that says "no more speech" (a single final timestamp) while the VAD still hears
  at least MIN_VOICED_AFTER_S ahead in the segment resumes at that timestamp instead of skipping the rest;
- without timestamps, a window whose text is far shorter than its speech (under MIN_TOKENS_PER_VOICED_S)
  is decoded again in two halves, cut at the pause nearest its middle, and the halves are kept if they
  say more. (Shifting the start instead would have to guess where the lost words were; the halves both
  start in a pause, which is what the loss came from.)
All these decisions read only the decoded tokens, so speculative decoding, whose tokens are the teacher's,
makes exactly the teacher's decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from core.alignment import TimedWord
from core.audio import SAMPLE_RATE
from core.decoding import Decoded, Task
from core.gate import TEMPERATURES, best_attempt, is_no_speech, needs_fallback
from core.windows import (HOP, MIN_SEEK_FRAMES, N_FRAMES, Features, TimedPiece, Window, halves,
                          last_timestamp_frames, split_segments)

MAX_NEW_TOKENS = 440  # Whisper's decoder holds 448 positions; the prompt takes up to 4
TOKENS_PER_SECOND_CAP = 12  # fast speech is ~5 tokens/s, timestamps add ~1/s: a decode past this is a loop
MIN_TOKENS_PER_VOICED_S = 1.0  # a window's text below this rate (per voiced second) stopped early ...
MIN_VOICED_CHECK_S = 4.0  # ... when it holds at least this much speech
MIN_VOICED_AFTER_S = 1.0  # speech still ahead in a segment that the decode says is over


def max_new_tokens(seconds: float) -> int:
    return min(MAX_NEW_TOKENS, int(TOKENS_PER_SECOND_CAP * seconds) + 16)


class Runner(Protocol):
    """One mode's decoder, as the engine provides it (it caches and charges the shared work)."""

    batch_size: int
    timestamp_begin: int

    def encode(self, jobs: list[tuple[Window, int, torch.Tensor]]) -> torch.Tensor: ...

    def decode(self, states: torch.Tensor, task: Task, jobs: list[tuple[Window, int, torch.Tensor]]) -> list[Decoded]: ...

    def text(self, tokens: Sequence[int]) -> str: ...


@dataclass
class SegmentDecode:
    """The decode kept for one segment of a window, and what the safeguards made of it."""

    seek: int  # feature frames into the window
    decoded: Decoded
    attempts: int  # 1 + temperature fallbacks
    no_speech: bool
    pieces: list[TimedPiece]  # what it says, by segment (one piece without timestamps)
    suspect: bool = False  # still unlikely or repetitive after every fallback (a live update commits none of it)
    words: list[list[TimedWord]] = field(default_factory=list)  # per piece, in window seconds (core/words.py)

    @property
    def kept(self) -> list[int]:
        return [t for p in self.pieces for t in p.tokens]


@dataclass
class WindowTranscript:
    window: Window
    decodes: list[SegmentDecode] = field(default_factory=list)
    repaired: bool = False  # decoded again in two halves because it stopped early

    @property
    def kept(self) -> list[int]:
        return [t for d in self.decodes for t in d.kept]


def transcribe(windows: Sequence[Window], features_of: Callable[[Window], Features], runner: Runner,
               prompt_of: Callable[[bool], tuple[int, ...]], timestamps: bool, prefix: tuple[int, ...] = (),
               no_speech_rule: bool = True, temperatures: Sequence[float] = TEMPERATURES,
               repair: bool = True) -> list[WindowTranscript]:
    """Decode every window to the end; returns one transcript per window (two for a repaired one).
    `no_speech_rule=False`: the caller knows the audio holds speech (a live update of a confirmed utterance).
    `temperatures=(0.0,)`: no fallback; what would need one comes back `suspect` (a live update, which
    cannot wait for five more decodes, commits none of it)."""
    results = {w: WindowTranscript(w) for w in windows}
    seeks = {w: 0 for w in windows}
    stamped = {w: timestamps or features_of(w).content_frames > N_FRAMES for w in windows}
    while True:
        active = [w for w in windows if seeks[w] < features_of(w).content_frames]
        if not active:
            break
        for flag in (False, True):
            group = [w for w in active if stamped[w] == flag]
            for start in range(0, len(group), runner.batch_size):
                batch = group[start : start + runner.batch_size]
                jobs = [(w, seeks[w], features_of(w).segment(seeks[w])) for w in batch]
                states = runner.encode(jobs)
                decodes = _with_fallback(runner, states, jobs, features_of, prompt_of(flag), flag, prefix,
                                         no_speech_rule, temperatures)
                for (w, seek, _), (decoded, attempts) in zip(jobs, decodes):
                    frames = features_of(w).segment_frames(seek)
                    segment, advance = _read(runner, w, seek, frames, decoded, attempts, flag, no_speech_rule)
                    results[w].decodes.append(segment)
                    seeks[w] += max(advance, 1)
    out = [results[w] for w in windows]
    if repair and not timestamps:
        out = [part for transcript in out
               for part in _repaired(transcript, features_of, runner, prompt_of, prefix, no_speech_rule, temperatures)]
    return out


def _no_speech(decoded: Decoded, text: str, rule: bool) -> bool:
    return rule and is_no_speech(decoded.no_speech_prob, decoded.avg_logprob, text)


def _with_fallback(runner: Runner, states, jobs, features_of, prompt, timestamps: bool, prefix, no_speech_rule: bool,
                   temperatures: Sequence[float]):
    """Decode at temperature 0, then again at each next temperature the rows that need it."""
    limits = [max_new_tokens(features_of(w).segment_frames(seek) * HOP / SAMPLE_RATE) for w, seek, _ in jobs]
    seeds = [(w.regions[0].start * 7919 + seek) % 2**31 for w, seek, _ in jobs]
    attempts: list[list[Decoded]] = [[] for _ in jobs]
    todo = list(range(len(jobs)))
    for temperature in temperatures:
        task = Task(prompt, timestamps, tuple(limits[i] for i in todo), tuple(seeds[i] for i in todo), prefix,
                    temperature)
        still = []
        for i, decoded in zip(todo, runner.decode(states[todo], task, [jobs[i] for i in todo])):
            attempts[i].append(decoded)
            text = runner.text(decoded.tokens)
            if not _no_speech(decoded, text, no_speech_rule) and needs_fallback(decoded.avg_logprob, text, decoded.looped):
                still.append(i)
        todo = still
        if not todo:
            break
    chosen = []
    for i, tries in enumerate(attempts):
        if i in todo:  # every temperature failed
            pick = best_attempt([(d.avg_logprob, runner.text(d.tokens), d.looped) for d in tries])
        else:
            pick = len(tries) - 1
        chosen.append((tries[pick], len(tries)))
    return chosen


def _read(runner: Runner, window: Window, seek: int, frames: int, decoded: Decoded, attempts: int, timestamps: bool,
          no_speech_rule: bool):
    """What one segment's decode says, and how far to seek."""
    text = runner.text(decoded.tokens)
    if _no_speech(decoded, text, no_speech_rule):
        return SegmentDecode(seek, decoded, attempts, True, []), frames
    suspect = needs_fallback(decoded.avg_logprob, text, False)  # a loop the guard cut is kept once: not suspect
    if not timestamps:
        whole = [TimedPiece(0.0, window.seconds, tuple(decoded.tokens))]
        return SegmentDecode(seek, decoded, attempts, False, whole, suspect), frames
    pieces, advance = split_segments(decoded.tokens, runner.timestamp_begin, seek, frames)
    if advance == frames:
        last = last_timestamp_frames(decoded.tokens, runner.timestamp_begin)
        ahead = window.voiced_s((seek + last) * HOP / SAMPLE_RATE, (seek + frames) * HOP / SAMPLE_RATE)
        if last >= MIN_SEEK_FRAMES and ahead >= MIN_VOICED_AFTER_S:
            advance = last  # the decode stopped early: resume where it stopped
    return SegmentDecode(seek, decoded, attempts, False, pieces, suspect), advance


def _repaired(transcript: WindowTranscript, features_of, runner: Runner, prompt_of, prefix, no_speech_rule: bool,
              temperatures: Sequence[float]) -> list[WindowTranscript]:
    """The window as it is, or in two halves when its text is far shorter than its speech."""
    voiced = transcript.window.voiced_s()
    if any(d.no_speech for d in transcript.decodes) or voiced < MIN_VOICED_CHECK_S \
            or len(transcript.kept) >= MIN_TOKENS_PER_VOICED_S * voiced:
        return [transcript]
    parts = halves(transcript.window)
    if parts is None:
        return [transcript]
    again = transcribe(parts, features_of, runner, prompt_of, False, prefix, no_speech_rule, temperatures,
                       repair=False)
    if sum(len(t.kept) for t in again) <= len(transcript.kept):
        return [transcript]
    for part in again:
        part.repaired = True
    return again
