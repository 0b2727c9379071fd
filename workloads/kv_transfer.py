"""kv_transfer: disaggregated serving ships a prompt's KV cache from prefill to decode ranks.

The cache is prompt_tokens x the model's KV bytes per token (GQA keys and values, or MLA's
latent).  Prefill rank i of P holds the i-th 1/P of it (the KV heads its tensor-parallel
shard computed); decode rank j of D needs the j-th 1/D: each pair sends the overlap of the
two shares, so equal P and D pair up one to one and unequal ones re-shard.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from fabric.models import Model
from workloads.base import Phase, Transfer


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
    steps: int = 4           # prompts measured

    kind = "kv_transfer"

    @property
    def total_bytes(self) -> int:
        return self.model.kv_bytes_per_token(self.dtype) * self.prompt_tokens

    def phases(self, world: int) -> list[Phase]:
        if self.chunk == "whole":
            return [Transfer("kv cache", reshard(self.total_bytes, self.prefill, self.decode))]
        per_layer = self.total_bytes // self.model.layers
        return [Transfer(f"kv layer {layer}", reshard(per_layer, self.prefill, self.decode))
                for layer in range(self.model.layers)]
