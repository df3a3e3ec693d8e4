"""Make a Distil-Whisper student from a teacher: same encoder, a few of its decoder layers.

Distil-Whisper (Gandhi et al., 2023, §3) copies the whole encoder (frozen during training) and keeps
decoder layers spread evenly over the teacher's depth, always the first and the last.
"""

from __future__ import annotations

import copy

DEFAULT_DECODER_LAYERS = 2


def pick_decoder_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Indices taken evenly from the teacher, first and last included (6 -> 2 gives [0, 5])."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"a student needs 1..{teacher_layers} decoder layers, not {student_layers}")
    if student_layers == 1:
        return [0]
    step = (teacher_layers - 1) / (student_layers - 1)
    return sorted({round(i * step) for i in range(student_layers)})


def create_student(teacher, num_decoder_layers: int = DEFAULT_DECODER_LAYERS):
    """A new WhisperForConditionalGeneration initialised from `teacher`; the teacher is left untouched."""
    from transformers import WhisperForConditionalGeneration

    layers = pick_decoder_layers(teacher.config.decoder_layers, num_decoder_layers)
    config = copy.deepcopy(teacher.config)
    config.decoder_layers = len(layers)
    # the decoder's dtype: a teacher may run its encoder in bf16 on a CPU (core.models)
    student = WhisperForConditionalGeneration(config).to(teacher.model.decoder.embed_tokens.weight.dtype)

    teacher_state = teacher.state_dict()
    student_state = {}
    for name in student.state_dict():
        source = name
        if name.startswith("model.decoder.layers."):
            index = int(name.split(".")[3])
            source = name.replace(f"layers.{index}.", f"layers.{layers[index]}.", 1)
        student_state[name] = teacher_state[source].clone()
    student.load_state_dict(student_state)
    student.tie_weights()
    student.generation_config = copy.deepcopy(teacher.generation_config)
    student.config.distilled_from_layers = layers
    return student


def grow_student(student, teacher, num_decoder_layers: int):
    """A deeper student that keeps what `student` learnt: its trained layers stand where their teacher layers
    would, the layers it lacks come from the teacher (2 -> 3: trained 0 and 5 around the teacher's 2).

    Why: trying a bigger decoder costs a fine-tune, not a new distillation from the teacher's layers.
    """
    grown = create_student(teacher, num_decoder_layers)
    had = list(student.config.distilled_from_layers)
    state, trained = grown.state_dict(), student.state_dict()
    for name in state:
        if name.startswith("model.decoder.layers."):
            index = int(name.split(".")[3])
            source = grown.config.distilled_from_layers[index]
            if source in had:
                state[name] = trained[name.replace(f"layers.{index}.", f"layers.{had.index(source)}.", 1)].clone()
        elif name.startswith("model.decoder.layer_norm."):
            state[name] = trained[name].clone()
    grown.load_state_dict(state)
    grown.tie_weights()
    return grown
