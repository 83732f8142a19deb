"""What the engine can refuse or fail with; importable without loading OpenVINO."""


class EngineError(RuntimeError):
    pass


class EngineBusy(EngineError):
    """No capacity now; the caller should retry later (HTTP 503)."""


class InvalidRequest(EngineError, ValueError):
    """The request's parameters are wrong (HTTP 400); the message says which."""
