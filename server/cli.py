"""``s2vc serve``: run the server with uvicorn (registered into the s2vc CLI through the ``s2vc.commands`` entry point).

Imports stay inside the command so that ``s2vc --help`` does not pay for the web stack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

# Passive OpenMP waits (before torch is imported): spinning workers collapse on a busy machine (docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)."),
    port: Optional[int] = typer.Option(None, "--port", help="TCP port (default 8000)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings file (.toml or .json); S2VC_* environment variables override it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint folder or release root served as 'default' (default: the shipped model)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Runtime for the networks: torch, onnxruntime, tensorrt (default torch)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default cpu)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where jobs, uploads and results are kept."),
    max_sessions: Optional[int] = typer.Option(None, "--max-sessions", min=1, help="Live stream slots (default 8)."),
    dev: bool = typer.Option(False, "--dev", help="Serve WITHOUT API keys (local development only)."),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="critical, error, warning, info or debug."),
) -> None:
    """Start the streaming server (REST jobs, chunked streams, /metrics) with the shipped model unless configured otherwise."""
    import logging

    import uvicorn
    from pydantic import ValidationError
    from rich.console import Console

    from .app import create_app
    from .settings import load_settings

    try:
        settings = load_settings(
            config, host=host, port=port, model=model, engine=engine, device=device, data_dir=data_dir,
            max_sessions=max_sessions, dev_mode=True if dev else None, log_level=log_level,
        )
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        Console(stderr=True).print(f"[red]error:[/] invalid settings: {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(code=2)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level, timeout_graceful_shutdown=10)


def main() -> None:
    typer.run(serve)
