"""Live transcription: one rolling buffer, re-decoded as audio arrives, committed by LocalAgreement-2.

Modelled on ufal/whisper_streaming's OnlineASRProcessor. Chunks (any rate, any channel layout) are
resampled to 16 kHz and appended to ONE buffer; each update re-decodes the whole buffer with one
mode and commits the longest run of words on which this hypothesis and the previous one agree.
Committed words are never revised.

Why no timestamps: a forced prefix needs a timestamp-free decode, and with timestamps whisper-base dropped
words in short buffers. So every mode runs the same timestamp-free rule:

- the committed words still inside the buffer (`_in_buffer`) are forced as the decoder's prefix, so a
  hypothesis is those words and then the model's continuation: they cost one parallel decoder pass
  instead of one step each, and only the continuation is compared with the previous one;
- Whisper's no-speech rule (core/gate.py, read from the decode's first step) is judged
  on an utterance's first decodes only: once it found speech in the buffer, later updates of the
  same buffer hold that speech too, until a pause or a trim starts a new one;
- the buffer is trimmed at a quiet point that an earlier, fully committed hypothesis had already
  passed, and only after a decode of the audio to drop says nothing beyond the committed words (its
  word count says how many committed words leave the buffer): one extra decode per trim;
- an energy gate (30 ms frames against an adaptive noise floor) keeps silence away from the model
  and ends an utterance on a pause: the utterance is decoded up to the pause, committed whole, and
  the buffer restarts after it. Offline audio is planned with silero (core/vad.py); live keeps this
  gate, which costs nothing per chunk, where silero over the buffer costs ~0.1-0.3 s per update on
  this CPU, and the gate already separates speech from pauses on the bundled clips, 10 dB SNR white
  noise included. Live buffers are one window each (`Options.vad=False`).

Cost per update is bounded by the buffer cap (Whisper always encodes a 30 s window; trimming bounds
the decoder's tokens), never by session length. A decode waits for DECODE_EVERY_S of new audio, and
for the audio it would decode to be fresh: when chunks arrive faster than updates end (one call per
browser chunk, queued), the stale ones are only appended until the queue is drained, so the text
never lags by a growing backlog; a caller that hands over all arrived audio at once never waits.
`falling_behind` says when updates take longer than DECODE_EVERY_S. The last decode (`finish`)
always runs.

Committed text that left the buffer is not fed back as a prompt (Whisper's previous-text context):
a prompt changes the teacher's tokens (speculative decoding would then no longer match it) and
invites whisper-base to repeat itself.
"""

from __future__ import annotations

import logging
import queue
import re
import statistics
import threading
import time
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

import numpy as np

from core.audio import SAMPLE_RATE, to_mono_16k
from core.engine import Options
from core.errors import ArenaError, AudioTooLongError
from core.modes import MODES

# ---- energy gate ---------------------------------------------------------------------------------
GATE_FRAME_S = 0.03
FRAME = int(GATE_FRAME_S * SAMPLE_RATE)  # 30 ms frames
SPEECH_GATE_DBFS = -60.0  # a frame quieter than this is never speech
SPEECH_MARGIN_DB = 8.0  # a frame is speech when this much louder than the noise floor
NOISE_PERCENTILE = 10  # the noise floor: this percentile of recent (non-digital-silence) frames
NOISE_WINDOW_S = 20.0  # recent audio the floor is estimated on
DIGITAL_SILENCE_DB = -100.0  # zero padding: never counts towards the floor
MIN_SPEECH_S = 0.15  # speech needed to open an utterance (a click is not an utterance)
PREROLL_S = 0.5  # audio kept from before an utterance opens: soft onsets sit under the gate
END_PAUSE_S = 0.6  # a pause this long ends an utterance: commit everything, clear the buffer
PHRASE_PAUSE_S = 0.25  # so does a pause this long once the buffer is past its trim length
FLUSH_TAIL_S = 0.3  # decode this much past the last speech frame when flushing (not the silence)

# ---- buffer --------------------------------------------------------------------------------------
TRIM_S = 15.0  # trim committed audio from the buffer once it is longer than this
BUFFER_CAP_S = 30.0  # never longer (Whisper's window): cut at a quiet point, committing if need be
TRIM_SEARCH_S = 2.0  # look for the quietest point this far before the safe end
QUIET_WINDOW_S = 0.2  # the quiet point is the quietest window of this length
MIN_TRIM_S = 2.0  # a trim that drops less than this is not worth its extra decode
TRIM_RETRY_S = 2.0  # after a refused trim, wait for this much new audio
MAX_SHIFT_WORDS = 3  # a revised hypothesis shifts committed words by at most this many
TRAILING_PUNCTUATION = ".,?!;:"

# ---- pace ----------------------------------------------------------------------------------------
DECODE_EVERY_S = 0.5  # re-decode at most once per this much new audio
FRESH_S = 0.1  # decode only audio that ended at most one chunk + this long ago: older means queued chunks
SLOW_UPDATES = 3  # this many updates in a row slower than DECODE_EVERY_S means falling behind
MAX_SESSION_S = 600.0  # ten minutes
IDLE_END_S = 30.0  # a LiveSession that gets no chunk for this long (a closed tab) finishes by itself
SETTLE_S = 0.3  # on finish, wait until no chunk came for this long: the browser sends its last ones after "stop"
MAX_SETTLE_S = 2.0


log = logging.getLogger(__name__)


class StreamTooLongError(AudioTooLongError):
    """The live session reached its length cap; what was heard until then is kept."""


@dataclass(frozen=True)
class StreamState:
    """What a live view shows after each update."""

    committed_text: str  # final: only ever extended
    tentative_text: str  # the unconfirmed tail of the latest hypothesis
    audio_s: float  # audio received so far
    buffer_s: float  # audio in the rolling buffer now
    max_buffer_s: float
    decodes: int
    last_update_s: float  # compute time of the latest update that decoded
    rtfx: float  # buffer seconds decoded per compute second, latest update
    commit_latencies: tuple[float, ...]  # per committed piece: completing chunk's arrival -> commit
    falling_behind: bool
    decode_every_s: float  # seconds between updates: DECODE_EVERY_S, or the compute time when falling behind
    message: str
    finished: bool

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.committed_text, self.tentative_text) if t)

    @property
    def latency_median_s(self) -> float | None:
        return statistics.median(self.commit_latencies) if self.commit_latencies else None

    @property
    def latency_p95_s(self) -> float | None:
        return percentile(self.commit_latencies, 95)


def percentile(values, q: float) -> float | None:
    """Nearest-rank percentile (None for no values): honest on the few dozen commits of a clip."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(q / 100 * len(ordered))) - 1))]


def _norm(word: str) -> str:
    """Agreement ignores case and punctuation: 'Americans,' then 'Americans' is the same word."""
    return re.sub(r"[^\w']+", "", word.lower())


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _covered(ref: list[str], hyp: list[str]) -> int:
    """How many leading words of `hyp` say what all of `ref` says (both start at the same sample).

    Aligned on the longest matching runs, so one revised word does not misplace the rest; runs
    shifted by more than MAX_SHIFT_WORDS are ignored (a repeated phrase later on is not a match);
    unmatched trailing words of `ref` count one for one.
    """
    if not ref or not hyp:
        return 0
    blocks = [
        m for m in SequenceMatcher(None, ref, hyp, autojunk=False).get_matching_blocks()
        if m.size and abs(m.b - m.a) <= MAX_SHIFT_WORDS
    ]
    end_ref, end_hyp = (blocks[-1].a + blocks[-1].size, blocks[-1].b + blocks[-1].size) if blocks else (0, 0)
    return min(end_hyp + len(ref) - end_ref, len(hyp))


def _through(ref: list[str], hyp: list[str]) -> int | None:
    """How many words of `ref` all of `hyp` says, if `hyp` ends on a word aligned with `ref` (else None):
    a trim must not trust a decode of the audio to drop that ends on words nobody committed (a loop)."""
    blocks = [
        m for m in SequenceMatcher(None, ref, hyp, autojunk=False).get_matching_blocks()
        if m.size and abs(m.b - m.a) <= MAX_SHIFT_WORDS
    ]
    if not hyp or not blocks or blocks[-1].b + blocks[-1].size != len(hyp):
        return None
    return blocks[-1].a + blocks[-1].size


def _frame_db(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // FRAME
    x = audio[: n * FRAME].reshape(n, FRAME)
    return 10 * np.log10(np.mean(x * x, axis=1, dtype=np.float64) + 1e-12)


class LiveTranscriber:
    """Feed chunks with `insert` + `process` (or `update`), read `state`, end with `finish`.

    `arena` is a core.engine.Arena (anything with `transcribe(audio, Options)`); `clock` gives
    seconds and is used for arrival stamps, commit times and compute time (tests may fake it).
    """

    def __init__(
        self,
        arena,
        mode: str = "student",
        *,
        language: str | None = "en",
        decode_every_s: float = DECODE_EVERY_S,
        trim_s: float = TRIM_S,
        buffer_cap_s: float = BUFFER_CAP_S,
        max_session_s: float = MAX_SESSION_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if mode not in MODES:
            raise ArenaError(f"Live transcription runs one mode among {', '.join(MODES)}, not {mode!r}.")
        if not 0 < trim_s < buffer_cap_s:
            raise ArenaError("The trim length must be positive and below the buffer cap.")
        self.arena, self.mode, self.language, self._clock = arena, mode, language, clock
        self.trim_s, self.buffer_cap_s, self.max_session_s = trim_s, buffer_cap_s, max_session_s
        self.min_decode_every_s = decode_every_s

        self._chunks: list[np.ndarray] = []  # the whole recording, 16 kHz
        self._received = 0  # samples
        self._recent_db = np.empty(0)  # frame levels for the noise floor
        self._preroll = np.empty(0, np.float32)

        self._buffer = np.empty(0, np.float32)
        self._offset = 0  # absolute sample at which the buffer starts
        self._committed: list[str] = []
        self._in_buffer: list[str] = []  # committed words said inside the buffer: the decoder's prefix
        self._speech_confirmed = False  # the no-speech rule found speech in this buffer
        self._tentative: list[tuple[str, float]] = []  # (word, arrival stamp of its completing chunk)
        self._heard: list[tuple[int, int]] = []  # per decode: (absolute end sample, words heard by then)
        self._no_trim_before = 0  # absolute sample: a refused trim waits for audio beyond this

        self._new_samples = 0  # appended since the last decode
        self._first_new_arrival: float | None = None  # arrival of the first chunk since the last decode
        self._last_arrival = 0.0
        self._spoken_at: float | None = None  # clock time the first sample was spoken (earliest estimate)
        self._last_chunk_s = 0.0
        self._returned_at: float | None = None  # when process() last returned
        self._latencies: list[float] = []
        self._decodes = 0
        self._compute_s = 0.0  # this update's decoding time
        self._last_update_s = 0.0
        self._rtfx = 0.0
        self._max_buffer = 0
        self._slow_streak = 0
        self._capped = False  # the session cap was reached
        self._finished = False

    # ---- public API ------------------------------------------------------------------------------

    def update(self, samples: np.ndarray, sample_rate: int) -> StreamState:
        """One call per browser chunk: append it, decode if due."""
        self.insert(samples, sample_rate)
        return self.process()

    def insert(self, samples: np.ndarray, sample_rate: int, arrived_at: float | None = None) -> None:
        """Append a chunk ((N,) or (N, channels), any dtype/rate). Cheap unless the buffer hits its cap.

        Raises StreamTooLongError once the session cap is reached (audio up to the cap is kept).
        """
        if self._finished:
            raise ArenaError("This live session has ended; start a new recording.")
        if np.asarray(samples).size == 0:
            return
        arrived_at = self._clock() if arrived_at is None else arrived_at
        audio = to_mono_16k(samples, sample_rate)
        room = int(self.max_session_s * SAMPLE_RATE) - self._received
        if room <= 0:
            self._capped = True
            raise StreamTooLongError(self._too_long_message())
        over = len(audio) > room
        audio = audio[:room]
        self._chunks.append(audio)
        self._received += len(audio)
        spoken_at = arrived_at - self._received / SAMPLE_RATE  # this chunk's last sample was just spoken
        self._spoken_at = spoken_at if self._spoken_at is None else min(self._spoken_at, spoken_at)
        self._last_chunk_s = len(audio) / SAMPLE_RATE
        self._recent_db = np.concatenate([self._recent_db, _frame_db(audio)])[-int(NOISE_WINDOW_S / GATE_FRAME_S):]
        piece = int(self.buffer_cap_s / 2 * SAMPLE_RATE)  # a huge chunk must not overflow the buffer
        for start in range(0, len(audio), piece):
            self._append(audio[start : start + piece], self._received - len(audio) + start, arrived_at)
        if over:
            self._capped = True
            raise StreamTooLongError(self._too_long_message())

    def process(self) -> StreamState:
        """Re-decode the buffer if enough new audio arrived; commit what two hypotheses agree on, or
        all of an utterance that a pause ended."""
        due = not self._finished and self._new_samples >= max(1, self.min_decode_every_s * SAMPLE_RATE)
        if due and not self._queued():
            split = self._utterance_end()
            self._timed(self._decode_and_commit if split is None else lambda stamp: self._flush(stamp, *split))
        self._returned_at = self._clock()
        return self.state

    def finish(self) -> str:
        """The speaker stopped: commit the tentative tail and return the final text."""
        if not self._finished:
            if len(self._buffer):
                self._timed(lambda stamp: self._flush(stamp, len(self._buffer), len(self._buffer)))
            self._finished = True
        return " ".join(self._committed)

    def recording(self) -> np.ndarray:
        """All 16 kHz audio received (silence included, up to the session cap): for the offline modes."""
        return np.concatenate(self._chunks) if self._chunks else np.empty(0, np.float32)

    @property
    def state(self) -> StreamState:
        behind = self._slow_streak >= SLOW_UPDATES
        every = self._last_update_s if behind else self.min_decode_every_s
        message = self._too_long_message() if self._capped else ""
        if behind and not self._capped:
            message = (
                f"This machine cannot re-transcribe every {self.min_decode_every_s:g} s of audio in {self.mode} "
                f"mode; it updates every {every:.1f} s, so live text lags more."
            )
        return StreamState(
            committed_text=" ".join(self._committed),
            tentative_text=" ".join(w for w, _ in self._tentative),
            audio_s=self._received / SAMPLE_RATE,
            buffer_s=len(self._buffer) / SAMPLE_RATE,
            max_buffer_s=self._max_buffer / SAMPLE_RATE,
            decodes=self._decodes,
            last_update_s=self._last_update_s,
            rtfx=self._rtfx,
            commit_latencies=tuple(self._latencies),
            falling_behind=behind,
            decode_every_s=every,
            message=message,
            finished=self._finished,
        )

    # ---- the commit rule -------------------------------------------------------------------------

    def _decode_and_commit(self, stamp: float) -> None:
        tail, agreed = self._stamped(self._continue(self._buffer), stamp)
        agreed = min(agreed, len(tail) - 1)  # the last word heard may be cut short, its punctuation a guess
        self._commit(tail[:agreed])
        self._tentative = tail[agreed:]
        self._heard.append((self._offset + len(self._buffer), len(self._committed) + len(self._tentative)))
        if len(self._buffer) > self.trim_s * SAMPLE_RATE and self._offset + len(self._buffer) >= self._no_trim_before:
            self._trim(force=False)

    def _flush(self, stamp: float, end: int, resume: int) -> None:
        """End of an utterance: decode the buffer up to `end`, commit all of it, go on from `resume`."""
        self._commit(self._stamped(self._continue(self._buffer[:end]), stamp)[0])
        rest, self._offset = self._buffer[resume:], self._offset + resume
        self._buffer, self._in_buffer, self._tentative, self._heard = self._buffer[:0], [], [], []
        self._speech_confirmed = False
        if self._speech_frames(rest).sum() * GATE_FRAME_S >= MIN_SPEECH_S:  # the next utterance began
            self._buffer, self._new_samples, self._first_new_arrival = rest, len(rest), self._last_arrival
        else:
            self._preroll = rest[-int(PREROLL_S * SAMPLE_RATE) :]

    def _stamped(self, words: list[str], stamp: float) -> tuple[list[tuple[str, float]], int]:
        """This hypothesis's words (its spelling: it heard more), each stamped with the arrival that first
        let a hypothesis say it, and how many leading words it shares with the previous hypothesis's
        tail (LocalAgreement-2): those keep their earlier stamp, the rest get `stamp`."""
        agreed = _common_prefix([_norm(w) for w, _ in self._tentative], [_norm(w) for w in words])
        return [(w, self._tentative[i][1] if i < agreed else stamp) for i, w in enumerate(words)], agreed

    def _utterance_end(self) -> tuple[int, int] | None:
        """(end, resume) around the latest pause of END_PAUSE_S after speech (PHRASE_PAUSE_S once the buffer
        is past its trim length: a flush there is a cheap trim): decode up to just past the speech, start
        the next utterance a pre-roll before its speech. None: the utterance goes on."""
        speech = np.flatnonzero(self._speech_frames(self._buffer))
        n = len(self._buffer)
        if not len(speech):
            return n, n  # it opened on speech, the floor rose since: decode it all, once
        gaps = np.diff(np.append(speech, n // FRAME)) - 1  # silent frames after each speech frame
        long = np.flatnonzero(gaps * GATE_FRAME_S >= END_PAUSE_S)
        if not len(long) and n > self.trim_s * SAMPLE_RATE:
            # a phrase pause, but only one after every committed word: the next buffer must not say them again
            said_by = next((end - self._offset for end, heard in self._heard if heard >= len(self._committed)), None)
            phrase = (gaps * GATE_FRAME_S >= PHRASE_PAUSE_S) & ((speech + 1) * FRAME >= (said_by if said_by is not None else n))
            long = np.flatnonzero(phrase)
        if not len(long):
            return None
        k = long[-1]
        speech_end = (speech[k] + 1) * FRAME
        if k + 1 == len(speech):
            return min(n, speech_end + int(FLUSH_TAIL_S * SAMPLE_RATE)), n
        next_start = speech[k + 1] * FRAME
        end = min(speech_end + int(FLUSH_TAIL_S * SAMPLE_RATE), (speech_end + next_start) // 2)  # a short pause: its middle
        return end, max(end, next_start - int(PREROLL_S * SAMPLE_RATE))

    def _trim(self, force: bool) -> None:
        """Drop committed audio up to a quiet point; `force` (buffer at its cap) commits what it must."""
        cut = self._cut_point(force)
        if cut is None and force:
            cut = len(self._buffer)
        if not cut:
            return
        dropped = self._decode(self._buffer[:cut])
        norm, in_buffer = [_norm(w) for w in dropped], [_norm(w) for w in self._in_buffer]
        said = _through(in_buffer, norm) if norm else 0  # committed words the dropped audio holds
        if said is None and not force:
            self._no_trim_before = self._offset + len(self._buffer) + int(TRIM_RETRY_S * SAMPLE_RATE)
            return
        if said is None:
            known = _covered(in_buffer, norm)  # words of the dropped audio already committed
            self._commit([(w, self._stamp()) for w in dropped[known:]])
            self._in_buffer, self._tentative = [], []
        else:
            self._in_buffer = self._in_buffer[said:]
        self._buffer = self._buffer[cut:]
        self._speech_confirmed = False
        self._offset += cut
        self._heard = [h for h in self._heard if h[0] > self._offset]

    def _cut_point(self, force: bool) -> int | None:
        """The quietest point before the end of the latest hypothesis that is now all committed."""
        safe = next((end for end, heard in reversed(self._heard) if heard <= len(self._committed)), None)
        safe = None if safe is None else min(safe - self._offset, len(self._buffer))
        if force and (safe is None or safe < len(self._buffer) // 2):
            safe = len(self._buffer)  # nothing safe goes far enough: cut near the end, committing
        if safe is None or safe < (MIN_TRIM_S + QUIET_WINDOW_S) * SAMPLE_RATE:
            return None
        window = max(1, int(QUIET_WINDOW_S / GATE_FRAME_S))
        first = max(int(MIN_TRIM_S / GATE_FRAME_S), int((safe / SAMPLE_RATE - TRIM_SEARCH_S) / GATE_FRAME_S))
        levels = _frame_db(self._buffer[:safe])[first:]
        if len(levels) < window:
            return safe
        energy = np.convolve(10 ** (levels / 10), np.ones(window), mode="valid")
        return (first + int(np.argmin(energy)) + window // 2) * FRAME

    def _commit(self, words: list[tuple[str, float]]) -> None:
        """Append words for good; the piece's latency runs from its latest word's completing chunk."""
        if not words:
            return
        self._committed.extend(w for w, _ in words)
        self._in_buffer.extend(w for w, _ in words)
        self._latencies.append(self._clock() - max(s for _, s in words))

    # ---- helpers ---------------------------------------------------------------------------------

    def _continue(self, audio: np.ndarray) -> list[str]:
        """The words the model says after the committed words still in the buffer. The last one goes in
        without its trailing punctuation: a full stop forced there makes the model skip ahead."""
        prefix = [*self._in_buffer[:-1], *(w.rstrip(TRAILING_PUNCTUATION) for w in self._in_buffer[-1:])]
        prefix = [w for w in prefix if w]
        words = self._decode(audio, prefix=prefix)
        return words[len(prefix) :] if words else []  # no words: the no-speech rule dropped it all

    def _decode(self, audio: np.ndarray, prefix: list[str] = ()) -> list[str]:
        started = self._clock()
        if self.language is None and getattr(self.arena, "multilingual", False):
            self.language = self.arena.detect_language(audio)  # once: every update then agrees
        options = Options(modes=(self.mode,), language=self.language, prefix=" ".join(prefix),
                          no_speech_rule=not self._speech_confirmed, vad=False, fallback=False)
        (result,) = self.arena.transcribe(audio, options)
        self._compute_s += self._clock() - started
        self._decodes += 1
        # a hypothesis Whisper's safeguards doubt (unlikely or repetitive) is never committed
        words = [] if any(w.suspect for w in result.windows) else result.text.split()
        self._speech_confirmed = self._speech_confirmed or bool(words)
        return words

    def _queued(self) -> bool:
        """Did this call come straight after the previous one with audio older than one chunk (plus
        FRESH_S)? Then more chunks wait in line behind it: append them first, decode the freshest. A call
        that came on its own always decodes (lost audio must not stall the updates)."""
        now = self._clock()
        if self._returned_at is None or now - self._returned_at > self._last_chunk_s / 2:
            return False
        return now - self._spoken_at - self._received / SAMPLE_RATE > self._last_chunk_s + FRESH_S

    def _timed(self, step: Callable[[float], None]) -> None:
        """Run one decoding step; track its compute time against the pace."""
        buffer_s, stamp = len(self._buffer) / SAMPLE_RATE, self._stamp()
        self._compute_s, self._new_samples, self._first_new_arrival = 0.0, 0, None
        step(stamp)
        if not self._compute_s:
            return
        self._last_update_s, self._rtfx = self._compute_s, buffer_s / self._compute_s
        self._slow_streak = self._slow_streak + 1 if self._compute_s > self.min_decode_every_s else 0

    def _stamp(self) -> float:
        """Arrival of the first chunk this decode sees that the previous one did not: the earliest
        chunk that can have completed a word first heard now."""
        return self._clock() if self._first_new_arrival is None else self._first_new_arrival

    def _speech_frames(self, audio: np.ndarray) -> np.ndarray:
        recent = self._recent_db[self._recent_db > DIGITAL_SILENCE_DB]
        floor = np.percentile(recent, NOISE_PERCENTILE) if len(recent) else -np.inf
        return _frame_db(audio) > max(SPEECH_GATE_DBFS, floor + SPEECH_MARGIN_DB)

    def _append(self, audio: np.ndarray, position: int, arrived_at: float) -> None:
        """Open an utterance on speech (with its pre-roll), extend it otherwise; keep under the cap."""
        if not len(self._buffer):
            # judged on the pre-roll too: a browser chunk (0.1 s) is shorter than MIN_SPEECH_S
            recent = np.concatenate([self._preroll, audio])
            if self._speech_frames(recent).sum() * GATE_FRAME_S < MIN_SPEECH_S:
                self._preroll = recent[-int(PREROLL_S * SAMPLE_RATE) :]
                return
            self._offset = position - len(self._preroll)
            audio = recent
            self._preroll = np.empty(0, np.float32)
        elif len(self._buffer) + len(audio) > self.buffer_cap_s * SAMPLE_RATE:
            self._trim(force=True)
        self._buffer = np.concatenate([self._buffer, audio])
        self._max_buffer = max(self._max_buffer, len(self._buffer))
        self._new_samples += len(audio)
        self._last_arrival = arrived_at
        if self._first_new_arrival is None:
            self._first_new_arrival = arrived_at

    def _too_long_message(self) -> str:
        minutes = self.max_session_s / 60
        cap = f"{minutes:g} min" if minutes >= 1 else f"{self.max_session_s:g} s"
        return (
            f"Live transcription stops after {cap}: the rest of this recording was not transcribed. "
            "Press stop to keep what was heard, then start a new recording."
        )


class LiveSession:
    """A LiveTranscriber decoded on a thread of its own, fed from any other without waiting.

    A browser stream drops the chunks recorded while its handler runs, so the handler must only hand
    a chunk over: `feed` queues it and returns the state of the latest update. The worker appends
    everything that has arrived, then decodes, back to back (the caller core.bench_stream models).
    """

    def __init__(self, transcriber: LiveTranscriber, idle_end_s: float = IDLE_END_S):
        self.transcriber = transcriber
        self.idle_end_s = idle_end_s
        self._inbox: queue.Queue = queue.Queue()
        self._state = transcriber.state
        self._error: Exception | None = None
        self._fed_at = transcriber._clock()
        self._worker = threading.Thread(target=self._run, name="live-session", daemon=True)
        self._worker.start()

    @property
    def state(self) -> StreamState:
        """The latest update's state; raises what the worker failed with (an ArenaError reads as a message)."""
        if self._error is not None:
            raise self._error
        return self._state

    def feed(self, samples: np.ndarray, sample_rate: int) -> StreamState:
        """Queue one chunk (stamped now, as it arrived) and return at once."""
        self._fed_at = self.transcriber._clock()
        self._inbox.put((samples, sample_rate, self._fed_at))
        return self.state

    def finish(self, timeout_s: float | None = None) -> StreamState:
        """Take the chunks still on their way, decode what is queued, commit the tail, stop the worker."""
        clock, waited = self.transcriber._clock, 0.0
        while clock() - self._fed_at < SETTLE_S and waited < MAX_SETTLE_S:
            time.sleep(SETTLE_S / 3)
            waited += SETTLE_S / 3
        self._inbox.put(None)
        self._worker.join(timeout_s)
        return self.state

    def recording(self) -> np.ndarray:
        return self.transcriber.recording()

    def _run(self) -> None:
        live, ended = self.transcriber, False
        try:
            while not ended:
                try:
                    items = [self._inbox.get(timeout=self.idle_end_s)]
                except queue.Empty:
                    items = [None]  # nobody feeds this session any more
                while not self._inbox.empty():
                    items.append(self._inbox.get_nowait())
                for item in items:
                    if item is None:
                        ended = True
                    elif not ended:
                        try:
                            live.insert(*item)
                        except StreamTooLongError:
                            pass  # kept up to the cap; the state says so
                self._state = live.state if ended else live.process()
            live.finish()
            self._state = live.state
        except Exception as err:  # noqa: BLE001 - handed to the feeding thread
            log.exception("live session failed")
            self._error = err
