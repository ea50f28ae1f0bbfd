"""Execute a notebook headlessly with papermill and read back the values it recorded.

Each notebook ends with a cell that checks its own results and prints one line
``GLX_RESULTS {json}``; the tests parse that line and assert on the values again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MARKER = "GLX_RESULTS "


def execute(name: str, out_dir: Path, **parameters: Any) -> tuple[dict[str, Any], Path]:
    import papermill as pm

    src = NOTEBOOKS / name
    out = out_dir / name
    parameters.setdefault("SMOKE", True)
    env_cifar = os.environ.get("GLX_CIFAR10_TAR")
    if env_cifar and "CIFAR10_TAR" not in parameters and "CIFAR10_TAR" in src.read_text():
        parameters["CIFAR10_TAR"] = env_cifar
    pm.execute_notebook(str(src), str(out), parameters=parameters, cwd=str(NOTEBOOKS),
                        kernel_name="python3", progress_bar=False)
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
