"""Every setting of a deployment, in one place: its environment variable, type, default and meaning.

Everything the copilot writes (models, indexes, databases, logs, keys) goes under one instance
directory, ``COPILOT_HOME`` (default ``./instance``), so IT can back it up, move it or wipe it as
one unit; every path below is derived from it, so moving the home moves everything.

``Settings()`` reads ``COPILOT_*`` variables; ``Settings(home=...)`` overrides them (tests, tools).
``copilot config show`` prints the effective values (secrets masked) and the README's settings
table is generated from the fields below (``copilot config show --markdown``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Patient data must never leave the process: forbid every library from reaching a hub
# or sending telemetry, before any of them is imported.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_key, _value)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
ENV_PREFIX = "COPILOT_"
REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


class Settings(BaseSettings):
    """One deployment's settings. Field descriptions are the documentation (README table, --help)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True,
                                      protected_namespaces=(), frozen=True)

    # Where things live
    home: Path = Field(Path("instance"), description="Instance directory: models, knowledge, users, audit log, "
                       "QC jobs, keys and caches all live under it (back it up as one unit).")
    knowledge_home: Path | None = Field(None, description="Instance directory whose knowledge snapshot is served "
                                        "(default: HOME); lets several instances share one reviewed snapshot.")
    datasets: Path | None = Field(None, description="Folder holding aci-bench/, mts-dialog/ and medec/ for "
                                  "fine-tuning and evaluation (default: ../shared/datasets beside the repository).")

    # The model
    model: str = Field(DEFAULT_MODEL_NAME, description="Served model: its name under HOME/models "
                       "(what `copilot model prepare` wrote).")
    model_dir: Path | None = Field(None, description="An exported OpenVINO model folder to serve instead of "
                                   "HOME/models/MODEL/openvino-WEIGHT_FORMAT.")
    weight_format: Literal["int8", "int4", "fp16"] = Field("int8", description="Weight compression of the served "
                                                            "export and the default of `copilot model prepare`.")
    device: str = Field("CPU", description="OpenVINO device the model runs on (CPU; GPU where the hospital has one).")
    inference_threads: int = Field(0, ge=0, description="CPU threads the model may use (0: all cores); a cap "
                                   "leaves cores for QC and the web tier on a shared server.")
    prompt_lookup: bool = Field(False, description="Prompt-lookup (n-gram) decoding: faster when the answer "
                                "copies its input, as a note copies its transcript.")
    max_queue: int = Field(16, ge=1, le=1024, description="Generations waiting for the engine before new ones get "
                           "503 with Retry-After at once; with the one running, the server's generation slots.")

    # The web service
    host: str = Field("127.0.0.1", description="Address `copilot serve` binds to (put a TLS proxy in front "
                      "before binding beyond localhost).")
    port: int = Field(8000, ge=1, le=65535, description="Port `copilot serve` listens on.")
    threads: int = Field(8, ge=1, le=256, description="HTTP worker threads for everything but generation "
                         "(health, metrics, QC, sidebar); `copilot serve` adds one per generation slot (MAX_QUEUE + 1), "
                         "so streams never take them.")
    max_body_bytes: int = Field(2 * MiB, ge=1024, description="Largest request body (413 above it), except "
                                "batch uploads and CDS Hooks calls.")
    qc_job_max_bytes: int = Field(256 * MiB, ge=1024, description="Largest batch QC upload (JSON Lines).")
    cds_max_bytes: int = Field(16 * MiB, ge=1024, description="Largest CDS Hooks request (prefetch carries "
                               "whole notes).")
    cds_issuers: Path | None = Field(None, description="YAML file of the EHRs trusted to sign CDS Hooks calls "
                                     "with JWTs (issuer, JWKS file or in-hospital URL, the copilot user they act "
                                     "as; README: CDS Hooks security); unset: copilot tokens only. Relative: "
                                     "under HOME.")
    frame_ancestors: str = Field("'self'", description="EMR origins allowed to embed the sidebar in an iframe "
                                 "(CSP frame-ancestors syntax).")
    cookie_samesite: Literal["Lax", "Strict", "None"] = Field("Lax", description="SameSite of the sidebar's "
                                                                "session cookie; None (with COOKIE_SECURE) when the "
                                                                "EMR embeds the sidebar from another origin.")
    public_url: str | None = Field(None, description="The address clinicians and the EHR reach the service at "
                                   "(https://copilot.hospital.example): https makes session cookies Secure, and "
                                   "CDS Hooks JWTs must name it as their audience.")
    cookie_secure: bool | None = Field(None, description="Send the session cookie over HTTPS only (default: yes "
                                       "when PUBLIC_URL is https).")
    proxy_hops: int = Field(0, ge=0, le=5, description="Reverse proxies in front of the server whose "
                            "X-Forwarded-For/-Proto headers are trusted (the client address for login limits, "
                            "https for cookies); 0 trusts none.")
    login_limit_per_user: str = Field("10 per 15 minutes", description="Failed sign-ins allowed per user name "
                                      "before sign-in is refused (429) until the window passes; counted in "
                                      "memory, per server process.")
    login_limit_per_address: str = Field("30 per 15 minutes", description="Failed sign-ins allowed per client "
                                         "address, whatever the user names (in memory, per server process).")
    log_file: Path | None = Field(None, description="Also log `copilot serve` to this file, rotated at 10 MiB "
                                  "(5 kept); a relative path is under HOME.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level of "
                                                                    "`copilot serve`.")

    # Audit
    audit_anchor: Path | None = Field(None, description="Copy of the audit log's head anchor kept outside the "
                                      "audit folder (default: HOME/audit.anchor; a relative path is under HOME); "
                                      "on another volume it reveals a deleted or replaced log.")

    # Quality control
    qc_jurisdiction: Literal["CN", "US"] = Field("CN", description="Whose documentation time limits QC applies: "
                                                 "CN (《病历书写基本规范》) or US (42 CFR 482).")

    ray_address: str | None = Field(None, description="Ray cluster that runs the QC batch jobs uploaded through "
                                    "the API: auto (the cluster `ray start` joined this machine to), HOST:PORT of "
                                    "its head, or ray://HOST:10001 (default: unset, local processes).")

    qc_precision_floor: float = Field(0.7, ge=0, le=1, description="A QC rule whose reviewed findings are "
                                      "confirmed less often than this (confirmed / (confirmed + dismissed)) is "
                                      "flagged for retuning.")
    qc_precision_min_reviews: int = Field(20, ge=1, description="Reviews (confirmations plus dismissals) a rule "
                                          "needs before its precision can flag it.")

    # The instance database (QC office: findings as work items, their history, scores)
    database_url: SecretStr | None = Field(None, description="SQLAlchemy URL of the instance database, e.g. "
                                           "postgresql+psycopg://user:pass@host/copilot (default: a SQLite file, "
                                           "HOME/copilot.db); migrations are applied at start-up.")

    # Fine-tuning
    deid_key: SecretStr | None = Field(None, description="Secret that keys de-identification surrogates "
                                       "(default: HOME/deid.key, 32 random bytes created on first use, mode 0600).")

    @field_validator("home", "knowledge_home", "datasets", "model_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("public_url", mode="after")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("COPILOT_PUBLIC_URL must be an http(s) URL such as https://copilot.hospital.example")
        return value.strip().rstrip("/")

    @field_validator("login_limit_per_user", "login_limit_per_address", mode="after")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '10 per 15 minutes': {exc}") from None
        return value

    @field_validator("deid_key", "database_url", mode="after")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the variable is set but empty; unset it to use the default")
        return value

    # -- derived paths: everything under HOME ---------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def export_dir(self, name: str | None = None, weight_format: str | None = None) -> Path:
        """An exported OpenVINO model: HOME/models/<name>/openvino-<format>."""
        return self.models_dir / (name or self.model) / f"openvino-{weight_format or self.weight_format}"

    def checkpoint_dir(self, name: str | None = None) -> Path:
        """The transformers checkpoint an export starts from."""
        return self.models_dir / (name or self.model) / "hf"

    @property
    def served_model_dir(self) -> Path:
        """The model `copilot serve` and `copilot generate` load."""
        return self.model_dir or self.export_dir()

    @property
    def knowledge_dir(self) -> Path:
        """The instance whose knowledge snapshot is served."""
        return self.knowledge_home or self.home

    @property
    def secure_cookies(self) -> bool:
        """Whether session cookies are HTTPS-only: COOKIE_SECURE, else whether PUBLIC_URL is https."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def users_db(self) -> Path:
        return self.home / "users.db"

    @property
    def audit_db(self) -> Path:
        return self.home / "audit" / "audit.db"

    def under_home(self, path: Path | None) -> Path | None:
        """A configured path: as it is when absolute, else relative to HOME."""
        if path is None:
            return None
        return path if path.is_absolute() else self.home / path

    @property
    def cds_issuers_path(self) -> Path | None:
        return self.under_home(self.cds_issuers)

    @property
    def audit_anchor_path(self) -> Path:
        """The external copy of the audit head anchor (outside HOME/audit)."""
        return self.under_home(self.audit_anchor) or self.home / "audit.anchor"

    @property
    def database(self) -> str:
        """The effective database URL (a secret: it may hold a password)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home / 'copilot.db'}"

    @property
    def qc_jobs_dir(self) -> Path:
        return self.home / "qc" / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def finetune_dir(self) -> Path:
        return self.home / "finetune"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"

    @property
    def deid_key_file(self) -> Path:
        return self.home / "deid.key"

    @property
    def log_path(self) -> Path | None:
        return self.under_home(self.log_file)

    @property
    def datasets_dir(self) -> Path:
        return self.datasets or (REPO.parent / "shared" / "datasets")

    @property
    def operator(self) -> str:
        """Who runs this command, for records of decisions (the sudo caller, else the login name)."""
        import getpass

        return os.environ.get("SUDO_USER") or getpass.getuser()

    # -- secrets kept in the instance directory -------------------------------------------------
    def session_secret(self) -> str:
        """Signs sidebar session cookies; kept so sessions survive a restart."""
        return read_or_create_secret(self.secret_key_file)

    def deid_secret(self) -> str:
        """Keys de-identification surrogates: never empty, never in the repository."""
        if self.deid_key is not None:
            return self.deid_key.get_secret_value()
        return read_or_create_secret(self.deid_key_file)

    # -- documentation -------------------------------------------------------------------------
    @classmethod
    def variables(cls) -> list[dict]:
        """[{name, type, default, doc}] for every field, in declaration order."""
        rows = []
        for name, info in cls.model_fields.items():
            rows.append({"name": ENV_PREFIX + name.upper(), "field": name, "type": _type_name(info.annotation),
                         "default": _default_text(name, info.default), "doc": info.description or ""})
        return rows

    def effective(self) -> list[dict]:
        """The variables with this instance's values, secrets masked."""
        unset = {"knowledge_home": f"(unset: {self.home})", "datasets": f"(unset: {self.datasets_dir})",
                 "model_dir": f"(unset: {self.export_dir()})", "log_file": "(unset: stderr only)",
                 "audit_anchor": f"(unset: {self.audit_anchor_path})",
                 "deid_key": f"(unset: {self.deid_key_file})",
                 "database_url": f"(unset: sqlite:///{self.home / 'copilot.db'})"}
        rows = []
        for row in self.variables():
            value = getattr(self, row["field"])
            if isinstance(value, SecretStr):
                shown = "(set)"
            elif value is None:
                shown = unset.get(row["field"], "(unset)")
            else:
                shown = str(value)
            source = "environment" if (ENV_PREFIX + row["field"].upper()) in os.environ else "default"
            rows.append({**row, "value": shown, "source": source})
        return rows


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process (this process's, offline flags included) plus ``extra``."""
    return {**os.environ, **extra}


def read_or_create_secret(path: Path) -> str:
    """A 256-bit hex secret in ``path`` (mode 0600), created on first use; a concurrent first
    use by two processes keeps whichever file was created first."""
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to create a new secret")
    return value


def _type_name(annotation) -> str:
    """How the README names a field's type: path, integer, yes/no, text, or the allowed values."""
    import types
    from typing import Union, get_args, get_origin

    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return " \\| ".join(str(a) for a in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0])
    return {Path: "path", int: "integer", bool: "0/1", str: "text", SecretStr: "secret"}.get(annotation, str(annotation))


def _default_text(name: str, default) -> str:
    if default is None:
        return "(unset)"
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, Path):
        return f"./{default}"
    return str(default)


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    for row in Settings.variables():
        doc = row["doc"].replace("|", "\\|")
        lines.append(f"| `{row['name']}` | {row['type']} | `{row['default']}` | {doc} |")
    return "\n".join(lines)
