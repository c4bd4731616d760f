#!/usr/bin/env bash
# Refresh the portal screenshots in docs/screenshots/ from the browser tests (a plain test run writes its
# screenshots to a temporary folder and leaves the tracked pictures alone), then shrink them to 128-colour PNGs
# (a third of the size; the pages are flat colours). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
GOVERNANCE_SCREENSHOTS_DIR="$PWD/docs/screenshots" ./scripts/test.sh tests/e2e "$@"
STARTED="$started" .venv/bin/python - <<'PY'
import os
from pathlib import Path

from PIL import Image

for path in sorted(Path("docs/screenshots").glob("*.png")):
    if path.stat().st_mtime < float(os.environ["STARTED"]):
        continue  # not taken by this run (e.g. -k chose other tests)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
PY
