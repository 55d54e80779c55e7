"""A search's wall-clock limit (DecodeConfig.time_limit): the anytime search ends with what it has."""

from __future__ import annotations

import time

clock = time.perf_counter  # what deadlines read (a test may step it)


class Deadline:
    """`seconds` from now (0: never); `passed()` says whether the time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = clock()

    def passed(self) -> bool:
        return self.seconds > 0 and clock() - self.started >= self.seconds

    def fraction(self) -> float:
        """How much of the time is used (0.0 without a limit), for schedules that follow the budget."""
        if self.seconds <= 0:
            return 0.0
        return min(1.0, (clock() - self.started) / self.seconds)
