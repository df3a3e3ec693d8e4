"""Matrix products shaped for a CPU at the few rows a decoding step has.

A decoding step at batch 1 multiplies 1 to 13 positions by weight matrices far larger than the activations.
Written `x @ weight.T` (nn.Linear), a CPU BLAS runs that as a matrix-vector product for one position, and for
a few positions packs the whole weight matrix before multiplying: the packing costs as much as the product,
so a verify pass over 2 tokens cost about twice a one-token step. Written `weight @ x.T` with a few columns
it streams the weights once, at memory speed, provided `x` is laid out row by row: given a transposed `x`
(the MLP's second product reads the first one's output, which `weight @ x.T` leaves transposed) the same BLAS
takes a path 3-5x slower, so the input is made contiguous first. Same arithmetic in fp32 (only the summation order differs, as
between any two BLAS kernels); docs/benchmarks.md has the measured table. A GPU gets the plain product.
"""

from __future__ import annotations

import math
import types

import torch
from torch import nn

COLUMNS = 8  # positions per product: wider products fall back to the packing path
MAX_ROWS = 16  # past a decoding step's few positions (a batch of windows, the encoder frames) the plain product


def project(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`hidden @ weight.T` for the output projection ((..., d) onto (vocab, d)), computed the way a CPU's BLAS
    runs fastest at the few rows a decoding step has.

    Why: at batch 1 a step projects 1 to 13 positions onto the whole vocabulary, a weight matrix far larger than
    the activations. As `hidden @ weight.T` a CPU BLAS runs that as a matrix-vector product (one position) or
    packs the whole weight matrix first (a few positions): the verify pass of speculative decoding then grew
    with every drafted token. As `weight @ hidden.T` with 2 to COLUMNS columns per product it streams
    the weights once per product, at memory speed; one position is padded to two (docs/benchmarks.md has the
    measured table). A GPU runs either form well: it gets the plain product."""
    if weight.device.type != "cpu" or hidden.shape[:-1].numel() > MAX_ROWS:
        return hidden @ weight.T  # many rows (the encoder frames' cross-attention keys): packing pays for itself
    flat = hidden.reshape(-1, hidden.shape[-1]).contiguous()  # a transposed `hidden` takes BLAS's slow path
    rows = len(flat)
    if rows == 1:
        out = (weight @ torch.cat([flat, flat]).T)[:, :1]
    else:
        parts = math.ceil(rows / COLUMNS)
        bounds = [round(i * rows / parts) for i in range(parts + 1)]
        out = torch.cat([weight @ flat[a:b].T for a, b in zip(bounds, bounds[1:])], dim=1)
    return out.T.reshape(*hidden.shape[:-1], weight.shape[0])


def _small_batch_forward(self, x: torch.Tensor) -> torch.Tensor:
    out = project(x, self.weight)
    return out if self.bias is None else out + self.bias


def use_small_batch_products(module: nn.Module) -> None:
    """Every nn.Linear inside `module` (a CPU decoder) multiplies as `project` does."""
    for linear in module.modules():
        if isinstance(linear, nn.Linear) and linear.weight.device.type == "cpu":
            linear.forward = types.MethodType(_small_batch_forward, linear)
