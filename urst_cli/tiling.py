"""Where patches go and how their outputs are blended (pure numpy, no I/O).

Along each axis, windows of ``window`` pixels start at multiples of the stride
``window - 2 * context``; the last one is moved back to end flush with the edge (as in
MONAI's sliding window). Every window owns a *core* between two boundaries; boundary i sits
``context`` pixels inside window i, so each core lies at least ``context`` pixels from its
window's cut edges (image edges need no context: the network pads them itself).

Blending: with a ramp u of width ``feather`` centred on each boundary, window i's weight is
u(x - b_i) - u(x - b_{i+1}). The weights of all windows telescope to exactly 1 everywhere (no
division, no zero-weight pixels) and vanish ``context - feather/2`` pixels inside each cut
edge: with context - feather/2 >= the receptive-field radius, every pixel comes only from
windows that saw its whole receptive field, so tiled output equals whole-image output.
2-D weights are the outer product of the row and column weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Axis", "plan_axis"]


@dataclass(frozen=True)
class Axis:
    length: int                 # padded length of the axis
    window: int                 # window length (== length when one window covers everything)
    starts: tuple[int, ...]     # window origins
    bounds: tuple[int, ...]     # core boundaries: 0 = b_0 < b_1 < ... < b_n = length
    feather: int

    def __len__(self) -> int:
        return len(self.starts)

    def core(self, i: int) -> tuple[int, int]:
        """The pixels window i owns, in axis coordinates."""
        return self.bounds[i], self.bounds[i + 1]

    def support(self, i: int) -> tuple[int, int]:
        """Where window i's blend weight is non-zero, in axis coordinates."""
        half = self.feather // 2
        lo = 0 if i == 0 else self.bounds[i] - half
        hi = self.length if i == len(self) - 1 else self.bounds[i + 1] + half
        return lo, hi

    def weights(self, i: int) -> np.ndarray:
        """Blend weights of window i over its own pixels, float32 [window]."""
        x = np.arange(self.starts[i], self.starts[i] + self.window) + 0.5
        rise = 1.0 if i == 0 else _ramp(x - self.bounds[i], self.feather)
        fall = 0.0 if i == len(self) - 1 else _ramp(x - self.bounds[i + 1], self.feather)
        return np.broadcast_to(rise - fall, x.shape).astype(np.float32)


def _ramp(d: np.ndarray, width: int) -> np.ndarray:
    """0 before -width/2, 1 after +width/2, linear between (a step when width is 0)."""
    if width == 0:
        return (d >= 0).astype(np.float64)
    return np.clip(d / width + 0.5, 0.0, 1.0)


def plan_axis(length: int, window: int, context: int, feather: int, multiple: int = 4) -> Axis:
    """Lay windows over an axis of ``length`` (a multiple of ``multiple``); all positions are multiples of it."""
    if length <= window:
        return Axis(length, length, (0,), (0, length), feather)
    stride = window - 2 * context
    if stride < max(feather, multiple) or stride % multiple or window % multiple or context % multiple:
        raise ValueError(f"window {window} with context {context} leaves no valid stride")
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    bounds = (0, *(s + context for s in starts[1:]), length)
    return Axis(length, window, tuple(starts), bounds, feather)
