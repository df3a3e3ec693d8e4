"""The student at run time: made from its teacher (Distil-Whisper's initialisation), or assembled from the
teacher and the trained tensors that ship in assets/student.

Set-up (core/weights.py) builds the student folder the app loads from these; the distillation pipeline
(core/distill/) trains and ships with the same functions. They live here, under the runtime, so that
setting the app up never imports the training pipeline.

Distil-Whisper (Gandhi et al., 2023, §3) copies the whole encoder (frozen during training) and keeps
decoder layers spread evenly over the teacher's depth, always the first and the last. A trained student
differs from that initialisation only in its decoder layers and the decoder's final layer norm, so only
those ship (file names and manifests: core/checkpoints.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import torch

from core.checkpoints import (DRAFT_VOCABULARY_FILE, SHIPPED_FILE, SHIPPED_FORMAT, load_alignment_heads,
                              read_shipped_metadata, sha256_file, shipped_fingerprint, write_manifest)

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
    student.generation_config.alignment_heads = student_alignment_heads(teacher.generation_config, layers)
    student.config.distilled_from_layers = layers
    return student


def student_alignment_heads(teacher_config, layers: list[int]) -> list[list[int]] | None:
    """The teacher's alignment heads that the student kept, renumbered to the student's layers (a head copied
    from the teacher starts out looking where it looked); None when it kept none (word timing then uses
    every head of the student's upper half, core/alignment.py). A trained student ships heads of its own,
    chosen by measurement (ALIGNMENT_HEADS_FILE)."""
    kept = [[layers.index(layer), head] for layer, head in getattr(teacher_config, "alignment_heads", None) or ()
            if layer in layers]
    return kept or None


def teacher_fingerprint(teacher) -> str:
    """sha256 of the teacher's token embeddings in fp16: which teacher a shipped decoder belongs to."""
    weight = teacher.model.decoder.embed_tokens.weight.detach().to(torch.float16).cpu().contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()


def load_teacher(teacher_dir: Path):
    """The teacher in fp16, the precision the shipped tensors are stored and compared in."""
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=torch.float16)


def assemble_student(teacher_dir: Path, shipped_dir: Path, out_dir: Path) -> Path:
    """The full student folder (weights, config, processor, MANIFEST.json) from the teacher + shipped tensors:
    the teacher's encoder, embeddings and projection, its decoder layers picked as in training, then the
    shipped tensors on top. A teacher whose token embeddings differ from the one the student was trained
    against is refused (the fingerprint in the metadata), since the result would be garbage."""
    from safetensors.torch import load_file

    teacher_dir, shipped_dir, out_dir = Path(teacher_dir), Path(shipped_dir), Path(out_dir)
    metadata = read_shipped_metadata(shipped_dir)
    if metadata.get("format") != SHIPPED_FORMAT:
        raise ValueError(f"{shipped_dir / SHIPPED_FILE} is not a {SHIPPED_FORMAT} file")
    teacher = load_teacher(teacher_dir)
    if teacher_fingerprint(teacher) != metadata["teacher_embed_sha256"]:
        raise ValueError(f"{shipped_dir / SHIPPED_FILE} was trained against another teacher than {teacher_dir}")
    student = create_student(teacher, int(metadata["decoder_layers"]))
    if student.config.distilled_from_layers != json.loads(metadata["distilled_from_layers"]):
        raise ValueError("the shipped decoder was made from other teacher layers than create_student picks")
    shipped = load_file(str(shipped_dir / SHIPPED_FILE))
    state = student.state_dict()
    for name, tensor in shipped.items():
        if name not in state or state[name].shape != tensor.shape:
            raise ValueError(f"shipped tensor {name} does not fit the student")
    student.load_state_dict(shipped, strict=False)
    student.tie_weights()
    measured = load_alignment_heads(shipped_dir)
    if measured:
        student.generation_config.alignment_heads = measured
    student.config.distil_arena = {"shipped_sha256": sha256_file(shipped_dir / SHIPPED_FILE), "teacher": teacher_dir.name}
    _save_folder(student, teacher_dir, shipped_dir, out_dir)
    return out_dir


def _save_folder(student, teacher_dir: Path, shipped_dir: Path, out_dir: Path) -> None:
    """Write the student folder beside `out_dir`, then move it in: a set-up stopped half-way never leaves a
    half-written folder where the app loads its student."""
    from transformers import WhisperProcessor

    tmp = out_dir.with_name(out_dir.name + ".assembling")
    shutil.rmtree(tmp, ignore_errors=True)
    student.save_pretrained(tmp)
    WhisperProcessor.from_pretrained(teacher_dir).save_pretrained(tmp)
    if (shipped_dir / DRAFT_VOCABULARY_FILE).is_file():
        shutil.copyfile(shipped_dir / DRAFT_VOCABULARY_FILE, tmp / DRAFT_VOCABULARY_FILE)
    for path in tmp.iterdir():
        path.chmod(0o644)
    write_manifest(tmp, teacher=teacher_dir.name, trained=True, shipped=shipped_fingerprint(shipped_dir))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
