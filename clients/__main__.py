"""``python -m clients`` = ``s2vc-client``."""

from .cli import app

app(prog_name="s2vc-client")
