from copilot.text.identifiers import find_identifiers


def found(text):
    return [(i.kind, i.text, i.key) for i in find_identifiers(text)]


def test_english_identifiers_with_normalised_keys():
    text = "Mr. John Smith lives at 123 Oak Street, phone (555) 123-4567. Seen on March 5, 2024."
    assert found(text) == [("name", "John Smith", "john smith"), ("address", "123 Oak Street", "123 oak"),
                           ("phone", "(555) 123-4567", "5551234567"), ("date", "March 5, 2024", "03-05")]


def test_given_name_before_surname_and_words_that_are_not_names():
    assert ("name", "Maria Alvarez", "maria alvarez") in found("Patient Maria Alvarez, follow up 3/12/2024.")
    assert not [f for f in found("Will Continue lisinopril. Emergency Department. you may 2") if f[0] in ("name", "date")]


def test_chinese_identifiers():
    kinds = {f[0]: f[2] for f in found("姓名：张三，住址北京市朝阳区建国路88号，电话13812345678，2024年3月5日入院")}
    assert kinds == {"name": "张三", "address": "北京市朝阳区建国路88号", "phone": "3812345678", "date": "03-05"}
