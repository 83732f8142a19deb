import pytest

from copilot.text.negation import polarity


def read(text: str, term: str) -> str:
    start = text.index(term)
    return polarity(text, start, start + len(term))


@pytest.mark.parametrize("text, term, expected", [
    ("no, I don't have diabetes", "diabetes", "negated"),
    ("history of diabetes", "diabetes", "affirmed"),
    ("he denies chest pain", "chest pain", "negated"),
    ("chest pain was ruled out", "chest pain", "negated"),
    ("no fever but has a cough", "cough", "affirmed"),
    ("no fever but has a cough", "fever", "negated"),
    ("no change in his chest pain", "chest pain", "affirmed"),
    ("my mother has diabetes", "diabetes", "family"),
    ("[doctor] any diabetes?\n[patient] no.", "diabetes", "negated"),
    ("[doctor] any diabetes?\n[patient] yes, type 2", "diabetes", "affirmed"),
    ("[doctor] any diabetes?\n[patient] let me think", "diabetes", "asked"),
    ("否认糖尿病史，有高血压", "糖尿病", "negated"),
    ("否认糖尿病史，有高血压", "高血压", "affirmed"),
    ("患者无发热", "发热", "negated"),
    ("母亲有糖尿病", "糖尿病", "family"),
    ("无明显诱因出现胸痛", "胸痛", "affirmed"),
])
def test_polarity(text, term, expected):
    assert read(text, term) == expected
