"""A randomly initialised Llama of a given shape, built locally, for roofline measurements.

The embedded 135M model fits inside this CPU's L3 cache, which hides the memory wall;
a ~1B-parameter model does not. Weights are random, so only speed is meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = {
    # Llama layout with grouped-query attention, ~1.2B parameters (untied head).
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=49152, max_position_embeddings=4096, tie_word_embeddings=False),
    # Tiny, for tests of this script.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152, max_position_embeddings=4096, tie_word_embeddings=True),
}


def build(shape: str, out: Path, tokenizer_dir: Path) -> Path:
    """Write a checkpoint with random weights and the given tokenizer; reuse it if present."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    marker = out / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()).get("shape") == SHAPES[shape]:
        return out
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(**SHAPES[shape], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         rms_norm_eps=1e-5, rope_theta=10000.0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker.write_text(json.dumps({"shape": SHAPES[shape],
                                  "parameters": sum(p.numel() for p in model.parameters())}))
    return out
