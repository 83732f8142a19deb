import json

import pytest

from knowledge.build import BuildError, build, read_sources
from tests.helpers import DEFAULTS, MINI, write_sources


def test_shipped_sources_are_valid_and_complete():
    located, problems = read_sources()
    assert problems == []
    kinds = {}
    for entry in located:
        kinds[entry.item.kind] = kinds.get(entry.item.kind, 0) + 1
    assert kinds["drug"] >= 150
    assert sum(1 for e in located if e.item.kind == "passage" and e.item.status == "active") >= 300
    assert kinds["interaction"] >= 15 and kinds["abbreviation"] >= 9
    tjc = {e.item.abbreviation for e in located if e.item.kind == "abbreviation" and e.item.list == "tjc_do_not_use"}
    assert len(tjc) >= 9
    limits = {(e.item.jurisdiction, e.item.document_type, e.item.hours) for e in located if e.item.kind == "time_limit"}
    assert ("CN", "admission_note", 24) in limits and ("CN", "first_course_record", 8) in limits
    assert any(j == "US" and d == "admission_note" for j, d, _ in limits)
    for entry in located:
        assert entry.item.source.title and entry.item.source.url


def build_error(tmp_path, files) -> list[str]:
    with pytest.raises(BuildError) as raised:
        build(tmp_path / "home", write_sources(tmp_path / "src", files), with_index=False, progress=lambda _: None)
    return raised.value.problems


def test_malformed_yaml_names_file_and_line(tmp_path):
    problems = build_error(tmp_path, {**MINI, "drugs.yaml": MINI["drugs.yaml"] + "  - id: [unclosed\n"})
    assert any(p.startswith("drugs.yaml:") and "YAML error" in p for p in problems)


def test_duplicate_id_names_both_places(tmp_path):
    extra = "kind: drug_class\n" + DEFAULTS + "items:\n  - {id: drug_class.penicillin, name: again, parent: null}\n"
    problems = build_error(tmp_path, {**MINI, "zz.yaml": extra})
    assert any("duplicate id drug_class.penicillin" in p and "classes.yaml:" in p and p.startswith("zz.yaml:10")
               for p in problems), problems


@pytest.mark.parametrize("replace, expected", [
    (("brands: [Amoxil]", "brands: [Amoxil]\n    colour: pink"), "colour: Extra inputs are not permitted"),
    (("value: 3000", "value: -5"), "max_daily_dose.value"),
    (("classes: [penicillin, beta_lactam]", "classes: [penicilin]"), "unknown drug class 'penicilin'"),
    (("id: drug.amoxicillin", "id: Drug Amoxicillin"), "id: String should match pattern"),
])
def test_item_errors_name_file_line_item_and_reason(tmp_path, replace, expected):
    problems = build_error(tmp_path, {**MINI, "drugs.yaml": MINI["drugs.yaml"].replace(*replace, 1)})
    assert any(p.startswith("drugs.yaml:") and expected in p for p in problems), problems


def test_review_cycle_longer_than_six_months_is_refused(tmp_path):
    body = MINI["passages.yaml"].replace("topics: [sepsis]", "topics: [sepsis]\n    review_by: 2027-11-01")
    problems = build_error(tmp_path, {**MINI, "passages.yaml": body})
    assert any("passage.test.sepsis" in p and "more than six months" in p for p in problems)


def test_retired_item_needs_a_reason(tmp_path):
    body = MINI["passages.yaml"].replace("    retired_reason: Superseded by the newer statement\n", "")
    problems = build_error(tmp_path, {**MINI, "passages.yaml": body})
    assert any("passage.test.old-advice" in p and "retired_reason" in p for p in problems)


def test_non_utf8_file_is_refused(tmp_path):
    folder = write_sources(tmp_path / "src", MINI)
    (folder / "latin1.yaml").write_bytes("kind: passage\nitems: []\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(BuildError, match="latin1.yaml: not UTF-8"):
        build(tmp_path / "home", folder, with_index=False, progress=lambda _: None)


def test_failed_build_keeps_the_last_good_snapshot(tmp_path):
    home, folder = tmp_path / "home", write_sources(tmp_path / "src", MINI)
    good = build(home, folder, with_index=False, progress=lambda _: None)
    pointer = (home / "knowledge" / "CURRENT").read_text()
    (folder / "drugs.yaml").write_text(MINI["drugs.yaml"].replace("value: 3000", "value: lots"))
    with pytest.raises(BuildError):
        build(home, folder, with_index=False, progress=lambda _: None)
    assert (home / "knowledge" / "CURRENT").read_text() == pointer
    assert (good / "manifest.json").is_file()
    assert [p.name for p in (home / "knowledge" / "snapshots").iterdir()] == [good.name]


def test_snapshot_id_follows_content(tmp_path):
    home, folder = tmp_path / "home", write_sources(tmp_path / "src", MINI)
    first = build(home, folder, with_index=False, progress=lambda _: None)
    assert build(home, folder, with_index=False, progress=lambda _: None) == first
    (folder / "drugs.yaml").write_text(MINI["drugs.yaml"].replace("value: 3000", "value: 2000"))
    second = build(home, folder, with_index=False, progress=lambda _: None)
    assert second != first and second.name.startswith("kb-")
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["items"] == 7 and manifest["retired"] == 1
