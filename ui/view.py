"""The page's output components, grouped, and how a `Snapshot` updates them: a dict keyed by component
(Gradio leaves the outputs a dict does not name as they are).

`ModeColumn`: one mode's column. `PageView`: every output of a run (the columns, status, charts, raw JSON,
export, session history) and of a live session; `shows(job)` turns a job that yields snapshots into the
event handler the layout registers. ui.layout creates the components; ui.handlers yields the snapshots.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass

import gradio as gr

from core.modes import MODES
from ui import render
from ui.run import Run, Snapshot


@dataclass
class ModeColumn:
    """One mode's results."""

    transcript: gr.Textbox
    words: gr.HTML  # the transcript as timed words, following the player (word timestamps only)
    metrics: gr.Markdown
    analysis: gr.HTML  # speculative: the trace of teacher passes; the others: word differences
    segments: gr.Dataframe
    subtitles: gr.File

    @property
    def outputs(self) -> list:
        return [self.transcript, self.words, self.metrics, self.analysis, self.segments, self.subtitles]

    def update(self, run: Run, mode: str) -> dict:
        result = run.results.get(mode)
        segments = render.segments_frame(result)
        files = [str(path) for path in run.subtitles.get(mode, [])]
        analysis = render.analysis_html(run, mode)
        words = render.words_html(result)
        return {
            self.transcript: result.text if result else "",
            self.words: gr.update(value=words, visible=bool(words)),
            self.metrics: render.metrics_markdown(run, mode),
            self.analysis: gr.update(value=analysis, visible=bool(analysis)),
            self.segments: gr.update(value=segments, visible=segments is not None),
            self.subtitles: gr.update(value=files or None, visible=bool(files)),
        }


@dataclass
class PageView:
    """Every component a run or a live session updates."""

    columns: dict[str, ModeColumn]  # by mode
    run_status: gr.Markdown
    playback: gr.HTML  # the clip's player, when words are timed
    run_chart: gr.BarPlot
    timing_chart: gr.BarPlot
    spread_chart: gr.ScatterPlot
    raw_json: gr.JSON
    run_export: gr.File
    history_table: gr.Dataframe
    history_chart: gr.ScatterPlot
    history: gr.State
    live_text: gr.Markdown
    live_session: gr.State

    @property
    def outputs(self) -> list:
        """What a run updates."""
        return [*(c for column in self.columns.values() for c in column.outputs), self.run_status, self.playback,
                self.run_chart,
                self.timing_chart, self.spread_chart, self.raw_json, self.run_export, self.history_table,
                self.history_chart, self.history]

    @property
    def live_outputs(self) -> list:
        """What stopping a live session updates: its text, its session, then a run."""
        return [self.live_text, self.live_session, *self.outputs]

    def shows(self, job: Callable[..., Iterator[Snapshot]]) -> Callable[..., Iterator[dict]]:
        """The event handler that shows each snapshot `job` yields; it takes the job's arguments."""
        @functools.wraps(job)  # Gradio reads the job's parameters (gr.Progress among them) through this
        def handler(*args, **kwargs) -> Iterator[dict]:
            with closing(job(*args, **kwargs)) as snapshots:
                for snapshot in snapshots:
                    yield self.update(snapshot)
        return handler

    def update(self, snapshot: Snapshot) -> dict:
        updates = {}
        if snapshot.live is not None:
            updates |= {self.live_text: snapshot.live, self.live_session: None}
        if snapshot.run is not None:
            updates |= self._run(snapshot.run)
        if snapshot.export is not None:
            updates |= self._history(snapshot.history, snapshot.export)
        return updates

    def _run(self, run: Run) -> dict:
        updates = {}
        for mode in MODES:
            updates |= self.columns[mode].update(run, mode)
        return updates | {
            self.run_status: render.run_status(run),
            self.playback: gr.update(value=render.playback_html(run.playback), visible=bool(run.playback)),
            self.run_chart: _chart(render.latency_frame(run), "latency s"),
            self.timing_chart: _chart(render.timing_frame(run), "seconds", stacked=True),
            self.spread_chart: _chart(render.spread_frame(run), "latency s"),
            self.raw_json: render.payload(run),
        }

    def _history(self, history: list[dict], export: str) -> dict:
        """A finished run: its export, and the session history it joined."""
        runs_chart = render.history_chart(history)
        return {
            self.run_export: gr.update(value=export, visible=True),
            self.history_table: render.history_table(history),
            self.history_chart: _chart(runs_chart, "RTFx", sort=list(dict.fromkeys(runs_chart["run"]))),  # run order
            self.history: history,
        }


def _chart(frame, y: str, stacked: bool = False, **props):
    """A chart update with headroom above the highest point (of a stack). Changing `colors_in_legend` makes
    Gradio rebuild the chart: without that, a mode (or part) first seen in an update stays invisible."""
    heights = (frame.groupby("mode")[y].sum() if stacked else frame[y]) if len(frame) else None
    top = float(heights.max()) * 1.15 if heights is not None else 1.0
    legend = "part" if stacked else "mode"
    return gr.update(value=frame, colors_in_legend=list(dict.fromkeys(frame[legend])), y_lim=[0, round(top, 2)],
                     **props)
