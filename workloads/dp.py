"""dp: data-parallel replicas, each rank a whole model: decode with no traffic at all.

The baseline the others are compared against: per layer one roofline wait (all the layer's
weights / HBM bandwidth, or `layer_time`), no collective.  Its TPOT is what a rank's math
alone costs; tp_decode's TPOT minus this is what splitting the model over the fabric added
(and saved: tp divides the math).  `math: add` waits for nothing and reports the math alone
(there is no traffic to measure; it saves the dilated waits).
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.models import DTYPE_BYTES, Model
from workloads.base import Compute, Phase, Timings, p99_text

KEYS = {"model", "batch", "dtype", "layers", "layer_time", "steps", "warmup", "math"}


@dataclass(frozen=True)
class Dp:
    model: Model
    batch: int
    dtype: str = "bf16"
    layers: int = 2
    layer_time: float = 0.0
    math: str = "emulate"    # emulate (scaled waits) | add (no waits: TPOT is the math)

    kind = "dp"
    keys = KEYS
    required = {"model", "batch"}

    @classmethod
    def parse(cls, c, spec: dict, key: str, ctx) -> "Dp":
        model = c.model(spec["model"], f"{key}.model")
        dtype = c.dtype(spec.get("dtype", "bf16"), f"{key}.dtype")
        layer_time = c.time(spec.get("layer_time", 0), f"{key}.layer_time")
        if not layer_time:
            if model.mla or model.moe:
                c.fail(f"{key}.layer_time", f"missing: {model.name} is not a dense GQA model, so its per-layer "
                                            f"math has no roofline here; give layer_time")
            layer_time = model.layer_weights() * DTYPE_BYTES[dtype] / ctx.hbm_Bps
        return cls(model, c.integer(spec["batch"], f"{key}.batch", 1, 1 << 20), dtype,
                   c.integer(spec.get("layers", 2), f"{key}.layers", 1, model.layers), layer_time,
                   c.choice(spec.get("math", "emulate"), f"{key}.math", ("emulate", "add")))

    @property
    def label(self) -> str:
        return f"dp {self.model.name} batch {self.batch} (no traffic)"

    def phases(self, world: int) -> list[Phase]:
        if self.math == "add":
            return []
        return [Compute("layer", self.layer_time, tuple(range(world))) for _ in range(self.layers)]

    def figures(self, t: Timings) -> dict:
        per_token = self.model.layers / self.layers
        step = t.iteration if self.math == "emulate" else [x + t.dilation.emulated(self.layer_time * self.layers) for x in t.iteration]
        return {"tpot_us": t.percentiles(step, per_token * 1e6),
                "compute_us_per_token": self.layer_time * self.model.layers * 1e6}

    @staticmethod
    def headline(f: dict) -> list[tuple[str, float, str]]:
        return [("TPOT p50", f["tpot_us"]["p50"], "us")]

    @staticmethod
    def describe(f: dict) -> str:
        return (f"TPOT {f['tpot_us']['p50']:,.1f} us (p99 {p99_text(f['tpot_us'])}): math alone "
                f"{f['compute_us_per_token']:,.1f} us, no traffic")
