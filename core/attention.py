"""Attention whose result for one query row never depends on the other rows: speculative decoding's
verify pass, which reads k tokens at once, then equals k one-token steps to the bit.

Why: a fused attention kernel computes a block of query rows together, and the arithmetic it picks
depends on how many rows there are and on the keys' length; a verify pass and a greedy step round
differently (around 1e-7 in fp32). A precision that rounds activations to bf16 before each product
(core/precision.py) turns that into a whole bf16 step now and then, and a near-tie between two tokens flips.

So every call has the same shape for a row wherever it sits: the queries go in groups of ROWS (padded),
and a causal module's keys are padded to a multiple of KEY_BLOCK with each row masked to the keys up to its
own position. A row of a verify pass then meets exactly the keys, mask and shapes it met as a one-token step.
The price is a little padding work per call (docs/benchmarks.md has the cost table).
"""

from __future__ import annotations

import copy

import torch

NAME = "row_exact"
ROWS = 4  # query rows in every attention call (a pass over more rows makes several calls)
MAX_ROWS = 16  # past a step's few positions (a verify pass reads at most 13): one plain call
KEY_BLOCK = 64  # keys padded to a multiple of this


def _padded(x: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    pad = length - x.shape[dim]
    if pad <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def row_exact_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention interface: (B, n, H, d) output. Every call has ROWS query rows (padded), so
    the fused kernel takes one shape; a causal module's keys are padded to a multiple of KEY_BLOCK and each
    row masked to the keys up to its own position: a row of a verify pass then meets exactly the keys, mask
    and shapes it met as a one-token step (whose cache ends at that row). Whisper's decoder scales the
    queries itself (scaling 1.0); the cross-attention's rows see every encoder frame."""
    rows, keys = query.shape[2], key.shape[2]
    if rows > MAX_ROWS:  # a prompt or a teacher-forced pass: not a step, nothing to match
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling,
            is_causal=attention_mask is None and getattr(module, "is_causal", False)).transpose(1, 2).contiguous(), None
    causal = getattr(module, "is_causal", False)
    width = -(-keys // KEY_BLOCK) * KEY_BLOCK if causal else keys
    if causal:
        key, value = _padded(key, width, 2), _padded(value, width, 2)
    parts = []
    for first in range(0, rows, ROWS):
        chunk = query[:, :, first : first + ROWS]
        mask = None
        if causal:
            ends = torch.arange(keys - rows + first, keys - rows + first + chunk.shape[2], device=key.device)
            mask = _padded(torch.arange(width, device=key.device)[None, :] <= ends[:, None], ROWS, 0)
            mask[chunk.shape[2]:, 0] = True  # padding rows attend somewhere (no NaN)
        out = torch.nn.functional.scaled_dot_product_attention(_padded(chunk, ROWS, 2), key, value, attn_mask=mask,
                                                               scale=scaling)
        parts.append(out[:, :, : chunk.shape[2]])
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def use_row_exact_attention(decoder) -> None:
    """Every attention module of a Whisper decoder computes as `row_exact_attention` (the encoder's, and the
    decoder's own mask building, keep the model's implementation)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, row_exact_attention)
    for layer in decoder.layers:
        for module in (layer.self_attn, layer.encoder_attn):
            config = copy.copy(module.config)
            config._attn_implementation = NAME
            module.config = config
