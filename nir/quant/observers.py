"""Observers: what calibration learns about one activation, and the symmetric int8 scale it implies.

An observer sees every calibration batch of one value and reports ``amax``, the magnitude that maps to
the largest int8 code (127); the scale is ``amax / 127``. `MinMaxObserver` takes the largest magnitude
seen; `PercentileObserver` takes a high percentile of the magnitudes, so that a few outliers do not
stretch the scale for every other value (the choice torch.ao's HistogramObserver and TensorRT's
percentile calibrator make for activations with long tails).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Observer", "MinMaxObserver", "PercentileObserver", "OBSERVERS", "symmetric_scale", "QMAX"]

QMAX = 127  # symmetric int8: [-127, 127] for calibrated values, -128 only where a value exceeds them


def symmetric_scale(amax: np.ndarray | float) -> np.ndarray:
    """``amax / 127`` as float32; 1 where ``amax`` is 0 or not finite (a value that is always 0 needs
    no resolution, and any scale represents it exactly)."""
    amax = np.asarray(amax, dtype=np.float64)
    ok = np.isfinite(amax) & (amax > 0)
    return np.where(ok, amax / QMAX, 1.0).astype(np.float32)


class Observer:
    """Sees calibration batches of one value (`update`), then gives its magnitude (`amax`)."""

    def update(self, x: np.ndarray) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def amax(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class MinMaxObserver(Observer):
    """The largest finite magnitude seen (NaN and infinities are ignored)."""

    largest: float = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.abs(np.asarray(x, dtype=np.float32))
        finite = x[np.isfinite(x)]
        if finite.size:
            self.largest = max(self.largest, float(finite.max()))

    def amax(self) -> float:
        return self.largest


@dataclass
class PercentileObserver(Observer):
    """The ``percentile``-th percentile of the finite magnitudes seen. Keeps at most ``sample`` values per
    batch (a fixed-seed random subset), so memory stays small for large activations."""

    percentile: float = 99.99
    sample: int = 1 << 16
    _seen: list[np.ndarray] = field(default_factory=list, repr=False)
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")

    def update(self, x: np.ndarray) -> None:
        x = np.abs(np.asarray(x, dtype=np.float32)).ravel()
        x = x[np.isfinite(x)]
        if x.size > self.sample:
            x = self._rng.choice(x, self.sample, replace=False)
        self._seen.append(x)

    def amax(self) -> float:
        seen = np.concatenate(self._seen) if self._seen else np.zeros(0, np.float32)
        return float(np.percentile(seen, self.percentile)) if seen.size else 0.0


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver}
