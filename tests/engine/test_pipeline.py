import threading

import pytest

from copilot.engine.pipeline import Engine, EngineBusy, EngineError, GenerationRequest, GenerationResult, InvalidRequest
from copilot.engine.stops import StopStringFilter, valid_text

CLINICAL_PROMPTS = [
    "The patient is a 54-year-old man with a history of hypertension who presents with",
    "Chief complaint: shortness of breath.\nHistory of present illness:",
    "The most common side effects of lisinopril are",
]


def collect(engine, request):
    pieces, result = [], None
    for item in engine.stream(request):
        if isinstance(item, GenerationResult):
            result = item
        else:
            assert result is None, "text after the final result"
            pieces.append(item)
    return pieces, result


def test_streaming_pieces_form_the_result_in_order(embedded_engine):
    request = GenerationRequest(messages=[{"role": "user", "content": "Name three symptoms of sepsis."}], max_new_tokens=40)
    pieces, result = collect(embedded_engine, request)
    assert len(pieces) > 3
    assert "".join(pieces) == result.text
    assert result.text.strip()


def test_greedy_is_deterministic(embedded_engine):
    request = GenerationRequest(prompt=CLINICAL_PROMPTS[0], max_new_tokens=24)
    assert embedded_engine.generate(request).text == embedded_engine.generate(request).text


def test_metrics_are_present_and_sane(embedded_engine):
    request = GenerationRequest(prompt=CLINICAL_PROMPTS[1], max_new_tokens=32)
    result = embedded_engine.generate(request)
    m = result.metrics
    assert m.prompt_tokens == embedded_engine.count_tokens(CLINICAL_PROMPTS[1])
    assert 1 <= m.generated_tokens <= 32
    assert 0 < m.ttft_s <= m.total_s
    assert m.decode_tokens_per_s > 0 or m.generated_tokens == 1
    assert m.queue_wait_s >= 0
    assert result.finish_reason in {"stop", "length"}


def test_length_limit_is_reported(embedded_engine):
    result = embedded_engine.generate(GenerationRequest(prompt="1, 2, 3, 4,", max_new_tokens=5))
    assert result.metrics.generated_tokens == 5
    assert result.finish_reason == "length"


def test_stop_string_ends_generation_and_is_not_streamed(embedded_engine):
    request = GenerationRequest(prompt="Counting: 1, 2, 3, 4, 5,", max_new_tokens=40, stop=["9"])
    pieces, result = collect(embedded_engine, request)
    unbounded = embedded_engine.generate(GenerationRequest(prompt="Counting: 1, 2, 3, 4, 5,", max_new_tokens=40))
    assert "9" in unbounded.text, "precondition: the model counts past 9"
    assert result.text == unbounded.text[: unbounded.text.index("9")]
    assert "9" not in "".join(pieces)
    assert result.finish_reason == "stop"


def test_cancellation_stops_early(embedded_engine):
    cancel = threading.Event()
    request = GenerationRequest(prompt=CLINICAL_PROMPTS[0], max_new_tokens=200)
    result = None
    for item in embedded_engine.stream(request, cancel):
        if isinstance(item, GenerationResult):
            result = item
        else:
            cancel.set()
    assert result.finish_reason == "cancelled"
    assert result.metrics.generated_tokens < 200


def test_concurrent_callers_get_their_own_answers(embedded_engine):
    expected = {p: embedded_engine.generate(GenerationRequest(prompt=p, max_new_tokens=20)).text for p in CLINICAL_PROMPTS}
    got, errors = {}, []

    def call(prompt):
        try:
            pieces, result = collect(embedded_engine, GenerationRequest(prompt=prompt, max_new_tokens=20))
            got[prompt] = ("".join(pieces), result.text)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(p,)) for p in CLINICAL_PROMPTS * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    for prompt in CLINICAL_PROMPTS:
        assert got[prompt] == (expected[prompt], expected[prompt])


def test_full_queue_refuses_at_once(embedded_model):
    engine = Engine(embedded_model, max_queue=1)
    try:
        running = engine.stream(GenerationRequest(prompt=CLINICAL_PROMPTS[0], max_new_tokens=300))
        next(running)  # the worker now owns this one; the queue is empty
        started = threading.Event()

        def waiting():
            items = engine.stream(GenerationRequest(prompt=CLINICAL_PROMPTS[1], max_new_tokens=4))
            started.set()
            list(items)

        holder = threading.Thread(target=waiting)
        holder.start()
        started.wait(5)
        import time

        deadline = time.monotonic() + 5
        while engine.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(EngineBusy):
            next(engine.stream(GenerationRequest(prompt="x", max_new_tokens=2)))
        running.close()  # cancels the long one
        holder.join(timeout=60)
        assert not holder.is_alive()
    finally:
        engine.close()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one"),
    ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one"),
    ({"prompt": "   "}, "non-empty"),
    ({"messages": [{"role": "doctor", "content": "x"}]}, "role"),
    ({"prompt": "a", "max_new_tokens": 0}, "max_new_tokens"),
    ({"prompt": "a", "max_new_tokens": 10**6}, "max_new_tokens"),
    ({"prompt": "a", "temperature": -1}, "temperature"),
    ({"prompt": "a", "stop": [""]}, "stop"),
])
def test_invalid_requests(kwargs, message):
    with pytest.raises(InvalidRequest, match=message):
        GenerationRequest(**kwargs).validate()


def test_missing_model_dir(tmp_path):
    with pytest.raises(EngineError, match="copilot model prepare"):
        Engine(tmp_path)


def test_sampling_with_seed_is_reproducible(embedded_engine):
    request = GenerationRequest(prompt=CLINICAL_PROMPTS[2], max_new_tokens=16, temperature=0.8, top_p=0.95, seed=7)
    assert embedded_engine.generate(request).text == embedded_engine.generate(request).text


def test_openvino_int8_tracks_pytorch(embedded_model, embedded_settings):
    """INT8 must reproduce the fp32 model's next-token choice.

    Greedy prefixes are a brittle measure (one near-tie flips and the texts diverge), so
    we compare, teacher-forced over 200 tokens of a real clinical note, the top-1 token
    of the exported model against PyTorch fp32 (measured: 0.95 at f32 precision, 0.925
    with the CPU's default bf16) and require the first greedy token to match exactly.
    """
    import torch
    from optimum.intel import OVModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = embedded_settings.checkpoint_dir()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    reference = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    exported = OVModelForCausalLM.from_pretrained(embedded_model, ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    note = (
        "CHIEF COMPLAINT\n\nFollow-up of hypertension and type 2 diabetes.\n\nHISTORY OF PRESENT ILLNESS\n\n"
        "Mr. Smith is a 62-year-old male who presents for follow-up of his hypertension and diabetes. He reports "
        "good adherence to lisinopril 20 mg daily and metformin 1000 mg twice daily. He checks his blood sugars "
        "at home and they have been running between 120 and 160 in the mornings. He denies chest pain, shortness "
        "of breath, polyuria or polydipsia. He has been walking 30 minutes most days of the week.\n\n"
        "PHYSICAL EXAMINATION\n\nBlood pressure 138/84, heart rate 72. Lungs clear to auscultation bilaterally. "
        "Heart regular rate and rhythm without murmurs. Extremities without edema.\n\nASSESSMENT AND PLAN\n\n"
        "1. Hypertension, not at goal. Increase lisinopril to 40 mg daily and recheck a basic metabolic panel in "
        "two weeks.\n2. Type 2 diabetes. Hemoglobin A1c 7.4 today. Continue metformin and reinforce diet."
    )
    ids = tokenizer(note, return_tensors="pt").input_ids[:, :200]
    with torch.inference_mode():
        expected = reference(ids).logits[0].argmax(-1)
    got = exported(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].argmax(-1)
    assert (got == expected).float().mean().item() >= 0.9

    for prompt in CLINICAL_PROMPTS:
        prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            first = reference(prompt_ids).logits[0, -1].argmax().item()
        assert exported(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids)).logits[0, -1].argmax().item() == first


@pytest.mark.parametrize("stream, stops, expected", [
    (["Hello", " wor", "ld"], ["world"], "Hello "),
    (["The plan", ":\n", "Done"], ["<|im_end|>"], "The plan:\nDone"),
    (["abc<|im", "_end|>tail"], ["<|im_end|>"], "abc"),
    (["7, 8", ", 9, 10"], ["9"], "7, 8, "),
])
def test_stop_string_filter_holds_back_partial_matches(stream, stops, expected):
    stop_filter = StopStringFilter(stops)
    out = []
    for piece in stream:
        emitted = stop_filter.feed(piece)
        out += emitted
        # never emit anything that is (the start of) a stop string
        assert not any(s in "".join(out) for s in stops)
    out += stop_filter.flush()
    assert "".join(out) == expected


def test_invalid_utf8_never_reaches_the_text():
    assert valid_text("肾结\ufffd") == "肾结"
    assert valid_text("a\ufffd\ufffdb") == "ab"
    assert valid_text("胸痛3天") == "胸痛3天"


def test_chinese_cut_mid_character_streams_no_replacement_character(embedded_engine):
    """SmolLM2's byte-level BPE spends 2-3 tokens on a Chinese character: a token limit falling
    inside one left a U+FFFD at the end of the section ("肾结�", issue 16)."""
    for limit in range(1, 15):
        request = GenerationRequest(prompt="写出诊断和治疗意见：肾结石。", max_new_tokens=limit)
        pieces, result = collect(embedded_engine, request)
        assert "".join(pieces) == result.text
        assert "\ufffd" not in result.text, (limit, result.text)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in result.text)
