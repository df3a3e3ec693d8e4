"""Distillation pipeline: make a Distil-Whisper student of any Whisper teacher, offline.

create (student init) -> data (synthetic speech) -> label (teacher pseudo-labels + caches) -> train
-> ship (only what the student adds) -> evaluate (through the app's Arena). CLI: `python -m core.distill`;
see docs/distillation.md.
"""
