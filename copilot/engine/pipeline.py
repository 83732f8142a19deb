"""The inference engine: one OpenVINO GenAI pipeline, loaded once, fed by one queue.

The pipeline is not re-entrant, so a single worker thread owns it and serves requests
in arrival order from a bounded queue (callers beyond ``max_queue`` get ``EngineBusy``
at once rather than waiting without end). Each request streams its text through its own
channel, so concurrent callers never see each other's tokens.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import openvino_genai

from copilot.engine.errors import EngineBusy, EngineError, InvalidRequest
from copilot.engine.generation import (DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS_LIMIT, GenerationMetrics,
                                       GenerationRequest, GenerationResult, StreamingEngine)
from copilot.engine.stops import StopStringFilter, valid_text


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "MAX_NEW_TOKENS_LIMIT", "Engine", "EngineBusy", "EngineError", "GenerationMetrics",
           "GenerationRequest", "GenerationResult", "InvalidRequest"]


@dataclass
class _Job:
    request: GenerationRequest
    cancel: threading.Event
    channel: "queue.Queue[tuple[str, object]]"
    enqueued: float


_DONE = object()


class Engine(StreamingEngine):
    def __init__(self, model_dir: str | Path, device: str = "CPU", max_queue: int = 16,
                 prompt_lookup: bool = False, cache_dir: str | Path | None = None,
                 num_assistant_tokens: int = 5, max_ngram_size: int = 3, inference_threads: int = 0):
        """``inference_threads`` caps OpenVINO's CPU threads (0: all cores), leaving cores to the
        web tier so rule-based QC stays fast while notes are generated."""
        model_dir = Path(model_dir)
        if not (model_dir / "openvino_model.xml").is_file():
            raise EngineError(f"no exported model at {model_dir}; run `copilot model prepare` first")
        properties = {"PERFORMANCE_HINT": "LATENCY"}
        if cache_dir:
            properties["CACHE_DIR"] = str(cache_dir)
        if prompt_lookup:
            properties["prompt_lookup"] = True
        if inference_threads:
            properties["INFERENCE_NUM_THREADS"] = int(inference_threads)
        started = time.monotonic()
        self.pipeline = openvino_genai.LLMPipeline(str(model_dir), device, **properties)
        self.load_s = time.monotonic() - started
        self.tokenizer = self.pipeline.get_tokenizer()
        self.model_dir = model_dir
        self.device = device
        self.prompt_lookup = prompt_lookup
        self.num_assistant_tokens = num_assistant_tokens
        self.max_ngram_size = max_ngram_size
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._worker = threading.Thread(target=self._serve, name="copilot-engine", daemon=True)
        self._worker.start()

    # -- public API -------------------------------------------------------------------
    def render_prompt(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            return self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
        return request.prompt

    def count_tokens(self, text: str) -> int:
        return int(self.tokenizer.encode(text, add_special_tokens=False).input_ids.get_shape()[-1])

    def stream(self, request: GenerationRequest, cancel: threading.Event | None = None,
               wait_s: float = 0.0) -> Iterator[str | GenerationResult]:
        """Yield text pieces in order, then one GenerationResult. Closing the iterator cancels.

        A full queue refuses at once (EngineBusy), unless ``wait_s`` allows waiting for a place:
        work already admitted, such as the later sections of a note, waits rather than fails."""
        request.validate()
        job = _Job(request, cancel or threading.Event(), queue.Queue(), time.monotonic())
        try:
            if wait_s > 0:
                self._jobs.put(job, timeout=wait_s)
            else:
                self._jobs.put_nowait(job)
        except queue.Full:
            raise EngineBusy("the engine queue is full; try again shortly") from None
        try:
            while True:
                kind, payload = job.channel.get()
                if kind == "text":
                    yield payload
                elif kind == "error":
                    raise payload
                else:
                    yield payload
                    return
        finally:
            job.cancel.set()

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        return self._jobs.qsize()

    @property
    def queue_full(self) -> bool:
        """For callers that must refuse before they start streaming (a best-effort check)."""
        return self._jobs.full()

    # -- worker -----------------------------------------------------------------------
    def _config(self, request: GenerationRequest) -> "openvino_genai.GenerationConfig":
        config = self.pipeline.get_generation_config()
        config.max_new_tokens = request.max_new_tokens
        config.apply_chat_template = False  # render_prompt already applied it where wanted
        config.stop_strings = set(request.stop)
        config.include_stop_str_in_output = False
        config.repetition_penalty = float(request.repetition_penalty)
        if request.temperature > 0:
            config.do_sample = True
            config.temperature = float(request.temperature)
            config.top_p = float(request.top_p)
            config.top_k = int(request.top_k)
            if request.seed is not None:
                config.rng_seed = int(request.seed)
        else:
            config.do_sample = False
        if self.prompt_lookup:
            config.num_assistant_tokens = self.num_assistant_tokens
            config.max_ngram_size = self.max_ngram_size
        return config

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancel.is_set():
                job.channel.put(("done", GenerationResult("", "cancelled", GenerationMetrics())))
                continue
            try:
                job.channel.put(("done", self._run(job)))
            except Exception as exc:  # surfaced to the caller, never kills the worker
                job.channel.put(("error", EngineError(f"generation failed: {exc}")))

    def _run(self, job: _Job) -> GenerationResult:
        started = time.monotonic()
        prompt = self.render_prompt(job.request)
        stops = StopStringFilter(job.request.stop)
        pieces: list[str] = []

        def on_text(text: str):
            for out in stops.feed(valid_text(text)):
                pieces.append(out)
                job.channel.put(("text", out))
            if job.cancel.is_set() or stops.stopped:
                return openvino_genai.StreamingStatus.CANCEL if job.cancel.is_set() else openvino_genai.StreamingStatus.STOP
            return openvino_genai.StreamingStatus.RUNNING

        result = self.pipeline.generate([prompt], self._config(job.request), on_text)
        if not stops.stopped and not job.cancel.is_set():
            for out in stops.flush():
                pieces.append(out)
                job.channel.put(("text", out))
        perf = result.perf_metrics
        generated = int(perf.get_num_generated_tokens())
        ttft = perf.get_ttft().mean / 1000
        total = time.monotonic() - started
        decode_time = perf.get_generate_duration().mean / 1000 - ttft
        metrics = GenerationMetrics(
            prompt_tokens=int(perf.get_num_input_tokens()),
            generated_tokens=generated,
            queue_wait_s=started - job.enqueued,
            ttft_s=ttft,
            decode_tokens_per_s=(generated - 1) / decode_time if generated > 1 and decode_time > 0 else 0.0,
            total_s=total,
            prompt_lookup=self.prompt_lookup,
        )
        if job.cancel.is_set():
            reason = "cancelled"
        elif stops.stopped or generated < job.request.max_new_tokens:
            reason = "stop"
        else:
            reason = "length"
        return GenerationResult("".join(pieces), reason, metrics)
