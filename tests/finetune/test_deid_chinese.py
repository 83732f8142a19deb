"""Chinese de-identification: the hand-labelled set (benchmarks/data/deid_zh.jsonl) and each recogniser."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from finetune.deid import SurrogateMap, dates
from finetune.deid.identifiers import cn_check_digit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import deid_eval  # noqa: E402

ZH_SET = REPO / "benchmarks" / "data" / "deid_zh.jsonl"
ZH_SOURCE = REPO / "benchmarks" / "data" / "deid_zh.src.txt"


def _types(scrubber, text: str) -> dict[str, str]:
    return {text[d.start:d.end]: d.type for d in scrubber.detect(text)}


def test_the_set_is_built_from_its_markup_and_large_enough():
    built = deid_eval.parse_markup(ZH_SOURCE.read_text(encoding="utf-8"))
    assert built == deid_eval.load_set(ZH_SET), "rebuild deid_zh.jsonl with --markup (see DEID_ZH.md)"
    spans = [s for row in built for s in row["spans"]]
    assert len(spans) >= 300
    for row in built:
        for s in row["spans"] + row["lookalikes"]:
            assert row["text"][s["start"]:s["end"]] == s["text"]


def test_chinese_recall_and_precision_per_type(scrubber):
    report = deid_eval.evaluate(scrubber, deid_eval.load_set(ZH_SET))
    for type_, figures in report["matching"]["overlap"]["per_type"].items():
        assert figures["recall"] >= 0.95 and figures["precision"] >= 0.9, (type_, figures)
    assert report["lookalikes"]["detected"] == 0, report["lookalikes"]


def test_parse_markup_rejects_a_header_without_kind():
    with pytest.raises(ValueError, match="id and a kind"):
        deid_eval.parse_markup("### only-an-id\n{NAME:王芳}")


@pytest.mark.parametrize("text", ["出院小结\n患者一般情况可。", "入院记录\n首次病程记录", "申请医生：", "患者高血压病史10年",
                                  "患者于昨日入院", "患者今日诉头晕"])
def test_headings_and_prose_are_not_names(scrubber, text):
    assert "NAME" not in _types(scrubber, text).values()


@pytest.mark.parametrize("text, name", [("姓名：欧阳明辉　性别：男", "欧阳明辉"), ("患者之子王立新代诉", "王立新"),
                                        ("主治医师程立查看患者", "程立"), ("龙飞先生，48岁", "龙飞"),
                                        ("参加人员：沈浩、韩雪。", "韩雪")])
def test_chinese_names_after_and_before_cues(scrubber, text, name):
    assert _types(scrubber, text).get(name) == "NAME"


def test_resident_id_is_certain_only_with_its_check_digit(scrubber):
    """A valid check digit makes the match certain; a mistyped one is still scrubbed, with less confidence."""
    body = "11010519301111007"
    good = body + cn_check_digit(body)
    bad = body + next(c for c in "0123456789" if c != cn_check_digit(body))
    scores = {d.type: d.score for d in scrubber.detect(f"证件 {good} ")}
    assert scores == {"ID": 1.0}
    scores = {d.type: d.score for d in scrubber.detect(f"证件 {bad} ")}
    assert scores.get("ID", 0) < 1.0


@pytest.mark.parametrize("text, value, type_", [
    ("住院号：ZY20240316，", "ZY20240316", "MRN"), ("病案号：BA2024052006，", "BA2024052006", "MRN"),
    ("医保卡号：310000D156432789。", "310000D156432789", "ACCOUNT"), ("电话0571-87236114。", "0571-87236114", "PHONE"),
    ("年龄：九十一岁", "九十一岁", "AGE"), ("患者92岁", "92岁", "AGE"), ("于2024.04.22入院", "2024.04.22", "DATE"),
    ("于二〇二四年一月十六日出院", "二〇二四年一月十六日", "DATE"), ("嘱1月30日复诊", "1月30日", "DATE"),
    ("见 https://a.example.cn/x，谢谢", "https://a.example.cn/x", "URL"), ("邮箱xiayu@boe.com.cn，", "xiayu@boe.com.cn", "EMAIL"),
    ("现住上海市徐汇区漕溪北路398号12楼1203室。", "上海市徐汇区漕溪北路398号12楼1203室", "ADDRESS"),
    ("既往于北京协和医院手术", "北京协和医院", "LOCATION")])
def test_chinese_identifiers(scrubber, text, value, type_):
    assert _types(scrubber, text).get(value) == type_


def test_ages_under_90_and_scores_stay(scrubber):
    assert _types(scrubber, "患者78岁，GCS 15分，血压130/80mmHg") == {}


def test_chinese_surrogates_are_chinese_and_consistent():
    key_map = SurrogateMap(seed="enc-1", key="k")
    first = key_map.replace("NAME", "王建国")
    assert first != "王建国" and len(first) == 3 and all("\u4e00" <= c <= "\u9fff" for c in first)
    assert key_map.replace("NAME", "王建国") == first
    assert SurrogateMap(seed="enc-1", key="k").replace("NAME", "王建国") == first
    assert key_map.replace("NAME", "欧阳倩") != "欧阳倩" and len(key_map.replace("NAME", "欧阳倩")) == 2
    assert key_map.replace("LOCATION", "北京协和医院").endswith("医院")
    assert key_map.replace("AGE", "九十一岁") == "九十岁" and key_map.replace("AGE", "92岁") == "90岁"
    assert key_map.replace("PHONE", "0571-87236114")[0] == "0"


def test_chinese_dates_shift_in_their_own_format():
    assert dates.shift("二〇二四年一月十六日", -40) == "二〇二三年十二月七日"
    assert dates.shift("2024.04.22", -40) == "2024.03.13"
    assert dates.shift("1月30日", -40) == "12月21日"
    assert dates.shift("二〇二四年二月三十日", 1) is None


# ---------------------------------------------------------------------------------------- English (issue 16 part 4)

EN2_SET = REPO / "benchmarks" / "data" / "deid_en2.jsonl"


def test_english_second_set_recall(scrubber):
    report = deid_eval.evaluate(scrubber, deid_eval.load_set(EN2_SET))
    assert report["overall"]["recall"] >= 0.95 and report["overall"]["precision"] >= 0.9, report["overall"]
    assert report["lookalikes"]["detected"] == 0


@pytest.mark.parametrize("text", ["She loves Dr. Seuss books.", "He drinks Dr Pepper daily.",
                                  "Enlarged Virchow-Robin spaces.", "Patient: Nope. Doctor: Oh, okay.",
                                  "I was working in construction ."])
def test_brands_eponyms_and_interjections_are_not_phi(scrubber, text):
    assert _types(scrubber, text) == {}


@pytest.mark.parametrize("text, value, type_", [
    ("[doctor] hi , will , how are you ?", "will", "NAME"), ("He works as a machinist at Boeing.", "Boeing", "LOCATION"),
    ("[doctor] and you still work at walmart ?", "walmart", "LOCATION"),
    ("She started a job at Starbucks in Tacoma.", "Tacoma", "LOCATION"),
    ("Consult by Dr. Priyanka Venkataraman today.", "Priyanka Venkataraman", "NAME")])
def test_english_names_employers_and_cities(scrubber, text, value, type_):
    assert _types(scrubber, text).get(value) == type_
