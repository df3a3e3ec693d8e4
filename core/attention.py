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
import functools

import torch

NAME = "row_exact"
ROWS = 4  # query rows in every attention call (a pass over more rows makes several calls)
MAX_ROWS = 16  # past a step's few positions (a verify pass reads at most 13): one plain call
KEY_BLOCK = 64  # keys padded to a multiple of this


def _padded(x: torch.Tensor, length: int) -> torch.Tensor:
    """`x` (B, H, n, d) with zero rows appended along n up to `length`."""
    return torch.nn.functional.pad(x, (0, 0, 0, length - x.shape[2])) if x.shape[2] < length else x


@functools.lru_cache(maxsize=4096)
def _masks(keys: int, rows: int, width: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per group of ROWS query rows, which of `width` padded keys each row sees: a causal pass over `rows` new
    tokens ending at `keys`. Padding rows see the first key (a row with no key would give NaN)."""
    masks = []
    for first in range(0, rows, ROWS):
        ends = torch.arange(keys - rows + first, keys - rows + min(first + ROWS, rows), device=device)
        mask = torch.zeros(ROWS, width, dtype=torch.bool, device=device)
        mask[: len(ends)] = torch.arange(width, device=device)[None, :] <= ends[:, None]
        mask[len(ends):, 0] = True
        masks.append(mask)
    return tuple(masks)


def row_exact_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention interface: (B, n, H, d) output. Every call has ROWS query rows (padded), so
    the fused kernel takes one shape; a causal module's keys are padded to a multiple of KEY_BLOCK and each
    row masked to the keys up to its own position: a row of a verify pass then meets exactly the keys, mask
    and shapes it met as a one-token step (whose cache ends at that row). Whisper's decoder scales the
    queries itself (scaling 1.0); the cross-attention's rows see every encoder frame."""
    rows, keys = query.shape[2], key.shape[2]
    causal = getattr(module, "is_causal", False)
    if rows > MAX_ROWS:  # a prompt or a teacher-forced pass: not a step, nothing to match
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=scaling,
            is_causal=attention_mask is None and causal).transpose(1, 2).contiguous(), None
    masks = [None] * -(-rows // ROWS)
    if causal:
        width = -(-keys // KEY_BLOCK) * KEY_BLOCK
        key, value = _padded(key, width), _padded(value, width)
        masks = _masks(keys, rows, width, key.device)
    parts = [torch.nn.functional.scaled_dot_product_attention(
        _padded(query[:, :, first : first + ROWS], ROWS), key, value, attn_mask=mask, scale=scaling
    )[:, :, : min(ROWS, rows - first)] for first, mask in zip(range(0, rows, ROWS), masks)]
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
