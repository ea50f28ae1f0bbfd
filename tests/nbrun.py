"""Execute a notebook headlessly with papermill and read back the values it recorded.

Each notebook ends with a cell tagged ``remove-cell`` (hidden from the rendered book) that
prints one line ``GLX_RESULTS {json}``; the tests parse that line and assert on the values.

Executions are cached for the test session, keyed by (notebook, parameters), under
``build/nbrun/``: the chapter tests and the book test (which renders the same SMOKE executions)
share one execution per chapter. A parameter set that names an existing folder (a checkpoint
folder, say) is never served from the cache: what the notebook does then depends on what the
folder holds, and a second execution on it is a different run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CACHE = ROOT / "build" / "nbrun"
MARKER = "GLX_RESULTS "

# (notebook, parameters as JSON) -> executed notebook under CACHE; filled during this session.
_session: dict[tuple[str, str], Path] = {}


def parameters_for(name: str, **parameters: Any) -> dict[str, Any]:
    """The parameters ``execute`` runs ``name`` with: SMOKE by default, the CIFAR-10 tarball
    of ``GLX_CIFAR10_TAR`` for a notebook that reads one."""
    parameters.setdefault("SMOKE", True)
    env_cifar = os.environ.get("GLX_CIFAR10_TAR")
    if env_cifar and "CIFAR10_TAR" not in parameters and \
            "CIFAR10_TAR" in (NOTEBOOKS / name).read_text():
        parameters["CIFAR10_TAR"] = env_cifar
    return parameters


def _names_a_folder(value: Any) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(v, (str, os.PathLike)) and str(v) and Path(v).is_dir() for v in values)


def cacheable(parameters: dict[str, Any]) -> bool:
    """Whether an execution with these parameters may be shared (no parameter names a folder)."""
    return not any(_names_a_folder(v) for v in parameters.values())


def _run(name: str, out: Path, parameters: dict[str, Any]) -> None:
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters,
                        cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False)


def execute(name: str, out_dir: Path, **parameters: Any) -> tuple[dict[str, Any], Path]:
    """Execute ``notebooks/name`` into ``out_dir/name``; return its results and that path.

    ``SMOKE`` defaults to True. Within one session the same (name, parameters) executes once
    unless a parameter names a folder (see the module docstring)."""
    parameters = parameters_for(name, **parameters)
    out = Path(out_dir) / name
    if not cacheable(parameters):
        _run(name, out, parameters)
        return read_results(out), out
    key = (name, json.dumps(parameters, sort_keys=True, default=str))
    cached = _session.get(key)
    if cached is None or not cached.is_file():
        digest = hashlib.sha256(key[1].encode()).hexdigest()[:12]
        cached = CACHE / f"{Path(name).stem}-{digest}" / name
        _run(name, cached, parameters)
        _session[key] = cached  # only once it ran through: a failed execution runs again
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != cached.resolve():
        shutil.copyfile(cached, out)
    return read_results(out), out


def read_results(path: Path) -> dict[str, Any]:
    nb = json.loads(Path(path).read_text())
    for cell in reversed(nb["cells"]):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            for line in text.splitlines():
                if line.startswith(MARKER):
                    return json.loads(line[len(MARKER):])
    raise AssertionError(f"{path}: no line starting with {MARKER!r} in any output")
