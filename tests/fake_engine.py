"""A scripted stand-in for the inference engine: the same interface, deterministic tokens.

Web, drafting and QC tests exercise everything around the model (streaming, SSE framing,
cancellation, admission, audit, grounding marks) without loading one: the tokens come from a
script, optionally paced (``token_delay``) or failing after N tokens (``fail_after``). Tests that
need real language use the embedded model instead and carry the ``embedded`` marker.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from copilot.engine.errors import EngineBusy, EngineError
from copilot.engine.generation import GenerationMetrics, GenerationRequest, GenerationResult, StreamingEngine
from copilot.engine.stops import StopStringFilter

MANIFEST = "copilot-model.json"
DEFAULT_REPLY = "Scripted reply from the fake engine."
TOKEN = re.compile(r"\s*[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]|\s*[^\s\u3400-\u9fff\uff00-\uffef\u3000-\u303f]+|\s+$")
Script = Callable[[str, GenerationRequest], str]


def tokens_of(text: str) -> list[str]:
    """Words with their leading space (one CJK character each): how the fake 'decodes'."""
    return TOKEN.findall(text)


class FakeTokenizer:
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


class FakeEngine(StreamingEngine):
    """``script``: the reply text, or a function of (rendered prompt, request) returning it."""

    def __init__(self, script: str | Script | None = None, *, token_delay: float = 0.0, fail_after: int | None = None,
                 max_queue: int = 16, model_dir: Path | None = None, name: str = "fake-engine"):
        self.script = script if script is not None else DEFAULT_REPLY
        self.token_delay = token_delay
        self.fail_after = fail_after
        self.max_queue = max_queue
        self.tokenizer = FakeTokenizer()
        self.device = "CPU"
        self.prompt_lookup = False
        self.load_s = 0.0
        self.model_dir = Path(model_dir) if model_dir else None
        self.name = name
        self.calls: list[GenerationRequest] = []  # every admitted request, for assertions
        self._lock = threading.Lock()
        self._running = threading.Lock()  # one generation at a time, as the real engine
        self._admitted = 0
        self._space = threading.Condition(self._lock)

    def write_manifest(self, folder: Path) -> FakeEngine:
        """Give the fake a model folder with a manifest, as /health and the audit log read it."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).write_text(json.dumps({"name": self.name, "weight_format": "fake",
                                                   "source_fingerprint": "fake-0123456789abcdef"}))
        self.model_dir = folder
        return self

    # -- the engine interface ----------------------------------------------------------------
    def render_prompt(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            return self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True)
        return request.prompt

    def count_tokens(self, text: str) -> int:
        return len(tokens_of(text))

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return max(self._admitted - 1, 0)

    @property
    def queue_full(self) -> bool:
        return self.queue_depth >= self.max_queue

    def stream(self, request: GenerationRequest, cancel: threading.Event | None = None,
               wait_s: float = 0.0) -> Iterator[str | GenerationResult]:
        request.validate()
        cancel = cancel or threading.Event()
        enqueued = time.monotonic()
        self._admit(wait_s)
        try:
            with self._running:
                yield from self._generate(request, cancel, enqueued)
        finally:
            cancel.set()
            with self._lock:
                self._admitted -= 1
                self._space.notify()

    def close(self) -> None:
        pass

    # -- internals ----------------------------------------------------------------------------
    def _admit(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._admitted >= self.max_queue + 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineBusy("the engine queue is full; try again shortly")
                self._space.wait(left)
            self._admitted += 1

    def _reply(self, prompt: str, request: GenerationRequest) -> str:
        return self.script(prompt, request) if callable(self.script) else self.script

    def _generate(self, request: GenerationRequest, cancel: threading.Event, enqueued: float):
        started = time.monotonic()
        prompt = self.render_prompt(request)
        self.calls.append(request)
        stops = StopStringFilter(request.stop)
        pieces: list[str] = []
        generated, first = 0, None
        reason = "stop"
        for token in tokens_of(self._reply(prompt, request)):
            if cancel.is_set():
                reason = "cancelled"
                break
            if generated >= request.max_new_tokens:
                reason = "length"
                break
            if self.fail_after is not None and generated >= self.fail_after:
                raise EngineError("generation failed: scripted failure")
            if self.token_delay:
                time.sleep(self.token_delay)
            generated += 1
            first = first or time.monotonic()
            for out in stops.feed(token):
                pieces.append(out)
                yield out
            if stops.stopped:
                break
        if not stops.stopped and reason != "cancelled":
            for out in stops.flush():
                pieces.append(out)
                yield out
        total = time.monotonic() - started
        ttft = (first - started) if first else total
        metrics = GenerationMetrics(prompt_tokens=self.count_tokens(prompt), generated_tokens=generated,
                                    queue_wait_s=started - enqueued, ttft_s=max(ttft, 1e-6),
                                    decode_tokens_per_s=(generated - 1) / (total - ttft) if generated > 1 and total > ttft
                                    else 0.0, total_s=max(total, 1e-6))
        yield GenerationResult("".join(pieces), reason, metrics)
