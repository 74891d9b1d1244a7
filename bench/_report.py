"""What every bench writes beside its figures: the machine it ran on, and the JSON result file.

Shared machines are noisy, so each result carries the load average it was measured under; a reader
compares ratios from one run, never seconds across runs.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["machine", "write_result"]


def machine() -> dict[str, Any]:
    """CPU count, platform, Python and the 1/5/15-minute load average at the end of the run."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg": os.getloadavg()}


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON (creating the folder) and say where on stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nwritten to {path}", file=sys.stderr)
