"""Measured processing and waiting times, as the projector keeps them and the renderer uses them. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Below this many observations the seed's fixed figures are better than our average.
MIN_SAMPLES = 20
_ALPHA = 0.1  # weight of a new observation in the moving average


@dataclass
class MovingAverage:
    """An exponentially weighted moving average with its number of samples."""

    value: float = 0.0
    samples: int = 0

    def add(self, x: float) -> None:
        """Fold in one observation (the first ones weigh more, so it settles quickly)."""
        self.samples += 1
        weight = max(_ALPHA, 1 / self.samples)
        self.value += weight * (x - self.value)

    def usable(self) -> float | None:
        """The average once it rests on enough samples."""
        return self.value if self.samples >= MIN_SAMPLES else None


@dataclass
class Estimates:
    """Average processing time, and average wait before processing per priority rank."""

    processing: MovingAverage = field(default_factory=MovingAverage)
    waiting: dict[int, MovingAverage] = field(default_factory=lambda: {0: MovingAverage(), 1: MovingAverage(), 2: MovingAverage()})

    def to_hash(self) -> dict[str, str]:
        """The Redis hash representation."""
        out = {"processing_s": f"{self.processing.value:.3f}", "processing_n": str(self.processing.samples)}
        for rank, avg in self.waiting.items():
            out[f"wait_s:{rank}"] = f"{avg.value:.3f}"
            out[f"wait_n:{rank}"] = str(avg.samples)
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> Estimates:
        """Parse the Redis hash; missing or malformed fields count as no samples."""
        h = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}

        def avg(value: str, samples: str) -> MovingAverage:
            try:
                return MovingAverage(float(h.get(value, 0)), int(h.get(samples, 0)))
            except ValueError:
                return MovingAverage()

        est = cls(processing=avg("processing_s", "processing_n"))
        for rank in est.waiting:
            est.waiting[rank] = avg(f"wait_s:{rank}", f"wait_n:{rank}")
        return est


NO_ESTIMATES = Estimates()
