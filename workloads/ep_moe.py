"""ep_moe: expert-parallel MoE, an all-to-all dispatch and combine per MoE layer.

Each of `ep` ranks holds `tokens` tokens and experts / ep consecutive experts.  Every token
picks top_k distinct experts from a popularity law (seeded): uniform, zipf(s) (popularity
1 / i^s over a shuffled expert order, so hot experts land anywhere), or hot(n, share) (n
experts take `share` of the picks).  Bytes follow DeepEP: per token per picked expert, FP8
dispatch hidden + hidden/128 x 4 + 16, BF16 combine hidden x 2; picks of experts on the own
rank stay local.  Dispatch and combine are two all_to_all_single calls with these splits.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

from fabric.models import Model, combine_bytes, dispatch_bytes
from workloads.base import AllToAll, Phase, Timings, p99_text

KEYS = {"model", "tokens", "ep", "routing", "dispatch_dtype", "combine_dtype", "seed", "steps", "warmup"}


@dataclass(frozen=True)
class Routing:
    law: str                 # uniform | zipf | hot
    s: float = 0.0           # zipf exponent
    hot: int = 0             # hot experts
    share: float = 0.0       # of all picks going to the hot experts

    def weights(self, experts: int, rng: random.Random) -> list[float]:
        if self.law == "uniform":
            return [1.0] * experts
        order = list(range(experts))
        rng.shuffle(order)
        w = [0.0] * experts
        if self.law == "zipf":
            for i, e in enumerate(order):
                w[e] = 1 / (i + 1) ** self.s
            return w
        for i, e in enumerate(order):   # hot: the first `hot` experts of the shuffled order
            w[e] = self.share / self.hot if i < self.hot else (1 - self.share) / (experts - self.hot)
        return w

    def __str__(self) -> str:
        return {"uniform": "uniform", "zipf": f"zipf({self.s:g})", "hot": f"hot({self.hot}, {self.share:g})"}[self.law]


_ZIPF = re.compile(r"zipf\(\s*([0-9.]+)\s*\)$")
_HOT = re.compile(r"hot\(\s*(\d+)\s*,\s*([0-9.]+)\s*\)$")


def parse_routing(text: str, experts: int) -> Routing:
    """uniform | zipf(s) | hot(n, share); ValueError says what was expected."""
    t = str(text).strip()
    if t == "uniform":
        return Routing("uniform")
    if m := _ZIPF.match(t):
        s = float(m.group(1))
        if s <= 0:
            raise ValueError(f"zipf exponent must be > 0, got {s:g}")
        return Routing("zipf", s=s)
    if m := _HOT.match(t):
        n, share = int(m.group(1)), float(m.group(2))
        if not 0 < n < experts or not 0 < share < 1:
            raise ValueError(f"hot(n, share) needs 0 < n < {experts} experts and 0 < share < 1, got {t}")
        return Routing("hot", hot=n, share=share)
    raise ValueError(f"expected uniform, zipf(s) or hot(n, share), got {t!r}")


def pick(weights: list[float], k: int, rng: random.Random) -> list[int]:
    """k distinct experts, each drawn in proportion to its weight among those left
    (Efraimidis-Spirakis: the k largest u^(1/w))."""
    keys = [(rng.random() ** (1 / w) if w > 0 else -1.0, e) for e, w in enumerate(weights)]
    return [e for _, e in sorted(keys, reverse=True)[:k]]


def route(model: Model, tokens: int, ep: int, routing: Routing, seed: int) -> list[list[int]]:
    """picks[s][d]: token-expert picks of rank s's tokens landing on rank d's experts."""
    rng = random.Random(seed)
    weights = routing.weights(model.experts, rng)
    per_rank = model.experts // ep
    picks = [[0] * ep for _ in range(ep)]
    for s in range(ep):
        for _ in range(tokens):
            for e in pick(weights, model.top_k, rng):
                picks[s][min(e // per_rank, ep - 1)] += 1
    return picks


@dataclass(frozen=True)
class EpMoe:
    model: Model
    tokens: int              # per rank, per step
    ep: int
    routing: Routing = Routing("uniform")
    dispatch_dtype: str = "fp8"
    combine_dtype: str = "bf16"
    seed: int = 0

    kind = "ep_moe"
    keys = KEYS
    required = {"model", "tokens", "ep"}

    @classmethod
    def parse(cls, c, spec: dict, key: str, ctx) -> "EpMoe":
        model = c.model(spec["model"], f"{key}.model")
        if not model.moe:
            c.fail(f"{key}.model", f"{model.name} has no experts; ep_moe needs a MoE model")
        ep = c.integer(spec["ep"], f"{key}.ep", 2, min(ctx.world, model.experts))
        try:
            routing = parse_routing(spec.get("routing", "uniform"), model.experts)
        except ValueError as exc:
            c.fail(f"{key}.routing", str(exc))
        return cls(model, tokens=c.integer(spec["tokens"], f"{key}.tokens", 1, 1 << 16), ep=ep, routing=routing,
                   dispatch_dtype=c.dtype(spec.get("dispatch_dtype", "fp8"), f"{key}.dispatch_dtype"),
                   combine_dtype=c.dtype(spec.get("combine_dtype", "bf16"), f"{key}.combine_dtype"),
                   seed=c.integer(spec.get("seed", 0), f"{key}.seed", 0))

    @property
    def label(self) -> str:
        return f"ep_moe {self.model.name} ep{self.ep} {self.tokens} tokens {self.routing}"

    @cached_property
    def picks(self) -> list[list[int]]:
        """Routed once per workload: imbalance, matrices and phases all read it."""
        return route(self.model, self.tokens, self.ep, self.routing, self.seed)

    def imbalance(self) -> float:
        """max / mean of the token-expert picks each rank's experts receive."""
        got = [sum(col) for col in zip(*self.picks)]
        return max(got) / (sum(got) / len(got))

    def matrices(self) -> tuple[list[list[int]], list[list[int]]]:
        """(dispatch, combine) bytes s -> d; combine flows back the way dispatch came."""
        p, d, c = self.picks, dispatch_bytes(self.model, self.dispatch_dtype), combine_bytes(self.model, self.combine_dtype)
        n = self.ep
        return [[p[s][t] * d for t in range(n)] for s in range(n)], [[p[t][s] * c for t in range(n)] for s in range(n)]

    def phases(self, world: int) -> list[Phase]:
        ranks = tuple(range(self.ep))
        dispatch, combine = self.matrices()
        return [AllToAll("dispatch", ranks, tuple(map(tuple, dispatch))),
                AllToAll("combine", ranks, tuple(map(tuple, combine)))]

    def figures(self, t: Timings) -> dict:
        """Per MoE layer dispatch and combine (real), the imbalance, and what every MoE layer
        of one decode step (= one output token per sequence) costs in all-to-all time."""
        d, c = t.phases["dispatch"], t.phases["combine"]
        dispatch, combine = self.matrices()
        return {"dispatch_us": t.percentiles(d), "combine_us": t.percentiles(c),
                "imbalance": self.imbalance(), "moe_layers": self.model.moe_layers,
                "per_token_us": (t.real(d) + t.real(c)) * self.model.moe_layers * 1e6,
                "dispatch_bytes": sum(map(sum, dispatch)), "combine_bytes": sum(map(sum, combine))}

    @staticmethod
    def headline(f: dict) -> list[tuple[str, float, str]]:
        return [("dispatch p50", f["dispatch_us"]["p50"], "us"), ("combine p50", f["combine_us"]["p50"], "us"),
                ("all-to-all per token", f["per_token_us"], "us")]

    @staticmethod
    def describe(f: dict) -> str:
        return (f"dispatch p50 {f['dispatch_us']['p50']:.2f} us (p99 {p99_text(f['dispatch_us'], '.2f')}), combine p50 "
                f"{f['combine_us']['p50']:.2f} us (p99 {p99_text(f['combine_us'], '.2f')}); imbalance {f['imbalance']:.2f} "
                f"(max/mean); x {f['moe_layers']} MoE layers = {f['per_token_us']:,.1f} us per token")
