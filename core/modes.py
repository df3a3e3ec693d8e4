"""The three modes and what sets each apart, in one place: the UI, the CLI and the benchmark read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    colour: str  # for charts and columns
    model: str  # whose choices are the output: "student" or "teacher"
    drafts: bool  # the student drafts and the teacher verifies
    batches: bool  # its windows decode in batches (speculative decoding takes one window at a time)
    summary: str


TRAITS = {
    m.name: m
    for m in (
        Mode("student", "Student", "#f59e0b", "student", False, True,
             "a distilled Whisper (the teacher's encoder, a much smaller decoder), fast but a little less accurate"),
        Mode("teacher", "Teacher", "#3b82f6", "teacher", False, True, "the original Whisper"),
        Mode("speculative", "Speculative", "#10b981", "teacher", True, False,
             "the student drafts a few tokens, the teacher checks them in one pass: exactly the teacher's "
             "output, faster whenever the student guesses well"),
    )
}
MODES = tuple(TRAITS)  # the page's column order; the teacher runs before speculative, which is compared to it
