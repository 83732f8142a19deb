from datetime import date

import pytest

from copilot.cli import main
from knowledge.build import build
from knowledge.currency import retire
from knowledge.graph import KnowledgeGraph
from knowledge.retrieval import Retriever
from knowledge.snapshot import Snapshot
from tests.helpers import MINI, write_sources


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    build(home, write_sources(tmp_path / "src", MINI), progress=lambda _: None)
    return home


def test_an_expired_item_is_refused_everywhere(home, capsys, monkeypatch):
    snapshot = Snapshot.current(home)
    before, after = date(2027, 4, 30), date(2027, 5, 1)  # review_by is 2027-04-30
    assert snapshot.get("drug.amoxicillin", before) is not None
    assert snapshot.get("drug.amoxicillin", after) is None
    assert "amoxicillin" not in KnowledgeGraph(snapshot, today=after).drugs
    retriever = Retriever(snapshot)
    assert any(r["id"] == "drug.amoxicillin" for r in retriever.search("amoxicillin Amoxil", today=before))
    assert retriever.search("amoxicillin Amoxil", today=after) == []
    monkeypatch.setenv("COPILOT_HOME", str(home))
    assert main(["knowledge", "check", "--as-of", "2027-05-01"]) == 1
    out = capsys.readouterr().out
    assert "EXPIRED  drug.amoxicillin" in out and "drugs.yaml:" in out
    assert main(["knowledge", "check", "--as-of", "2027-04-30"]) == 0


def test_not_yet_effective_items_are_not_served(home):
    assert Snapshot.current(home).get("drug.amoxicillin", date(2026, 10, 31)) is None


def test_retired_items_are_never_served(home):
    snapshot = Snapshot.current(home)
    assert snapshot.items["passage.test.old-advice"].status == "retired"
    assert snapshot.get("passage.test.old-advice", date(2026, 12, 1)) is None
    results = Retriever(snapshot).search("outdated recommendation about screening intervals", k=10, today=date(2026, 12, 1))
    assert "passage.test.old-advice" not in [r["id"] for r in results]


def test_retire_records_who_and_why_and_rebuilds(home):
    old = Snapshot.current(home)
    record = retire(home, "drug.cephalexin", "Local formulary removed it", by="dr.chen")
    new = Snapshot.current(home)
    assert record["snapshot"] == new.id != old.id
    assert set(new.items) == set(old.items), "the rebuild must use the sources the snapshot came from"
    item = new.items["drug.cephalexin"]
    assert (item.status, item.retired_reason, item.retired_by) == ("retired", "Local formulary removed it", "dr.chen")
    assert new.get("drug.cephalexin", date(2026, 12, 1)) is None
    log = (home / "knowledge" / "retirements.jsonl").read_text()
    assert '"by": "dr.chen"' in log and '"at": "' in log
    with pytest.raises(ValueError, match="already retired"):
        retire(home, "drug.cephalexin", "again", by="x")
    with pytest.raises(KeyError):
        retire(home, "drug.unknown", "why", by="x")
    with pytest.raises(ValueError, match="needs a reason"):
        retire(home, "drug.amoxicillin", "  ", by="x")


def test_retire_from_the_command_line(home, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(home))
    assert main(["knowledge", "retire", "drug.amoxicillin", "--reason", "Recall", "--by", "qc.office"]) == 0
    assert "retired drug.amoxicillin by qc.office" in capsys.readouterr().out
    assert Snapshot.current(home).items["drug.amoxicillin"].status == "retired"


def test_shipped_knowledge_passes_check(shipped_home, capsys, monkeypatch):
    monkeypatch.setenv("COPILOT_HOME", str(shipped_home))
    assert main(["knowledge", "check", "--as-of", "2026-11-23"]) == 0
