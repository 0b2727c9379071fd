"""Time dilation: the emulated fabric is the real one slowed down k times.

Every time on the emulated fabric is k times the real one (latency, jitter, a straggler's
delay, an event's moment, a model's compute pause) and every rate 1/k of it, so a transfer's
time, bytes / rate + latency, is k times too.  fabric measures in emulated units and reports in
real ones: the one place the conversion is written is here (scale.choose picks k).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Dilation:
    k: float

    @classmethod
    def of(cls, doc: dict) -> Dilation:
        """The dilation a results document (results.json, its "scale") was measured under."""
        return cls(doc["scale"])

    def emulated(self, real_time: float) -> float:
        """A real-fabric time (any unit) as the emulation lasts it."""
        return real_time * self.k

    def real(self, emulated_time: float) -> float:
        """An emulated time (any unit) on the real fabric."""
        return emulated_time / self.k

    def emulated_rate(self, real_rate: float) -> float:
        """A real-fabric rate or bandwidth (any unit) as the emulation runs it."""
        return real_rate / self.k

    def real_rate(self, emulated_rate: float) -> float:
        """An emulated rate or bandwidth (any unit) on the real fabric."""
        return emulated_rate * self.k

    def link(self, link):
        """A link class (fabric.profile.LinkClass) as emulated: its rate slowed, its times stretched."""
        return replace(link, rate_bps=self.emulated_rate(link.rate_bps), latency_s=self.emulated(link.latency_s),
                       jitter_s=self.emulated(link.jitter_s))
