"""The precision a request's decoders run in: fp32 or int8 on a CPU, fp16 on a GPU.

A precision is a property of the decoders' weight products (the student's and the teacher's decoder, where
a mode spends its time); the encoder, shared by every mode, keeps the precision the device gives it
(core/models.py). Every mode of a request runs in the same precision, so ratios stay like for like.

Speculative decoding must stay the teacher's output in each precision. A verify pass reads k tokens at once
where greedy decoding reads one, so anything whose result for one row depends on the other rows rounds
differently, and a near-tie between two tokens can flip. In fp32 those differences are around 1e-7 of a
logit, far below the margins seen (no mismatch on any benchmark clip). A precision that rounds every
product's input to bf16 turns them into whole bf16 steps now and then, and ties flipped (2 of 20 held-out
clips in int8 before this design). So in int8 every row is computed as a one-token step computes it, to
the bit:
- each weight product is exact per row: a weight-only kernel (torch's `_weight_int8pack_mm`: nothing of the
  activations is quantized; torch's dynamic quantization scales each call's activations together, so a
  verify pass would round otherwise than one-token steps);
- attention runs as core/attention.py's row-exact attention;
- everything else (the residual stream, layer norms, softmax) stays fp32 and works row by row.

- fp32: the weights as converted.
- int8: int8 weights with one scale per output row, bf16 input ("W8A16"). The cross-attention key and value
  projections, run once per window over the 1500 encoder frames, are bf16: a full matrix product, where the
  int8 kernel does not pay.

bf16 decoders are not offered: on a CPU without AMX their products are no faster than fp32's at a step's
few rows, and their products were not exact per row (docs/benchmarks.md, session 8).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from core.errors import ArenaError
from core.attention import use_row_exact_attention

FP32, INT8, FP16 = "fp32", "int8", "fp16"
CPU_PRECISIONS = (FP32, INT8)
GPU_PRECISIONS = (FP16,)


def native_bf16() -> bool:
    """True on a CPU with bf16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere torch emulates it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def available(device: torch.device) -> tuple[str, ...]:
    """The precisions this device runs, its default first. int8 (bf16 activations) needs a CPU with native
    bf16: emulated, it is slower than fp32 and shows nothing worth comparing."""
    if device.type != "cpu":
        return GPU_PRECISIONS
    return CPU_PRECISIONS if native_bf16() else (FP32,)


def check(precision: str | None, device: torch.device) -> str:
    """`precision`, or the device's default for None; ArenaError for one this device does not run."""
    offered = available(device)
    if precision is None:
        return offered[0]
    if precision not in offered:
        raise ArenaError(f"Precision {precision!r} does not run here; choose one of: {', '.join(offered)}.")
    return precision


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (symmetric, one scale per output row): bf16 in, fp32 out."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scale).float()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class Bf16Linear(nn.Module):
    """A linear layer with bf16 weights: bf16 in, fp32 out. For the products over the encoder frames."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x.to(torch.bfloat16) @ self.weight.T).float()
        return out if self.bias is None else out + self.bias


STEP_PRODUCTS = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "out_proj"),
                 ("encoder_attn", "q_proj"), ("encoder_attn", "out_proj"), ("", "fc1"), ("", "fc2"))
FRAME_PRODUCTS = (("encoder_attn", "k_proj"), ("encoder_attn", "v_proj"))  # once per window, over the frames


def in_precision(model, precision: str):
    """A copy of a Whisper model (WhisperForConditionalGeneration, fp32) whose decoder's weight products and
    output projection run in `precision` (int8), sharing `model`'s encoder (no copy of it). `model` is left
    as it was."""
    if precision != INT8:
        raise ValueError(f"no {precision} copy of a decoder: the models load in their device's default")
    encoder = model.model.encoder
    model.model.encoder = None
    try:
        variant = copy.deepcopy(model)
    finally:
        model.model.encoder = encoder
    variant.model.encoder = encoder
    for layer in variant.model.decoder.layers:
        for products, kind in ((STEP_PRODUCTS, Int8Linear), (FRAME_PRODUCTS, Bf16Linear)):
            for part, name in products:
                owner = getattr(layer, part) if part else layer
                setattr(owner, name, kind(getattr(owner, name)))
    variant.proj_out = Int8Linear(model.proj_out)  # untied: the embedding keeps its fp32 copy
    use_row_exact_attention(variant.model.decoder)
    return variant.eval()
