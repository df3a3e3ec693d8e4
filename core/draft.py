"""The draft model of speculative decoding, as a lean decoder step.

Speculative decoding only pays when a draft step costs a small fraction of a teacher step (the cost model in
core/costs.py). On a CPU a small decoder's step at batch 1 is bound by the bytes it reads and by the
framework's per-call work, not by arithmetic, so this step reads few bytes and makes few calls:

- weights as plain tensors, the linear layers in int8 where the device is a CPU (with native bf16: int8
  weights and bf16 activations, core/precision.py's `Int8Linear`; without: torch's dynamic quantization),
  the attention projections of a layer fused into one matrix;
- self-attention keys and values in preallocated buffers (no concatenation, no cache objects), the
  cross-attention keys and values over the encoder frames computed once per window (in bf16 where the CPU
  has it) and stored contiguous per head; attention on 4-d tensors, which a CPU runs in its fused kernel
  (3-d ones take the slow reference path);
- an output head over the draft vocabulary only (the tokens the teacher actually says), its logits scattered
  into a full-size row so Whisper's logit rules apply unchanged.

None of it can change speculative decoding's output: the teacher verifies every drafted token over its whole
vocabulary in its own precision, so a cheaper, slightly different draft only changes how many are accepted.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from core.precision import Bf16Linear, Int8Linear, native_bf16

NEG_INF = float("-inf")


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, int8: bool) -> nn.Module:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    layer.weight.data.copy_(weight)
    if bias is not None:
        layer.bias.data.copy_(bias)
    if not int8:
        return layer
    if native_bf16():
        return Int8Linear(layer)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch deprecates its quantized tensors for torchao; still the fastest here
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(nn.Sequential(layer), {nn.Linear: per_channel_dynamic_qconfig})[0]


def _frames_linear(linear: nn.Linear, int8: bool) -> nn.Module:
    """A product over the encoder's 1500 frames, once per window: bf16 where the CPU has it natively (a product
    of that many rows is bound by arithmetic, where native bf16 beats fp32: docs/benchmarks.md, session 9),
    else the layer as it is."""
    return Bf16Linear(linear) if int8 and native_bf16() else copy.deepcopy(linear)


def _bias(linear: nn.Linear) -> torch.Tensor:
    weight = linear.weight
    return linear.bias.detach() if linear.bias is not None else weight.new_zeros(linear.out_features)


class _Layer:
    """One decoder layer's weights: fused self-attention q/k/v, cross-attention query and output, the MLP."""

    def __init__(self, layer, int8: bool):
        attn, cross = layer.self_attn, layer.encoder_attn
        self.heads, self.width, self.scale = attn.num_heads, attn.head_dim, attn.scaling
        qkv = torch.cat([attn.q_proj.weight * attn.scaling, attn.k_proj.weight, attn.v_proj.weight]).detach()
        qkv_bias = torch.cat([_bias(attn.q_proj) * attn.scaling, _bias(attn.k_proj), _bias(attn.v_proj)])
        self.qkv = _linear(qkv, qkv_bias, int8)
        self.out = _linear(attn.out_proj.weight.detach(), _bias(attn.out_proj), int8)
        self.cross_q = _linear(cross.q_proj.weight.detach() * cross.scaling, _bias(cross.q_proj) * cross.scaling, int8)
        self.cross_out = _linear(cross.out_proj.weight.detach(), _bias(cross.out_proj), int8)
        self.cross_k, self.cross_v = _frames_linear(cross.k_proj, int8), _frames_linear(cross.v_proj, int8)
        self.fc1 = _linear(layer.fc1.weight.detach(), _bias(layer.fc1), int8)
        self.fc2 = _linear(layer.fc2.weight.detach(), _bias(layer.fc2), int8)
        self.norms = [copy.deepcopy(n) for n in (layer.self_attn_layer_norm, layer.encoder_attn_layer_norm,
                                                 layer.final_layer_norm)]

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (n, d) -> (1, heads, n, width)
        return x.view(1, -1, self.heads, self.width).transpose(1, 2)


@dataclass
class DraftState:
    """One window's caches: self-attention keys/values per layer, cross-attention keys/values, length read."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    cross: list[tuple[torch.Tensor, torch.Tensor]]
    length: int = 0


class LeanDraft:
    """A Whisper decoder (the student's) as a draft model: `start` a window, `read` tokens, get the logits of
    the last one over the draft vocabulary (full-size, -inf elsewhere); `truncate` forgets rejected tokens."""

    def __init__(self, model, vocabulary: Sequence[int] | None, int8: bool | None = None):
        decoder = model.model.decoder
        weight = model.proj_out.weight.detach()
        int8 = weight.device.type == "cpu" if int8 is None else int8
        self.vocab_size, self.max_length = weight.shape[0], decoder.embed_positions.weight.shape[0]
        self.device, self.dtype = weight.device, weight.dtype
        ids = range(self.vocab_size) if vocabulary is None else sorted(set(vocabulary))
        self.ids = torch.tensor(list(ids), device=self.device)
        self.embed = decoder.embed_tokens.weight.detach()
        self.positions = decoder.embed_positions.weight.detach()
        self.layers = [_Layer(layer, int8) for layer in decoder.layers]
        self.norm = copy.deepcopy(decoder.layer_norm)
        self.head = _linear(weight[self.ids], None, int8)

    @torch.inference_mode()
    def start(self, encoder_states: torch.Tensor) -> DraftState:
        """Caches for one window (`encoder_states`: (1, frames, d))."""
        states = encoder_states[0].to(self.dtype)
        # contiguous per head: the fused attention kernel reads a transposed view slower, at every step
        cross = [(layer.split(layer.cross_k(states)).contiguous(), layer.split(layer.cross_v(states)).contiguous())
                 for layer in self.layers]
        shape = (1, self.layers[0].heads, self.max_length, self.layers[0].width) if self.layers else (0,)
        def buffer():
            return torch.zeros(shape, device=self.device, dtype=self.dtype)

        return DraftState([buffer() for _ in self.layers], [buffer() for _ in self.layers], cross)

    @torch.inference_mode()
    def read(self, state: DraftState, tokens: Sequence[int]) -> torch.Tensor:
        """(1, vocab) logits for the token after `tokens`, read after what `state` holds."""
        start, n = state.length, len(tokens)
        x = self.embed[list(tokens)] + self.positions[start:start + n]  # the residual stream stays fp32
        mask = None if n == 1 else torch.ones(n, start + n, dtype=torch.bool, device=self.device).tril(start)
        for layer, keys, values, (cross_k, cross_v) in zip(self.layers, state.keys, state.values, state.cross):
            q, k, v = layer.qkv(layer.norms[0](x)).split(layer.heads * layer.width, dim=-1)
            keys[:, :, start:start + n] = layer.split(k)
            values[:, :, start:start + n] = layer.split(v)
            attended = F.scaled_dot_product_attention(layer.split(q), keys[:, :, :start + n], values[:, :, :start + n],
                                                      attn_mask=mask, scale=1.0)
            x = x + layer.out(attended.transpose(1, 2).reshape(n, -1))
            q = layer.split(layer.cross_q(layer.norms[1](x)))
            attended = F.scaled_dot_product_attention(q, cross_k, cross_v, scale=1.0)
            x = x + layer.cross_out(attended.transpose(1, 2).reshape(n, -1))
            x = x + layer.fc2(F.gelu(layer.fc1(layer.norms[2](x))))
        state.length = start + n
        logits = self.head(self.norm(x[-1:]))
        full = logits.float().new_full((1, self.vocab_size), NEG_INF)
        full[:, self.ids] = logits.float()
        return full

    @staticmethod
    def truncate(state: DraftState, length: int) -> None:
        state.length = min(state.length, length)


PRIOR_TOKENS = 2.0  # a window's acceptance estimate starts as this many tokens at the policy's prior


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens one teacher pass keeps from a k-token draft when each drafted token is accepted with
    probability alpha until the first rejection: the accepted ones plus the teacher's own token."""
    return float(k + 1) if alpha >= 1.0 else (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


@dataclass(frozen=True)
class DraftPolicy:
    """How long a draft is, from the cost model (core/costs.py): costs in teacher decoder steps (T).

    A pass over a k-token draft costs k draft steps and a verify pass of V(k) = verify_base + verify_slope * k;
    it keeps expected_tokens(alpha, k). The length that keeps the most tokens per unit of cost is drafted,
    alpha being the window's running per-token acceptance. A draft also stops as soon as the draft model's own
    probability of its token falls below `confidence` (dynamic speculation lookahead): that token is still
    proposed, the ones after it are not, since the teacher would rarely keep them. The defaults describe a
    launch-bound GPU step (a verify pass barely grows with k); CPU presets carry measured costs."""

    max_tokens: int = 12
    confidence: float = 0.0
    step_cost: float = 0.2
    verify_base: float = 1.0
    verify_slope: float = 0.02
    prior: float = 0.6

    def length(self, kept: int, rejected: int) -> int:
        """The draft length for a window whose drafts so far had `kept` tokens accepted and `rejected` rejections."""
        alpha = (kept + self.prior * PRIOR_TOKENS) / (kept + rejected + PRIOR_TOKENS)
        return max(range(1, self.max_tokens + 1), key=lambda k: expected_tokens(alpha, k) / (
            self.verify_base + self.verify_slope * k + self.step_cost * k))


class DraftModel:
    """The student as draft model: its lean decoder step and the policy that sizes its drafts."""

    def __init__(self, model, vocabulary: Sequence[int] | None = None, policy: DraftPolicy = DraftPolicy(),
                 int8: bool | None = None):
        self.decoder = LeanDraft(model, vocabulary, int8)
        self.policy = policy
