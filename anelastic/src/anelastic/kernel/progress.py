"""Bookkeeping of one kernel computation: time steps and wall time per phase, progress bars."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PassLog:
    """Steps and wall time per phase of one kernel computation, in the order phases start."""

    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, steps: int, seconds: float) -> None:
        self.steps[phase] = self.steps.get(phase, 0) + int(steps)
        self.seconds[phase] = self.seconds.get(phase, 0.0) + float(seconds)


class PhaseBars:
    """One progress bar (stderr, nt steps) per phase, made on first use; all disabled unless
    ``enabled``."""

    def __init__(self, enabled: bool, nt: int) -> None:
        self.enabled, self.nt = enabled, nt
        self._bars: dict = {}

    def __getitem__(self, phase: str):
        if phase not in self._bars:
            from tqdm.auto import tqdm

            self._bars[phase] = tqdm(
                total=self.nt, desc=phase, unit="step", disable=not self.enabled, leave=False
            )
        return self._bars[phase]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
