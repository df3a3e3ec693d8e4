"""Make a Distil-Whisper student from a teacher: same encoder, a few of its decoder layers.

Distil-Whisper (Gandhi et al., 2023, §3) copies the whole encoder (frozen during training) and keeps
decoder layers spread evenly over the teacher's depth, always the first and the last: `create_student`
(core/student.py, where set-up finds it too). Here: growing a trained student by a layer.
"""

from __future__ import annotations

# the initialisation itself is runtime code (set-up builds an untrained student with it): core/student.py
from core.student import DEFAULT_DECODER_LAYERS, create_student, pick_decoder_layers  # noqa: F401


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
