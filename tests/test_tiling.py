"""Window layout and blend weights (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from urst_cli.tiling import plan_axis


@pytest.mark.parametrize("length", [16, 40, 512, 516, 1000, 1536, 4000, 10004])
@pytest.mark.parametrize("window,context,feather", [(512, 64, 16), (256, 64, 0), (1024, 72, 16)])
def test_weights_are_a_partition_of_unity_inside_trusted_zones(length, window, context, feather):
    axis = plan_axis(length, window, context, feather)
    total = np.zeros(length)
    for i in range(len(axis)):
        w = axis.weights(i)
        start = axis.starts[i]
        assert w.min() >= 0
        total[start: start + axis.window] += w
        nonzero = np.nonzero(w)[0]
        lo, hi = axis.support(i)
        assert (lo, hi) == (start + nonzero[0], start + nonzero[-1] + 1)
        # nothing is taken from within context - feather/2 of a cut (non-image) edge
        if start > 0:
            assert nonzero[0] >= context - feather // 2
        if start + axis.window < length:
            assert nonzero[-1] < axis.window - (context - feather // 2)
        core_lo, core_hi = axis.core(i)
        assert core_lo % 4 == 0 and core_hi % 4 == 0 and start % 4 == 0
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert axis.bounds[0] == 0 and axis.bounds[-1] == length
    assert all(a < b for a, b in zip(axis.bounds, axis.bounds[1:]))


def test_invalid_layout_is_refused():
    with pytest.raises(ValueError):
        plan_axis(1000, 128, 64, 16)


def test_batch_for_memory_fits_the_budget_or_what_is_free():
    from urst_cli.engine import batch_for_memory

    mib = 2**20
    assert batch_for_memory(300 * mib, 1536 * mib, 80_000 * mib) == 5          # the budget decides
    assert batch_for_memory(300 * mib, 1536 * mib, 1000 * mib) == 2            # a GPU shared with others
    assert batch_for_memory(300 * mib, 1536 * mib, 10 * mib) == 1              # never zero
    assert batch_for_memory(1 * mib, 1536 * mib, 80_000 * mib, cap=32) == 32   # tiny patches: capped
