import pytest

from copilot.files import without_paths


@pytest.mark.parametrize("message, shown", [
    ("no exported model at /srv/copilot/instance/models/m/openvino-int8; run `copilot model prepare` first",
     "no exported model at .../openvino-int8; run `copilot model prepare` first"),
    ("no knowledge snapshot under /srv/instance; run `copilot knowledge build`",
     "no knowledge snapshot under .../instance; run `copilot knowledge build`"),
    ("'/tmp/x/input.jsonl' is not readable", "'.../input.jsonl' is not readable"),
])
def test_messages_for_users_lose_their_server_paths(message, shown):
    assert without_paths(message) == shown


@pytest.mark.parametrize("message", ["Patient/123 belongs to another patient", "see https://ehr.example/fhir/x",
                                     "20 mg/day, 1/2 tablet", "a ./relative/path stays"])
def test_references_urls_and_ratios_are_left_alone(message):
    assert without_paths(message) == message
