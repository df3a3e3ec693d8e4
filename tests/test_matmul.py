"""The CPU products of a decoding step (core/matmul.py) compute `x @ weight.T` whatever the input's layout."""

import pytest
import torch

from core.matmul import MAX_ROWS, project


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 13, MAX_ROWS + 1])
@pytest.mark.parametrize("transposed", [False, True])
def test_project_equals_the_plain_product(rows, transposed):
    generator = torch.Generator().manual_seed(rows)
    weight = torch.randn(300, 64, generator=generator)
    hidden = torch.randn(rows, 64, generator=generator)
    if transposed:  # as the MLP's second product receives it: the first product's output, transposed
        hidden = hidden.T.contiguous().T
    out = project(hidden[None], weight)
    assert out.shape == (1, rows, 300)
    torch.testing.assert_close(out[0], hidden @ weight.T, rtol=1e-5, atol=1e-5)
