"""``python -m s2vc_server``: the same as ``s2vc serve``."""

from .cli import main

main()
