"""``python -m s2vc_clients`` = ``s2vc-client``."""

from .cli import app

app(prog_name="s2vc-client")
