"""Puts this folder on sys.path, so the tests import their shared helpers (the tandem_e2e package, tandem_browser.py)
under any import mode and whichever way pytest is pointed at them (the folder or a single file)."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
