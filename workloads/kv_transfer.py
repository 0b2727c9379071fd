"""kv_transfer: disaggregated serving ships a prompt's KV cache from prefill to decode ranks.

The cache is prompt_tokens x the model's KV bytes per token (GQA keys and values, or MLA's
latent).  Prefill rank i of P holds the i-th 1/P of it (the KV heads its tensor-parallel
shard computed); decode rank j of D needs the j-th 1/D: each pair sends the overlap of the
two shares, so equal P and D pair up one to one and unequal ones re-shard.

chunk: whole sends the cache after prefill: the first token waits for all of it (the math
before it is not emulated: it adds nothing the fabric decides).  chunk: layer sends each
layer's share as soon as that layer is computed, while the next layer's math runs (emulated: a compute-bound roofline, 2 x weights x tokens / P / FLOP/s, or
`prefill_time`); the first token then waits only for what the math did not hide.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from fabric.models import Model
from workloads.base import Compute, Drain, Phase, Timings, Transfer, p99_text

KEYS = {"model", "prompt_tokens", "prefill", "decode", "chunk", "dtype", "prefill_time", "steps", "warmup"}


def reshard(total: int, senders: tuple[int, ...], receivers: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
    """(src, dst, bytes): sender i's share [i/P, (i+1)/P) of `total` bytes, cut along the
    receivers' shares [j/D, (j+1)/D); whole bytes, summing to `total`."""
    P, D = len(senders), len(receivers)
    edges = sorted({Fraction(i, P) for i in range(P + 1)} | {Fraction(j, D) for j in range(D + 1)})
    flows: dict[tuple[int, int], int] = {}
    for lo, hi in zip(edges, edges[1:]):
        mid = (lo + hi) / 2
        i, j = int(mid * P), int(mid * D)
        nbytes = int(hi * total) - int(lo * total)
        if nbytes:
            key = (senders[i], receivers[j])
            flows[key] = flows.get(key, 0) + nbytes
    return tuple((s, d, b) for (s, d), b in flows.items())


@dataclass(frozen=True)
class KvTransfer:
    model: Model
    prompt_tokens: int
    prefill: tuple[int, ...]
    decode: tuple[int, ...]
    dtype: str = "bf16"
    chunk: str = "whole"     # whole | layer
    prefill_time: float = 0.0   # real seconds of the prompt's prefill math (chunk: layer)

    kind = "kv_transfer"
    keys = KEYS
    required = {"model", "prompt_tokens", "prefill", "decode"}

    @classmethod
    def parse(cls, c, spec: dict, key: str, ctx) -> "KvTransfer":
        model = c.model(spec["model"], f"{key}.model")
        chunk = c.choice(spec.get("chunk", "whole"), f"{key}.chunk", ("whole", "layer"))
        prefill, decode = c.ranks(spec["prefill"], f"{key}.prefill"), c.ranks(spec["decode"], f"{key}.decode")
        tokens = c.integer(spec["prompt_tokens"], f"{key}.prompt_tokens", 1, 1 << 20)
        prefill_time = c.time(spec.get("prefill_time", 0), f"{key}.prefill_time")
        if chunk == "layer" and not prefill_time:
            if model.mla or model.moe:
                c.fail(f"{key}.prefill_time", f"missing: chunk: layer overlaps the transfer with prefill math, "
                                              f"which has no roofline here for {model.name}; give prefill_time")
            prefill_time = 2 * model.layer_weights() * model.layers * tokens / len(prefill) / ctx.flops
        return cls(model, tokens, prefill, decode, dtype=c.dtype(spec.get("dtype", "bf16"), f"{key}.dtype"),
                   chunk=chunk, prefill_time=prefill_time)

    @property
    def label(self) -> str:
        return f"kv_transfer {self.model.name} {self.prompt_tokens} tokens {len(self.prefill)}->{len(self.decode)} " \
               f"by {self.chunk}"

    @property
    def total_bytes(self) -> int:
        return self.model.kv_bytes_per_token(self.dtype) * self.prompt_tokens

    def phases(self, world: int) -> list[Phase]:
        if self.chunk == "whole":
            return [Transfer("kv cache", reshard(self.total_bytes, self.prefill, self.decode))]
        per_layer, math = self.total_bytes // self.model.layers, self.prefill_time / self.model.layers
        out: list[Phase] = []
        for _ in range(self.model.layers):
            out += [Compute("prefill", math, self.prefill),
                    Transfer("kv layer", reshard(per_layer, self.prefill, self.decode), overlap=True)]
        return out + [Drain("drain", tuple(sorted(set(self.prefill) | set(self.decode))))]

    def figures(self, t: Timings) -> dict:
        """Time to first token added by the hand-off: the whole transfer, or (by layer) what
        is left after the prefill math ends."""
        added = [x - t.dilation.emulated(self.prefill_time) for x in t.iteration]
        return {"kv_bytes": self.total_bytes,
                "ttft_added_us": t.percentiles(added),
                "ttft_added_per_token_us": t.real(added) * 1e6 / self.prompt_tokens,
                "prefill_us": self.prefill_time * 1e6,
                "effective_GBps": self.total_bytes / t.real(t.iteration) / 1e9}

    @staticmethod
    def headline(f: dict) -> list[tuple[str, float, str]]:
        return [("TTFT added p50", f["ttft_added_us"]["p50"], "us"), ("TTFT added p99", f["ttft_added_us"]["p99"], "us")]

    @staticmethod
    def describe(f: dict) -> str:
        return (f"TTFT +{f['ttft_added_us']['p50']:,.1f} us (p99 {p99_text(f['ttft_added_us'], '+,.1f')}) for "
                f"{f['kv_bytes']:,} B of KV cache ({f['ttft_added_per_token_us']:.3g} us per prompt token, "
                f"{f['effective_GBps']:.3g} GB/s end to end"
                + (f", behind {f['prefill_us']:,.1f} us of prefill math)" if f["prefill_us"] else ")"))
