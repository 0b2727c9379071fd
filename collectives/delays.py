"""Stragglers and noise on the rank side: how late this rank arrives at each collective call.

A delay law is (distribution, mean, std, shape) in emulated seconds (the runner scales the
profile's real times by k).  The mean is the profile's `delay` for every distribution, so
laws compare at equal mean: pareto's scale is mean x (shape - 1) / shape.  Draws come from
a per-rank seeded generator: two runs of one profile draw the same delays.  A draw is capped
at CAP x the mean, so a heavy tail cannot outlast the run's time limit.
"""
from __future__ import annotations

import random
import time

CAP = 100   # no draw exceeds CAP x its law's mean: a pareto tail must not outlast the run's time limit


class Delays:
    def __init__(self, laws: list[tuple[str, float, float, float]], seed: int):
        self.laws, self.rng = laws, random.Random(seed)

    def draw(self) -> float:
        total = 0.0
        for dist, mean, std, shape in self.laws:
            if dist == "fixed":
                d = mean
            elif dist == "normal":
                d = max(0.0, self.rng.gauss(mean, std))
            elif dist == "exponential":
                d = self.rng.expovariate(1 / mean)
            else:   # pareto
                d = mean * (shape - 1) / shape * self.rng.paretovariate(shape)
            total += min(d, CAP * mean)
        return total

    def wait(self) -> float:
        """Sleep one drawn delay (spinning the last stretch, as wait_until does); returns it."""
        d = self.draw() if self.laws else 0.0
        if d > 0:
            end = time.monotonic() + d
            if d > 0.002:
                time.sleep(d - 0.001)
            while time.monotonic() < end:
                pass
        return d
