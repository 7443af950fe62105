"""One nox session per torch version: `nox -s matrix-2.13.0` runs the suite on torch 2.13.0 (docs/versions.md).

Each session installs exactly that torch into its own environment (uv where installed, virtualenv otherwise),
then the suite (with its [frameworks] extra where it resolves beside that torch), runs it, and writes its raw
results and the matrix report into $MATRIX_RESULTS (default: a new .matrix/runs/DATE-TIME/ per nox run).
`nox -l` lists the versions: $MATRIX_VERSIONS when set, else the default set and every minor release's
latest patch on the package index. `nox -t matrix` runs them all, `nox` the default set.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tools import matrix  # noqa: E402

nox.options.default_venv_backend = "uv|virtualenv"
RESULTS = Path(
    os.environ.get(matrix.RESULTS_ENV) or matrix.ROOT / ".matrix" / "runs" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
).resolve()
VERSIONS = matrix.session_versions()


def register(version: str) -> None:
    """Define the session matrix-VERSION."""

    def session(session: nox.Session) -> None:
        matrix.run_session(session, version, RESULTS)

    session.__doc__ = f"torch {version}: install it and the suite, run the probes and the suite, write the report"
    nox.session(name=f"matrix-{version}", tags=["matrix"])(session)


for _version in VERSIONS:
    register(_version)

nox.options.sessions = [f"matrix-{v}" for v in VERSIONS if v in (matrix.OLDEST, matrix.PINNED) or v == VERSIONS[-1]]
