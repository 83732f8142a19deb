"""One timing loop per inference backend, all fed the same token ids, all greedy.

Each returns (ttft_s, decode_tokens_per_s) for exactly ``new_tokens`` generated tokens
(end of sequence ignored), so backends are compared on identical work.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class PyTorchBackend:
    name = "pytorch-fp32"

    def __init__(self, checkpoint: Path):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(os.cpu_count() or 1)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())

    def run(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        from transformers.generation.streamers import BaseStreamer

        stamps: list[float] = []

        class Clock(BaseStreamer):
            def put(self, value):
                stamps.append(time.perf_counter())

            def end(self):
                pass

        input_ids = self.torch.tensor([ids])
        started = time.perf_counter()
        with self.torch.inference_mode():
            self.model.generate(input_ids, attention_mask=self.torch.ones_like(input_ids), do_sample=False,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=Clock(),
                                pad_token_id=self.model.config.eos_token_id)
        finished = time.perf_counter()
        # put() is called once with the prompt, then once per new token.
        ttft = stamps[1] - started
        return ttft, (new_tokens - 1) / (finished - stamps[1])


class OpenVINOBackend:
    def __init__(self, model_dir: Path, label: str):
        import openvino_genai

        self.name = label
        # Prefix caching would turn repeated prompts into cache hits: time cold prefill only.
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching = False
        self.pipeline = openvino_genai.LLMPipeline(str(model_dir), "CPU", scheduler_config=scheduler,
                                                   PERFORMANCE_HINT="LATENCY")
        self.weights_bytes = (model_dir / "openvino_model.bin").stat().st_size

    def run(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        import numpy as np
        import openvino as ov

        config = self.pipeline.get_generation_config()
        config.max_new_tokens = new_tokens
        config.min_new_tokens = new_tokens
        config.ignore_eos = True
        config.do_sample = False
        config.apply_chat_template = False
        result = self.pipeline.generate(ov.Tensor(np.array([ids], dtype=np.int64)), config)
        perf = result.perf_metrics
        ttft = perf.get_ttft().mean / 1000
        total = perf.get_generate_duration().mean / 1000
        return ttft, (perf.get_num_generated_tokens() - 1) / (total - ttft)


class LlamaCppBackend:
    def __init__(self, gguf: Path, label: str, n_ctx: int = 4096):
        from llama_cpp import Llama

        self.name = label
        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=os.cpu_count(), n_batch=512,
                         verbose=False, logits_all=False)
        self.weights_bytes = gguf.stat().st_size

    def run(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        self.llm.reset()
        started = time.perf_counter()
        first = None
        count = 0
        for _ in self.llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            count += 1
            if first is None:
                first = time.perf_counter()
            if count >= new_tokens:
                break
        finished = time.perf_counter()
        return first - started, (count - 1) / (finished - first)


def quantize_gguf(source: Path, target: Path, ftype: str = "Q8_0") -> Path:
    """Requantize with llama.cpp itself so the peer runs its own best format."""
    import llama_cpp

    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    target.parent.mkdir(parents=True, exist_ok=True)
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    if status != 0 or not target.is_file():
        raise RuntimeError(f"llama_model_quantize failed with status {status}")
    return target
