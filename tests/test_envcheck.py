from copilot.envcheck import problems


def test_environment_matches_the_lock():
    """CPU torch 2.13.0, no torchvision, no telemetry, OpenVINO stack importable."""
    assert problems() == []


def test_offline_environment_is_forced():
    import os

    import copilot.config  # noqa: F401

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
