"""pp: pipeline parallelism, activations handed from stage to stage per microbatch.

`stages` consecutive ranks form the pipeline (GPipe forward, as prefill runs it); the batch
is cut into `microbatches`, and each stage boundary carries (batch / microbatches) x seq x
hidden x 2 B per microbatch.  A stage's math per microbatch is a roofline (the stage's
weights read once, or 2 x weights x tokens FLOPs if that takes longer), or `stage_time`.
A stage sends a microbatch on and starts the next one while it travels.  With no
communication cost the idle share (bubble) is (stages - 1) / (microbatches + stages - 1).
`math: add` (one microbatch only, as a decode token at batch 1) runs the hand-offs alone and
adds every stage's math to the iteration: exact there, because the single microbatch waits
for each stage's math and each hand-off in turn, and it saves the dilated waits (a
Llama-70B decode stage of 8 is ~5 ms of math, minutes of waiting at k = 5e4).  The α-β model
simulates the same parts (fabric.model): a hand-off to a stage already waiting costs one way.
"""
from __future__ import annotations

from dataclasses import dataclass

from fabric.models import DTYPE_BYTES, Model, activation_bytes
from fabric.stats import percentile
from workloads.base import Compute, Drain, Phase, Timings, Transfer

KEYS = {"model", "batch", "seq", "stages", "microbatches", "dtype", "stage_time", "steps", "warmup", "math"}


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
    stage_time: float = 0.0  # real seconds of one stage's math on one microbatch
    math: str = "emulate"    # emulate (scaled waits) | add (microbatches 1: added to the iteration)

    kind = "pp"
    keys = KEYS
    required = {"model", "batch", "seq", "stages", "microbatches"}

    @classmethod
    def parse(cls, c, spec: dict, key: str, ctx) -> "Pipeline":
        model = c.model(spec["model"], f"{key}.model")
        stages = c.integer(spec["stages"], f"{key}.stages", 2, min(ctx.world, model.layers))
        micro = c.integer(spec["microbatches"], f"{key}.microbatches", 1, 1024)
        batch = c.integer(spec["batch"], f"{key}.batch", 1, 1 << 20)
        if batch % micro:
            c.fail(f"{key}.microbatches", f"expected a divisor of batch {batch}, got {micro}")
        stage_time = c.time(spec.get("stage_time", 0), f"{key}.stage_time")
        dtype = c.dtype(spec.get("dtype", "bf16"), f"{key}.dtype")
        seq = c.integer(spec["seq"], f"{key}.seq", 1, 1 << 20)
        math = c.choice(spec.get("math", "emulate"), f"{key}.math", ("emulate", "add"))
        if math == "add" and micro != 1:
            c.fail(f"{key}.math", f"add needs microbatches: 1 (only then do the stages' math and hand-offs "
                                  f"simply add up), got microbatches {micro}")
        if not stage_time:
            if model.mla or model.moe:
                c.fail(f"{key}.stage_time", f"missing: {model.name} is not a dense GQA model, so a stage's math "
                                            f"has no roofline here; give stage_time")
            weights = model.layer_weights() * model.layers / stages
            stage_time = max(weights * DTYPE_BYTES[dtype] / ctx.hbm_Bps, 2 * weights * batch // micro * seq / ctx.flops)
        return cls(model, batch, seq, stages, micro, dtype, stage_time, math)

    @property
    def label(self) -> str:
        return f"pp {self.model.name} {self.stages} stages x {self.microbatches} microbatches"

    @property
    def handoff_bytes(self) -> int:
        """One microbatch's activations across one stage boundary."""
        return activation_bytes(self.model, self.batch, self.seq, self.dtype) // self.microbatches

    @property
    def ideal_bubble(self) -> float:
        return bubble_fraction(self.stages, self.microbatches)

    def phases(self, world: int) -> list[Phase]:
        out: list[Phase] = []
        for _ in range(self.microbatches):
            for s in range(self.stages):
                if self.math == "emulate":
                    out.append(Compute("stage", self.stage_time, (s,)))
                if s + 1 < self.stages:
                    out.append(Transfer("handoff", ((s, s + 1, self.handoff_bytes),), overlap=True))
        return out + [Drain("drain", tuple(range(self.stages)))]

    def figures(self, t: Timings) -> dict:
        busy = t.dilation.emulated(self.microbatches * self.stage_time)
        added = t.dilation.emulated(self.stages * self.stage_time) if self.math == "add" else 0.0
        iteration = [x + added for x in t.iteration]
        bubble = [1 - busy / x for x in iteration]
        out = {"bubble": percentile(bubble, 50), "bubble_ideal": self.ideal_bubble, "math": self.math,
               "handoff_bytes": self.handoff_bytes, "stage_us": self.stage_time * 1e6,
               "iteration_us": t.percentiles(iteration)}
        if self.math == "add":   # the measured iteration is the hand-offs alone, one after another
            out.update(handoff_us=t.real(t.iteration) * 1e6 / (self.stages - 1),
                       comm_share=t.real(t.iteration) / t.real(iteration))
        return out

    @staticmethod
    def headline(f: dict) -> list[tuple[str, float, str]]:
        return [("iteration p50", f["iteration_us"]["p50"], "us"), ("bubble", 100 * f["bubble"], "%")] + (
            [("communication share", 100 * f["comm_share"], "%")] if "comm_share" in f else [])

    @staticmethod
    def describe(f: dict) -> str:
        return (f"bubble {f['bubble']:.1%} measured vs {f['bubble_ideal']:.1%} (stages-1)/(microbatches+stages-1); "
                f"{f['handoff_bytes']:,} B hand-offs" + (f" ({f['handoff_us']:.2f} us each, {f['comm_share']:.1%} of "
                                                        f"the iteration)" if "handoff_us" in f else "")
                + f", {f['stage_us']:,.1f} us math per stage and microbatch"
                + (", math added, not emulated" if f.get("math") == "add" else ""))
