"""Model configs that size the inference workloads, and the bytes each pattern moves.

Presets are the published configs (docs/sources.md, "Model configs": config.json files,
meta-llama/llama-models, the Kimi K2 README); a profile may give a custom model with the same
fields.  Everything here is arithmetic on those fields, unit-tested against sources.md.
"""
from __future__ import annotations

from dataclasses import dataclass

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}


@dataclass(frozen=True)
class Model:
    name: str
    hidden: int
    layers: int
    heads: int
    head_dim: int
    ffn: int                 # dense layers' FFN width (SwiGLU: 3 matrices); 0 when every layer is MoE
    vocab: int
    kv_heads: int = 0        # GQA; 0 with MLA
    kv_lora_rank: int = 0    # MLA: the cached latent per token per layer is kv_lora_rank + rope_dim
    rope_dim: int = 0
    experts: int = 0         # routed experts per MoE layer; 0 = dense model
    top_k: int = 0
    shared_experts: int = 0
    expert_ffn: int = 0
    dense_layers: int = 0    # leading dense layers of a MoE model (DeepSeek-V3: 3)

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.moe else 0

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0

    def kv_bytes_per_token(self, dtype: str = "bf16") -> int:
        """KV cache of one token over all layers: GQA keys + values, or MLA's latent + rope key."""
        per_layer = self.kv_lora_rank + self.rope_dim if self.mla else 2 * self.kv_heads * self.head_dim
        return per_layer * self.layers * DTYPE_BYTES[dtype]

    def layer_weights(self) -> int:
        """Parameters one token's decode reads per dense GQA layer (attention + SwiGLU MLP).
        MLA models (whose attention has projections sources.md does not give) and MoE layers
        have no such figure here: a workload on them must state its compute time."""
        if self.mla or self.moe:
            raise ValueError(f"{self.name}: per-layer weights are known only for dense GQA models")
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return attn + 3 * self.hidden * self.ffn


def dispatch_bytes(m: Model, dtype: str = "fp8") -> int:
    """DeepEP dispatch of one token to one expert: FP8 hidden, one fp32 scale per 128 values, 16 B of routing."""
    if dtype == "fp8":
        return m.hidden + m.hidden // 128 * 4 + 16
    return m.hidden * DTYPE_BYTES[dtype]


def combine_bytes(m: Model, dtype: str = "bf16") -> int:
    """DeepEP combine of one token from one expert: the expert's output, hidden x dtype."""
    return m.hidden * DTYPE_BYTES[dtype]


def tp_allreduce_bytes(m: Model, batch: int, dtype: str = "bf16") -> int:
    """Megatron TP decode: each of the 2 all-reduces per layer carries batch x hidden."""
    return batch * m.hidden * DTYPE_BYTES[dtype]


def activation_bytes(m: Model, batch: int, seq: int, dtype: str = "bf16") -> int:
    """Pipeline hand-off between stages: batch x seq x hidden."""
    return batch * seq * m.hidden * DTYPE_BYTES[dtype]


PRESETS = {m.name: m for m in (
    Model("llama-3.1-8b", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=128256),
    Model("llama-3.1-70b", hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128, ffn=28672, vocab=128256),
    Model("llama-3.1-405b", hidden=16384, layers=126, heads=128, kv_heads=8, head_dim=128, ffn=53248,
          vocab=128256),
    Model("mixtral-8x7b", hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, ffn=0, vocab=32000,
          experts=8, top_k=2, expert_ffn=14336),
    Model("deepseek-v3", hidden=7168, layers=61, heads=128, head_dim=128, ffn=18432, vocab=129280,
          kv_lora_rank=512, rope_dim=64, experts=256, top_k=8, shared_experts=1, expert_ffn=2048,
          dense_layers=3),
    Model("kimi-k2", hidden=7168, layers=61, heads=64, head_dim=128, ffn=0, vocab=163840,   # dense FFN: not sourced
          kv_lora_rank=512, rope_dim=64, experts=384, top_k=8, shared_experts=1, expert_ffn=2048,
          dense_layers=1),
    Model("gpt-oss-120b", hidden=2880, layers=36, heads=64, kv_heads=8, head_dim=64, ffn=0, vocab=201088,
          experts=128, top_k=4, expert_ffn=2880),
)}
PRESETS["deepseek-r1"] = PRESETS["deepseek-v3"]   # same architecture
