"""tp_decode: Megatron tensor-parallel decode, two all-reduces per layer per token.

Each TP group (consecutive ranks, so inside a domain first) runs, per layer: attention math,
an all-reduce of batch x hidden, MLP math, another all-reduce.  The math is a roofline wait:
the layer's weights / tp / HBM bandwidth, split between attention and MLP by their weights
(decode reads every weight once per step; KV-cache reads are left out).  A step emulates
`layers` layers; per-token figures (TPOT) scale by model.layers / layers, every layer being
the same shape.
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.models import DTYPE_BYTES, Model, tp_allreduce_bytes
from workloads.base import AllReduce, Compute, Phase, consecutive_groups

H100_HBM_BPS = 3.35e12      # B/s, H100 SXM HBM3 (the default)


@dataclass(frozen=True)
class TpDecode:
    model: Model
    batch: int
    tp: int
    dtype: str = "bf16"
    steps: int = 4           # decode steps measured
    layers: int = 2          # layers emulated per step
    hbm_Bps: float = H100_HBM_BPS

    kind = "tp_decode"

    @property
    def allreduce_bytes(self) -> int:
        return tp_allreduce_bytes(self.model, self.batch, self.dtype)

    @property
    def allreduces_per_token(self) -> int:
        return 2 * self.model.layers

    def compute_s(self) -> tuple[float, float]:
        """(attention, MLP) roofline seconds of one layer on one TP rank."""
        m, b = self.model, DTYPE_BYTES[self.dtype]
        mlp = 3 * m.hidden * m.ffn
        attn = m.layer_weights() - mlp
        return attn * b / self.tp / self.hbm_Bps, mlp * b / self.tp / self.hbm_Bps

    def phases(self, world: int) -> list[Phase]:
        groups = consecutive_groups(world, self.tp)
        ranks = tuple(r for g in groups for r in g)
        attn_s, mlp_s = self.compute_s()
        out: list[Phase] = []
        for _ in range(self.layers):
            out += [Compute("attention", attn_s, ranks), AllReduce("attention all-reduce", self.allreduce_bytes, groups),
                    Compute("mlp", mlp_s, ranks), AllReduce("mlp all-reduce", self.allreduce_bytes, groups)]
        return out
