"""Model folders and the student's shipped files: manifests with checksums, and what a student ships.

Set-up (core/weights.py, core/student.py), the model loader (core/models.py) and the distillation pipeline
(core/distill/ship.py) all read these; keeping them here lets none of those import another.

    assets/student/decoder.safetensors     the trained decoder tensors (fp16) and their metadata
    assets/student/draft_vocabulary.json   the token ids the student drafts from (core/draft.py)
    assets/student/alignment_heads.json    the heads that time its words, chosen by measurement (core/distill/heads.py)
    assets/student/MODEL_CARD.md           data, voices, compute, losses, WER, acceptance, speed
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "MANIFEST.json"
SHIPPED_FILE = "decoder.safetensors"
DRAFT_VOCABULARY_FILE = "draft_vocabulary.json"
ALIGNMENT_HEADS_FILE = "alignment_heads.json"
MODEL_CARD = "MODEL_CARD.md"
SHIPPED_FORMAT = "distil-whisper-arena/1"
SHIPPED_FILES = (SHIPPED_FILE, DRAFT_VOCABULARY_FILE, ALIGNMENT_HEADS_FILE)  # what assembling a student reads


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(model_dir: Path, **info) -> None:
    """Record every file's sha256; also make them world-readable (safetensors writes mode 0600)."""
    for path in model_dir.iterdir():
        if path.is_file():
            path.chmod(0o644)
    files = {p.name: sha256_file(p) for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
    (model_dir / MANIFEST).write_text(json.dumps({"files": files, **info}, indent=1))


def read_manifest(model_dir: Path) -> dict:
    path = Path(model_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def verify(model_dir: Path, check_hashes: bool = True) -> bool:
    """A checkpoint is good when every file listed in its manifest exists with the recorded hash."""
    files = read_manifest(model_dir).get("files")
    if files is None:
        return False
    return all(
        (model_dir / name).is_file() and (not check_hashes or sha256_file(model_dir / name) == digest)
        for name, digest in files.items()
    )


def load_draft_vocabulary(student_dir: str | Path) -> list[int] | None:
    """The token ids a student drafts from, when its folder ships a list (None: the whole vocabulary)."""
    path = Path(student_dir) / DRAFT_VOCABULARY_FILE
    return json.loads(path.read_text())["ids"] if path.is_file() else None


def load_alignment_heads(shipped_dir: str | Path) -> list[list[int]] | None:
    """The (layer, head) pairs a shipped student times words with (None: not measured)."""
    path = Path(shipped_dir) / ALIGNMENT_HEADS_FILE
    return json.loads(path.read_text())["alignment_heads"] if path.is_file() else None


def shipped_available(shipped_dir: Path) -> bool:
    return (Path(shipped_dir) / SHIPPED_FILE).is_file()


def read_shipped_metadata(shipped_dir: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(Path(shipped_dir) / SHIPPED_FILE), framework="pt") as f:
        return dict(f.metadata() or {})


def shipped_fingerprint(shipped_dir: Path) -> dict[str, str]:
    """sha256 of each file a student ships (its decoder, draft vocabulary, alignment heads): what it was
    assembled from."""
    return {name: sha256_file(Path(shipped_dir) / name) for name in SHIPPED_FILES
            if (Path(shipped_dir) / name).is_file()}


def student_is_current(student_dir: Path, shipped_dir: Path) -> bool:
    """False when `student_dir` was not assembled from what ships now (set-up must rebuild it)."""
    if not shipped_available(shipped_dir):
        return True
    return read_manifest(student_dir).get("shipped") == shipped_fingerprint(shipped_dir)
