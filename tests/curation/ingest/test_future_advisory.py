"""CVE-2025-50817: ``future`` 1.0.0 (which ffmpeg-python pulls in) can import a module named
``test`` from ``sys.path``, such as a ``test.py`` in the working directory. That import sits in
``future.standard_library.install_aliases``, which returns at once on Python 3; ffmpeg-python
only imports ``past.builtins`` and Python 3's own ``builtins``. This checks that our use runs no
planted ``test.py``: the normaliser imported, and a command built, from a folder holding one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_a_planted_test_module_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "test.py").write_text(f"open({str(marker)!r}, 'w').write('planted test.py ran')\n")
    script = (
        "import sys\n"
        "import curation.ingest.normalise as n\n"
        "import ffmpeg\n"
        "ffmpeg.input('file:/x').output('file:/y').get_args()\n"
        "from future import standard_library\n"
        "standard_library.install_aliases()\n"
        "print('past' in sys.modules, 'test' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]  # future's code loaded; no module named test
    assert not marker.exists()
