"""Ship only what the student adds to the teacher, and rebuild the full student from the two at set-up.

The trained student differs from `create_student(teacher)` in its decoder layers and the decoder's
final layer norm (training keeps everything else frozen, see train.py). Those tensors, in fp16, are
the shipped file (~17 MB for whisper-base instead of ~112 MB for the whole student):

    assets/student/decoder.safetensors     the changed tensors; metadata: format, teacher, layers, fingerprint
    assets/student/draft_vocabulary.json   the tokens the student drafts from (draft_vocabulary.py)
    assets/student/MODEL_CARD.md           data, voices, compute, losses, WER, acceptance, speed

(file names and manifests: core/checkpoints.py)

`assemble_student(teacher_dir, shipped_dir, out_dir)` rebuilds the student folder the app loads: it is
runtime code (core/student.py, imported here), since set-up must not depend on the training pipeline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from core.checkpoints import MODEL_CARD, SHIPPED_FILE, SHIPPED_FILES, SHIPPED_FORMAT, shipped_available
from core.distill.draft_vocabulary import write_draft_vocabulary
from core.distill.heads import choose_heads
# set-up assembles the student without the training pipeline: the runtime half lives in core/student.py
from core.student import assemble_student, create_student, load_teacher, teacher_fingerprint  # noqa: F401

MAX_SHIPPED_MB = 30  # a 3-layer decoder of whisper-base is 25.2 MB in fp16 (2 layers: 16.8 MB)


def ship(trained: dict[str, torch.Tensor], teacher_dir: Path, out_dir: Path, decoder_layers: int = 2,
         info: dict | None = None) -> Path:
    """Write every student tensor that differs (in fp16) from create_student(teacher); returns the file."""
    from safetensors.torch import save_file

    teacher = load_teacher(Path(teacher_dir))
    base = create_student(teacher, decoder_layers)
    reference = base.state_dict()
    changed = {}
    for name, tensor in trained.items():
        if name not in reference or reference[name].shape != tensor.shape:
            raise ValueError(f"{name} {tuple(tensor.shape)} is not a tensor of a {decoder_layers}-layer student")
        value = tensor.detach().to(torch.float16).cpu().contiguous()
        if not torch.equal(value, reference[name]):
            changed[name] = value
    metadata = {
        "format": SHIPPED_FORMAT,
        "teacher": Path(teacher_dir).name,
        "decoder_layers": str(decoder_layers),
        "distilled_from_layers": json.dumps(base.config.distilled_from_layers),
        "teacher_embed_sha256": teacher_fingerprint(teacher),
        "info": json.dumps(info or {}),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SHIPPED_FILE
    tmp = path.with_suffix(".tmp")
    save_file(changed, str(tmp), metadata=metadata)
    tmp.replace(path)
    path.chmod(0o644)
    return path


def export(run: Path, teacher_dir: Path, progress: Callable[[str], None] = print) -> tuple[Path, Path]:
    """The latest checkpoint as a shipped file (<run>/shipped) and the full student assembled from it
    (<run>/student): evaluation measures exactly what ships (fp16 decoder on the teacher)."""
    from core.distill.train import load_trained

    run = Path(run)
    trained, meta = load_trained(run)
    layers = int(meta["config"].get("decoder_layers", 2))
    path = ship(trained, teacher_dir, run / "shipped", layers, info={"step": meta["step"]})
    size_mb = path.stat().st_size / 1e6
    progress(f"export: {path} ({size_mb:.1f} MB, step {meta['step']})")
    if size_mb > MAX_SHIPPED_MB:
        progress(f"export: warning: {size_mb:.1f} MB is over the {MAX_SHIPPED_MB} MB budget")
    vocabulary = json.loads(write_draft_vocabulary(run, teacher_dir, run / "shipped").read_text())
    progress(f"export: draft vocabulary of {vocabulary['size']} tokens "
             f"({vocabulary['label_token_coverage']:.2%} of label tokens)")
    student_dir = assemble_student(teacher_dir, run / "shipped", run / "student")
    choose_heads(run, teacher_dir, student_dir, run / "shipped", progress)
    student_dir = assemble_student(teacher_dir, run / "shipped", run / "student")  # with the heads chosen
    progress(f"export: full student assembled in {student_dir}")
    return run / "shipped", student_dir


def publish(run: Path, to: Path, progress: Callable[[str], None] = print) -> Path:
    """Copy the run's shipped file and model card into the repository (assets/student)."""
    from core.distill.card import write_model_card

    run, to = Path(run), Path(to)
    if not shipped_available(run / "shipped"):
        raise RuntimeError(f"nothing exported in {run / 'shipped'}: run `python -m core.distill export` first")
    write_model_card(run, run / "shipped" / MODEL_CARD)
    to.mkdir(parents=True, exist_ok=True)
    for name in (*SHIPPED_FILES, MODEL_CARD):
        if (run / "shipped" / name).is_file():
            shutil.copyfile(run / "shipped" / name, to / name)
    progress(f"ship: {to / SHIPPED_FILE} ({(to / SHIPPED_FILE).stat().st_size / 1e6:.1f} MB) and {to / MODEL_CARD}")
    return to
