"""pp: pipeline parallelism, activations handed from stage to stage per microbatch.

`stages` consecutive ranks form the pipeline; the batch is cut into `microbatches`, and each
stage boundary carries (batch / microbatches) x seq x hidden x 2 B per microbatch.  With a
GPipe schedule the ideal idle share (bubble) is (stages - 1) / (microbatches + stages - 1).
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.models import Model, activation_bytes


def bubble_fraction(stages: int, microbatches: int) -> float:
    return (stages - 1) / (microbatches + stages - 1)


@dataclass(frozen=True)
class Pipeline:
    model: Model
    batch: int
    seq: int
    stages: int
    microbatches: int
    dtype: str = "bf16"
    steps: int = 4

    kind = "pp"

    @property
    def handoff_bytes(self) -> int:
        """One microbatch's activations across one stage boundary."""
        return activation_bytes(self.model, self.batch, self.seq, self.dtype) // self.microbatches

    @property
    def ideal_bubble(self) -> float:
        return bubble_fraction(self.stages, self.microbatches)
