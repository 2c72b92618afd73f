#!/usr/bin/env bash
# Install the project on the GPU machine from the carried wheels, without touching the image's torch.
# usage: deploy/gpu/install.sh [PYTHON]    (wheels in deploy/gpu/wheels/ or $S2VC_WHEELS; see requirements.txt)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${1:-${PYTHON:-python3}}
WHEELS=${S2VC_WHEELS:-$HERE/wheels}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$PY" - "$HERE/requirements.txt" "$WHEELS" <<'PYEOF'
import importlib.metadata as md
import subprocess
import sys

requirements, wheels = sys.argv[1], sys.argv[2]
todo = []
for line in open(requirements):
    line = line.split("#", 1)[0].split()
    if not line:
        continue
    spec, when = line[0], line[1]
    if when == "build":  # used by pip's isolated build of the project only
        continue
    name, version = spec.split("==")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have is not None and (when == "if-missing" or have == version):
        print(f"install.sh: {name} {have} is there; kept")
        continue
    todo.append(spec)
if todo:
    print("install.sh: installing", " ".join(todo), flush=True)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--find-links", wheels, *todo])
PYEOF
"$PY" -m pip install --quiet --no-deps --no-index --find-links "$WHEELS" -e "$ROOT"
"$PY" -c "import torch, diffusers, constriction, s2vc.codec, s2vc_engines; from s2vc_engines import engine_names; print('install.sh: torch', torch.__version__, 'CUDA', torch.version.cuda, '| diffusers', diffusers.__version__, '| engines', engine_names())"
