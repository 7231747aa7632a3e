"""The simulator's clock: simulated epoch seconds that run at a chosen speed, or are stepped by hand.

Nothing in the simulator runs in the background. Every request first advances the cluster to
``clock.now()``, finishing the tasks whose simulated end time has passed, so a test can freeze the
clock (``speed=0``) and step it with ``advance()``, and a persisted cluster keeps ageing between CLI
runs at the same speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class SimClock:
    """Simulated time = ``sim_anchor + (real_now - real_anchor) * speed``.

    >>> clock = SimClock(start=1_700_000_000.0, speed=0)   # frozen: tests step it
    >>> clock.advance(90); clock.now()
    1700000090.0
    """

    def __init__(
        self, start: float | None = None, speed: float = 1.0, *, real: Callable[[], float] = time.time
    ) -> None:
        if speed < 0:
            raise ValueError("clock speed must be >= 0")
        self._real = real
        self._real_anchor = real()
        self._sim_anchor = self._real_anchor if start is None else start
        self._speed = speed

    def now(self) -> float:
        return self._sim_anchor + (self._real() - self._real_anchor) * self._speed

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value < 0:
            raise ValueError("clock speed must be >= 0")
        self._sim_anchor, self._real_anchor = self.now(), self._real()
        self._speed = value

    def advance(self, seconds: float) -> None:
        """Step simulated time forward (never backward: tasks and tickets depend on it)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._sim_anchor += seconds

    def to_dict(self) -> dict[str, Any]:
        return {"sim_time": self.now(), "saved_at": self._real(), "speed": self._speed}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, real: Callable[[], float] = time.time) -> SimClock:
        """Resume a saved clock: simulated time kept running at its speed while nobody looked."""
        speed = float(data["speed"])
        elapsed = max(0.0, real() - float(data["saved_at"]))
        return cls(start=float(data["sim_time"]) + elapsed * speed, speed=speed, real=real)
