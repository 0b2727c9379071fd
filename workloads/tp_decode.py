"""tp_decode: Megatron tensor-parallel decode, two all-reduces per layer per token.

Each TP group (consecutive ranks, so inside a domain first; `placement: spread` lays each
group across the domains instead) runs, per layer: attention math, an all-reduce of batch x
hidden, MLP math, another all-reduce.  The math is a roofline wait: the layer's weights / tp
/ HBM bandwidth, split between attention and MLP by their weights (decode reads every weight
once per step; KV-cache reads are left out), or `layer_time` when given.  A step emulates
`layers` layers; per-token figures (TPOT) scale by model.layers / layers, every layer being
the same shape.  `math: add` skips the waits and adds the same math to TPOT instead: exact
here, because every rank of a group does the same math and the all-reduces wait for all of
them (nothing overlaps), and it saves the wall time the dilated math costs (at k = 1e5 a
Llama-70B layer at TP4 is ~13 s of waiting).
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.models import DTYPE_BYTES, Model, tp_allreduce_bytes
from workloads.base import AllReduce, Compute, Group, Phase, Timings, consecutive_groups, p99_text, spread_order

H100_HBM_BPS = 3.35e12      # B/s, H100 SXM HBM3 (the default)
KEYS = {"model", "batch", "tp", "dtype", "steps", "warmup", "layers", "placement", "layer_time", "math"}


@dataclass(frozen=True)
class TpDecode:
    model: Model
    batch: int
    tp: int
    dtype: str = "bf16"
    layers: int = 2          # layers emulated per step
    hbm_Bps: float = H100_HBM_BPS
    order: Group = ()        # ranks in the order groups are laid on (empty: 0, 1, 2, ...)
    layer_time: float = 0.0  # real seconds of one layer's math on one rank; 0 = the roofline
    math: str = "emulate"    # emulate (scaled waits) | add (not waited for; added to TPOT)

    kind = "tp_decode"
    keys = KEYS
    required = {"model", "batch", "tp"}

    @classmethod
    def parse(cls, c, spec: dict, key: str, ctx) -> "TpDecode":
        model = c.model(spec["model"], f"{key}.model")
        tp = c.integer(spec["tp"], f"{key}.tp", 1, ctx.world)
        placement = c.choice(spec.get("placement", "packed"), f"{key}.placement", ("packed", "spread"))
        w = cls(model, batch=c.integer(spec["batch"], f"{key}.batch", 1, 1 << 20), tp=tp,
                dtype=c.dtype(spec.get("dtype", "bf16"), f"{key}.dtype"),
                layers=c.integer(spec.get("layers", 2), f"{key}.layers", 1, model.layers), hbm_Bps=ctx.hbm_Bps,
                order=spread_order(ctx.domains, ctx.per_domain) if placement == "spread" else (),
                layer_time=c.time(spec.get("layer_time", 0), f"{key}.layer_time"),
                math=c.choice(spec.get("math", "emulate"), f"{key}.math", ("emulate", "add")))
        if not w.layer_time and (model.mla or model.moe):
            c.fail(f"{key}.layer_time", f"missing: {model.name} is not a dense GQA model, so its per-layer "
                                        f"math has no roofline here; give layer_time (e.g. 50us)")
        return w

    @property
    def label(self) -> str:
        return f"tp_decode {self.model.name} tp{self.tp} batch {self.batch}" + (" spread" if self.order else "")

    @property
    def allreduce_bytes(self) -> int:
        return tp_allreduce_bytes(self.model, self.batch, self.dtype)

    @property
    def allreduces_per_token(self) -> int:
        return 2 * self.model.layers

    def compute_s(self) -> tuple[float, float]:
        """(attention, MLP) roofline seconds of one layer on one TP rank."""
        m, b = self.model, DTYPE_BYTES[self.dtype]
        if self.layer_time:
            return self.layer_time / 2, self.layer_time / 2
        mlp = 3 * m.hidden * m.ffn
        attn = m.layer_weights() - mlp
        return attn * b / self.tp / self.hbm_Bps, mlp * b / self.tp / self.hbm_Bps

    def phases(self, world: int) -> list[Phase]:
        groups = consecutive_groups(world, self.tp, self.order)
        ranks = tuple(sorted(r for g in groups for r in g))
        attn_s, mlp_s = self.compute_s()
        out: list[Phase] = []
        for _ in range(self.layers):
            out += [Compute("attention", attn_s, ranks), AllReduce("attention all-reduce", self.allreduce_bytes, groups),
                    Compute("mlp", mlp_s, ranks), AllReduce("mlp all-reduce", self.allreduce_bytes, groups)]
        return out if self.math == "emulate" else [p for p in out if not isinstance(p, Compute)]

    def figures(self, t: Timings) -> dict:
        """TPOT on the real fabric (every layer, p50/p99) and the share spent communicating."""
        per_token = self.model.layers / self.layers
        comm = [a + m for a, m in zip(t.phases["attention all-reduce"], t.phases["mlp all-reduce"])]
        per_call = [x / (2 * self.layers) for x in comm]
        compute = t.dilation.emulated(sum(self.compute_s()) * self.layers)
        step = t.iteration if self.math == "emulate" else [x + compute for x in t.iteration]
        return {"tpot_us": t.percentiles(step, per_token * 1e6),
                "comm_share": t.real(comm) / t.real(step), "math": self.math,
                "allreduce_us": t.percentiles(per_call),
                "compute_us_per_token": t.dilation.real(compute) * per_token * 1e6,
                "allreduce_bytes": self.allreduce_bytes, "allreduces_per_token": self.allreduces_per_token}

    @staticmethod
    def headline(f: dict) -> list[tuple[str, float, str]]:
        return [("TPOT p50", f["tpot_us"]["p50"], "us"), ("TPOT p99", f["tpot_us"]["p99"], "us"),
                ("communication share", 100 * f["comm_share"], "%")]

    @staticmethod
    def describe(f: dict) -> str:
        return (f"TPOT {f['tpot_us']['p50']:,.1f} us (p99 {p99_text(f['tpot_us'])}"
                + (", math added, not emulated" if f["math"] == "add" else "") + "), communication "
                f"{f['comm_share']:.0%} of it; {f['allreduce_bytes']:,} B all-reduce p50 {f['allreduce_us']['p50']:.2f} us"
                f" x {f['allreduces_per_token']} per token; math alone {f['compute_us_per_token']:,.1f} us")
