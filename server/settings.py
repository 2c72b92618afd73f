"""Server settings: environment variables with the prefix ``S2VC_``, an optional TOML or JSON file, defaults.

Precedence, highest first: values given in code (``s2vc serve`` flags), environment variables, the config file
(``--config FILE`` or ``S2VC_CONFIG``), the defaults below. Lists take a comma-separated string in the
environment (``S2VC_API_KEYS=key1,key2``); ``S2VC_MODELS`` takes JSON (``{"hq": "/models/hq"}``).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_MODEL_NAME = "default"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "s2vc" / "server"


class Settings(BaseSettings):
    """Everything the server reads at start-up. Every limit is named in the 4xx answer of a request that breaks it."""

    model_config = SettingsConfigDict(env_prefix="S2VC_", extra="forbid", validate_default=True)

    # --- network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # --- security
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Bearer keys accepted on every /v1 route.")
    dev_mode: bool = Field(False, description="Serve without API keys (local development only; logged loudly).")

    # --- models and device
    model: str | None = Field(None, description="The model served as 'default': a checkpoint folder or release root; empty = the shipped model.")
    models: dict[str, str] = Field(default_factory=dict, description="More models by name, e.g. {\"hq\": \"/models/hq\"}.")
    engine: str = Field("torch", description="Runtime that executes the networks (engines/: torch, onnxruntime, tensorrt).")
    device: str = "cpu"
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice).")
    reset_interval: int | None = Field(None, ge=1, description="P-frames between context re-anchors; unset: the model's recommendation, else 32 (as `s2vc encode`).")
    intra_period: int = Field(0, ge=0, description="An I-frame every N frames; 0 = only the first (as `s2vc encode`).")
    offset_interval: int | None = Field(None, ge=0, description="Models with a latent offset: send it with every I-frame and every Nth P-frame; 0 = I-frames only; unset: the codec's default, 4 (as `s2vc encode`).")

    router_id_header: str | None = Field(
        None, description="Adopt new stream and job ids from this header set by a trusted router (deploy/k8s: X-Request-ID), "
        "so that consistent hashing on the id reaches this replica again. Leave unset without such a router.",
    )

    # --- WebRTC calls (docs/webrtc.md)
    webrtc_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Gather ICE host candidates only on these addresses and ignore remote candidates "
        "elsewhere (e.g. 127.0.0.1 for local use and tests); empty = every interface, as aiortc does.",
    )
    webrtc_ice_servers: list[dict[str, Any]] = Field(
        default_factory=list, description='STUN/TURN servers for the server\'s peer connections, as JSON: '
        '[{"urls": "turn:host:3478", "username": "u", "credential": "p"}]. None by default.',
    )
    webrtc_connect_timeout_s: float = Field(30.0, gt=0, description="A call whose peer connection is not up after this long is closed.")
    webrtc_max_message_bytes: int = Field(1 << 20, ge=1024, description="Largest data-channel message a peer may send (units, control).")

    # --- storage
    data_dir: Path = Field(default_factory=_default_data_dir, description="Uploads, results and the SQLite job table.")
    job_retention_s: float = Field(7 * 24 * 3600, gt=0, description="Finished jobs and their files are deleted after this long.")
    job_workers: int = Field(2, ge=1, description="Jobs coded at the same time (their frames share the scheduler's batches).")
    job_max_attempts: int = Field(3, ge=1, description="A job that was running when the server died this many times fails.")

    # --- sessions and scheduling
    max_sessions: int = Field(8, ge=1, description="Live stream slots; when full, new streams get 503 + Retry-After.")
    max_sessions_per_key: int | None = Field(
        None, ge=1, description="Stream slots one API key may hold; beyond it, 429 + Retry-After. Default: half of max_sessions "
                                "(at least 1) when several keys are configured, else max_sessions.",
    )

    @property
    def sessions_per_key(self) -> int:
        if self.max_sessions_per_key is not None:
            return self.max_sessions_per_key
        return max(1, self.max_sessions // 2) if len(self.api_keys) > 1 else self.max_sessions
    idle_timeout_s: float = Field(30.0, gt=0, description="A stream with no request for this long is closed.")
    max_stream_s: float = Field(4 * 3600.0, gt=0, description="Longest life of one stream.")
    max_batch: int = Field(8, ge=1, description="Most frames coded in one scheduler tick.")
    batch_wait_ms: float = Field(4.0, ge=0, description="How long a tick waits for more sessions to fill a batch.")
    inbox_frames: int = Field(2, ge=1, description="Frames a stream may have waiting; a realtime stream drops the oldest beyond this.")
    max_frame_age_ms: float = Field(1000.0, gt=0, description="A realtime frame that waited longer than this is dropped as stale.")

    # --- limits on requests
    max_upload_bytes: int = Field(1 << 30, ge=1, description="Largest job upload (multipart body).")
    max_width: int = Field(3840, ge=1)
    max_height: int = Field(2160, ge=1)
    max_frame_pixels: int = Field(1920 * 1088, ge=1, description="Largest width × height of a frame.")
    max_fps: float = Field(60.0, gt=0)
    max_job_frames: int = Field(100_000, ge=1, description="Most frames one job may code.")
    max_job_seconds: float = Field(3600.0, gt=0, description="Longest video (frames / fps, in seconds) one job may code.")

    @field_validator("api_keys", "webrtc_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """A comma-separated string (environment) or a list → stripped, non-empty items."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return [str(k).strip() for k in value if str(k).strip()]
        return value

    @field_validator("webrtc_hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"webrtc_hosts: {host!r} is not an IP address") from None
        return hosts

    @field_validator("model", mode="before")
    @classmethod
    def _empty_model(cls, value: Any) -> Any:
        return None if value in ("", DEFAULT_MODEL_NAME) else value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if DEFAULT_MODEL_NAME in self.models:
            raise ValueError(f"models: the name {DEFAULT_MODEL_NAME!r} is reserved for S2VC_MODEL")
        short = [k for k in self.api_keys if len(k) < 16]
        if short:
            raise ValueError(f"api_keys: {len(short)} key(s) shorter than 16 characters; use long random keys")
        return self

    @property
    def model_specs(self) -> dict[str, str | None]:
        """Served model names → what :func:`s2vc.checkpoint.load_model` resolves (None = the shipped model)."""
        return {DEFAULT_MODEL_NAME: self.model, **self.models}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls), JsonConfigSettingsSource(settings_cls)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (None values ignored), the environment and ``config_file`` (or ``S2VC_CONFIG``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unknown file type.
    """
    path = config_file or os.environ.get("S2VC_CONFIG")
    values = {k: v for k, v in overrides.items() if v is not None}
    if not path:
        return Settings(**values)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"config file {path}: use a .toml or .json file")
    source_key = "toml_file" if suffix == ".toml" else "json_file"

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, source_key: path})  # type: ignore[typeddict-item]

    return FileSettings(**values)
