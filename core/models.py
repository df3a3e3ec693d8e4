"""Load a preset's teacher and student once, on the best device, ready for all three modes."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from core import weights
from core.checkpoints import load_draft_vocabulary, verify
from core.errors import ModelUnavailableError
from core.matmul import use_small_batch_products
from core.precision import available, in_precision, native_bf16
from core.presets import Preset
from core.results import ModelInfo

HUB_HOST = ("huggingface.co", 443)
HUB_PROBE_TIMEOUT_S = 3.0
BF16_ENCODER_ENV = "ARENA_CPU_BF16_ENCODER"

log = logging.getLogger(__name__)


@dataclass
class LoadedModels:
    preset: Preset
    teacher: object  # WhisperForConditionalGeneration
    student: object  # WhisperForConditionalGeneration (shares the teacher's encoder module when equal)
    processor: object  # WhisperProcessor
    device: torch.device
    dtype: torch.dtype
    attention: str
    shared_encoder: bool
    draft_vocabulary: list[int] | None = None  # tokens the student drafts from (core/draft.py)
    precision: str = "fp32"  # the decoders' (core/precision.py); the encoder's shows in `info().dtype`

    def in_precision(self, precision: str) -> "LoadedModels":
        """These models with both decoders in `precision`, the encoder shared (still one encoder pass)."""
        if precision == self.precision:
            return self
        return replace(self, teacher=in_precision(self.teacher, precision),
                       student=in_precision(self.student, precision), precision=precision)

    def info(self) -> ModelInfo:
        def millions(module) -> float:
            return sum(p.numel() for p in module.parameters()) / 1e6

        return ModelInfo(
            preset=self.preset.name,
            teacher=self.preset.teacher,
            student=self.preset.student,
            teacher_params_m=round(millions(self.teacher), 1),
            student_params_m=round(millions(self.student), 1),
            student_decoder_params_m=round(millions(self.student.model.decoder), 1),
            teacher_decoder_layers=self.teacher.config.decoder_layers,
            student_decoder_layers=self.student.config.decoder_layers,
            device=self.device.type.upper() if self.device.type == "cpu" else torch.cuda.get_device_name(self.device),
            dtype=_dtype_name(self.dtype, self.teacher.model.encoder.conv1.weight.dtype),
            precisions=available(self.device),
            attention=self.attention,
            shared_encoder=self.shared_encoder,
            multilingual=bool(getattr(self.teacher.generation_config, "is_multilingual", False)),
            student_english_only=self.preset.student_english_only,
        )


def _dtype_name(dtype: torch.dtype, encoder_dtype: torch.dtype) -> str:
    name = str(dtype).replace("torch.", "")
    return name if encoder_dtype == dtype else f"{name}, encoder {str(encoder_dtype).replace('torch.', '')}"


def pick_device() -> tuple[torch.device, torch.dtype, str]:
    """fp16 + sdpa (flash-attention 2 when installed) on a GPU; fp32 + sdpa on a CPU."""
    if torch.cuda.is_available():
        try:
            import flash_attn  # noqa: F401

            attention = "flash_attention_2"
        except ImportError:
            attention = "sdpa"
        return torch.device("cuda"), torch.float16, attention
    return torch.device("cpu"), torch.float32, "sdpa"


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=HUB_PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _resolve(preset: Preset, name: str) -> str:
    """A local folder for the offline preset; a hub id (or its local cache) otherwise."""
    if preset.local:
        folder = weights.MODELS_DIR / name
        if not verify(folder, check_hashes=False):
            raise ModelUnavailableError(
                f"The offline models for preset '{preset.name}' are not set up ({folder} is missing or "
                "incomplete). Run `make setup` (or `python -m core setup`) once."
            )
        return str(folder)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any cache miss means we need the network
        if not _hub_reachable():
            raise ModelUnavailableError(
                f"Preset '{preset.name}' needs {preset.teacher} and {preset.student} from the Hugging Face Hub, "
                "which this machine cannot reach (or HF_HUB_OFFLINE=1 is set). Use the offline preset with "
                "`--preset local` / ARENA_PRESET=local, or run where the hub is reachable."
            ) from None
        return name


def _load_seq2seq(path: str, dtype: torch.dtype, attention: str, device: torch.device):
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype, attn_implementation=attention)
    return model.to(device).eval()


@torch.no_grad()
def encoder_matches(a, b) -> bool:
    """True when two Whisper models carry the same encoder weights (then one encoder pass serves both:
    Distil-Whisper copies the teacher's encoder and freezes it)."""
    sa, sb = a.model.encoder.state_dict(), b.model.encoder.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].to(sb[k].dtype).to(sb[k].device), sb[k]) for k in sa
    )


def bf16_encoder_wanted(device: torch.device) -> bool:
    """On a CPU with native bf16 (AVX512-BF16 or AMX) the encoder runs faster in bf16; elsewhere bf16 is
    emulated and slower. ARENA_CPU_BF16_ENCODER=0/1 overrides the choice."""
    if device.type != "cpu":
        return False
    choice = os.environ.get(BF16_ENCODER_ENV, "auto").strip().lower()
    if choice in ("0", "1"):
        return choice == "1"
    return native_bf16()


def run_encoder_in_bf16(encoder) -> None:
    """bf16 weights, fp32 in and out: callers see an fp32 encoder. Speculative decoding stays exact, since
    teacher and draft model read the same encoder output."""

    def cast(x):
        return x.to(torch.bfloat16) if torch.is_tensor(x) and x.is_floating_point() else x

    def to_bf16(_module, args, kwargs):
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    def to_fp32(_module, _args, output):
        output.last_hidden_state = output.last_hidden_state.float()
        return output

    encoder.to(torch.bfloat16)
    encoder.register_forward_pre_hook(to_bf16, with_kwargs=True)
    encoder.register_forward_hook(to_fp32)


def load_models(preset: Preset) -> LoadedModels:
    from transformers import WhisperProcessor

    device, dtype, attention = pick_device()
    teacher_path, student_path = _resolve(preset, preset.teacher), _resolve(preset, preset.student)
    try:
        teacher = _load_seq2seq(teacher_path, dtype, attention, device)
        student = _load_seq2seq(student_path, dtype, attention, device)
        processor = WhisperProcessor.from_pretrained(teacher_path)
    except OSError as err:
        raise ModelUnavailableError(f"Could not load the models of preset '{preset.name}': {err}") from err

    shared = encoder_matches(teacher, student)
    if shared:
        student.model.encoder = teacher.model.encoder
    if device.type == "cpu":  # the verify pass then grows slowly with the draft (core/matmul.py)
        for model in (teacher, student):
            use_small_batch_products(model.model.decoder)
            use_small_batch_products(model.proj_out)
    if bf16_encoder_wanted(device):
        for encoder in {id(m.model.encoder): m.model.encoder for m in (teacher, student)}.values():
            run_encoder_in_bf16(encoder)
    log.info("loaded %s: teacher %s, student %s, shared encoder %s, encoder dtype %s", preset.name, teacher_path,
             student_path, shared, teacher.model.encoder.conv1.weight.dtype)
    return LoadedModels(preset, teacher, student, processor, device, dtype, attention, shared,
                        load_draft_vocabulary(student_path) if Path(student_path).is_dir() else None,
                        available(device)[0])
