"""The pace of live updates: when one is due, what stamps its words, whether the machine keeps up.

A decode waits for DECODE_EVERY_S of new audio, and for the audio it would decode to be fresh: when
chunks arrive faster than updates end (one call per browser chunk, queued), the stale ones are only
appended until the queue is drained, so the text never lags by a growing backlog. A caller that hands
over all arrived audio at once never waits. Updates slower than DECODE_EVERY_S, several in a row, mean
the machine is falling behind: the live view says so, and how often it really updates.
"""

from __future__ import annotations

from typing import Callable

from core.audio import SAMPLE_RATE

DECODE_EVERY_S = 0.5  # re-decode at most once per this much new audio
FRESH_S = 0.1  # decode only audio that ended at most one chunk + this long ago: older means queued chunks
SLOW_UPDATES = 3  # this many updates in a row slower than DECODE_EVERY_S means falling behind


class Pace:
    """Arrival times of the chunks, the audio since the last update, and the compute time of updates.

    `clock` gives seconds (tests may fake it).
    """

    def __init__(self, clock: Callable[[], float], min_every_s: float = DECODE_EVERY_S):
        self.clock, self.min_every_s = clock, min_every_s
        self.new_samples = 0  # appended since the last decode
        self.first_new_arrival: float | None = None  # arrival of the first chunk since the last decode
        self.last_arrival = 0.0
        self.spoken_at: float | None = None  # clock time the first sample was spoken (earliest estimate)
        self.last_chunk_s = 0.0
        self.returned_at: float | None = None  # when the latest update call returned
        self.last_update_s = 0.0  # compute time of the latest update that decoded
        self.rtfx = 0.0
        self.slow_streak = 0

    def arrived(self, samples: int, received: int, arrived_at: float) -> None:
        """A chunk of `samples` arrived at `arrived_at`, making `received` in all: its last one was just spoken."""
        spoken_at = arrived_at - received / SAMPLE_RATE
        self.spoken_at = spoken_at if self.spoken_at is None else min(self.spoken_at, spoken_at)
        self.last_chunk_s = samples / SAMPLE_RATE

    def appended(self, samples: int, arrived_at: float) -> None:
        """`samples` of a chunk that arrived at `arrived_at` joined the buffer."""
        self.new_samples += samples
        self.last_arrival = arrived_at
        if self.first_new_arrival is None:
            self.first_new_arrival = arrived_at

    def due(self) -> bool:
        return self.new_samples >= max(1, self.min_every_s * SAMPLE_RATE)

    def queued(self, received: int) -> bool:
        """Did this call come straight after the previous one with audio older than one chunk (plus
        FRESH_S)? Then more chunks wait in line behind it: append them first, decode the freshest. A call
        that came on its own always decodes (lost audio must not stall the updates)."""
        now = self.clock()
        if self.returned_at is None or now - self.returned_at > self.last_chunk_s / 2:
            return False
        return now - self.spoken_at - received / SAMPLE_RATE > self.last_chunk_s + FRESH_S

    def stamp(self) -> float:
        """Arrival of the first chunk this decode sees that the previous one did not: the earliest
        chunk that can have completed a word first heard now."""
        return self.clock() if self.first_new_arrival is None else self.first_new_arrival

    def begin(self) -> float:
        """An update starts: its stamp; the audio it sees is no longer new."""
        stamp = self.stamp()
        self.new_samples, self.first_new_arrival = 0, None
        return stamp

    def carry_over(self, samples: int) -> None:
        """The update kept its last `samples` for the next one (a new utterance): they count as new."""
        self.new_samples, self.first_new_arrival = samples, self.last_arrival

    def ended(self, compute_s: float, buffer_s: float) -> None:
        """An update spent `compute_s` decoding (nothing: it did not count) on `buffer_s` of audio."""
        if not compute_s:
            return
        self.last_update_s, self.rtfx = compute_s, buffer_s / compute_s
        self.slow_streak = self.slow_streak + 1 if compute_s > self.min_every_s else 0

    def returned(self) -> None:
        self.returned_at = self.clock()

    @property
    def falling_behind(self) -> bool:
        return self.slow_streak >= SLOW_UPDATES

    @property
    def every_s(self) -> float:
        """Seconds between updates: the minimum, or the compute time when falling behind."""
        return self.last_update_s if self.falling_behind else self.min_every_s

    def lag_message(self, mode: str) -> str:
        if not self.falling_behind:
            return ""
        return (
            f"This machine cannot re-transcribe every {self.min_every_s:g} s of audio in {mode} "
            f"mode; it updates every {self.every_s:.1f} s, so live text lags more."
        )
