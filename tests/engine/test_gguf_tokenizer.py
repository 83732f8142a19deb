import pytest

from copilot.engine.gguf_tokenizer import (
    ROUND_TRIP_SAMPLES,
    UnsupportedTokenizer,
    read_gguf_tokenizer,
    round_trip_failures,
)
from copilot.engine.prepare import embedded_gguf


@pytest.fixture(scope="module")
def tokenizer():
    return read_gguf_tokenizer(embedded_gguf())


def test_round_trip_is_exact_including_chinese(tokenizer):
    assert any("患者" in s for s in ROUND_TRIP_SAMPLES)
    assert round_trip_failures(tokenizer) == []
    extra = ["高血压病史，口服氨氯地平5mg qd。", "BP 120/80,  HR 72\n\tSpO2 98%"]
    assert round_trip_failures(tokenizer, extra) == []


def test_spaces_are_real_tokens_not_unknown(tokenizer):
    """The trap: a SentencePiece-style rebuild maps every space to id 0 (<|endoftext|>)."""
    ids = tokenizer.encode("the patient has a cough", add_special_tokens=False)
    assert 0 not in ids
    assert len(ids) == 5  # byte-level BPE: each word carries its leading space ("Ġpatient")
    assert tokenizer.convert_ids_to_tokens(ids)[1] == "Ġpatient"


def test_special_tokens_and_chat_template(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.encode("<|im_end|>", add_special_tokens=False) == [tokenizer.eos_token_id]


def test_digits_are_split_one_by_one(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode("2048", add_special_tokens=False))
    assert tokens == ["2", "0", "4", "8"]


def test_non_bpe_gguf_is_refused(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "spm.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<unk>", "a"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(UnsupportedTokenizer, match="only byte-level BPE"):
        read_gguf_tokenizer(path)
