"""`make lab` starts JupyterLab everywhere: as root or not, with or without a display.

The Makefile's ``lab`` target runs ``tools/lab.sh``; the tests here run that script, once with a
stand-in ``jupyter`` that prints the command line it was given (as root and as a normal user,
with and without a display) and once for real: the server starts, lists the notebooks through
its REST API with the printed token, refuses a request without it, and stops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "tools" / "lab.sh"
JUPYTER = Path(sys.executable).with_name("jupyter")
START_TIMEOUT_S = 90


def _headless_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION")}
    env.update(extra)
    return env


def _command_line(tmp_path: Path, uid: int, **env: str) -> list[str]:
    """The arguments tools/lab.sh gives jupyter, for a user id and an environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake_id = bin_dir / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n")
    fake_jupyter = bin_dir / "jupyter"
    fake_jupyter.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    for f in (fake_id, fake_jupyter):
        f.chmod(0o755)
    run_env = _headless_env(**env)
    run_env["PATH"] = f"{bin_dir}{os.pathsep}{run_env.get('PATH', '')}"
    done = subprocess.run(["bash", str(LAB), str(fake_jupyter)], env=run_env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_lab_runs_the_script_with_its_address_and_port():
    done = subprocess.run(["make", "-n", "lab", "LAB_IP=0.0.0.0", "LAB_PORT=8890"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if "tools/lab.sh" in x)
    assert "LAB_IP='0.0.0.0'" in line and "LAB_PORT='8890'" in line, line


@pytest.mark.parametrize("uid", [0, 1000])
def test_allow_root_only_as_root(tmp_path, uid):
    args = _command_line(tmp_path, uid)
    assert args[0] == "lab" and "--notebook-dir=notebooks" in args
    assert ("--allow-root" in args) == (uid == 0), args


def test_no_browser_only_without_a_display(tmp_path):
    assert "--no-browser" in _command_line(tmp_path, 1000)
    assert "--no-browser" not in _command_line(tmp_path, 1000, DISPLAY=":0")
    assert "--no-browser" not in _command_line(tmp_path, 1000, WAYLAND_DISPLAY="wayland-0")


def test_address_and_port_from_the_environment_and_token_left_on(tmp_path):
    args = _command_line(tmp_path, 1000)
    assert "--ServerApp.ip=localhost" in args and "--ServerApp.port=8888" in args
    args = _command_line(tmp_path, 0, LAB_IP="0.0.0.0", LAB_PORT="8890")
    assert "--ServerApp.ip=0.0.0.0" in args and "--ServerApp.port=8890" in args
    assert not [a for a in args if "token" in a.lower() or "password" in a.lower()], args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


@pytest.mark.skipif(not JUPYTER.exists(), reason=f"no {JUPYTER}")
def test_server_starts_and_lists_the_notebooks(tmp_path):
    port = _free_port()
    env = _headless_env(LAB_IP="127.0.0.1", LAB_PORT=str(port),
                        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.Popen(["bash", str(LAB), str(JUPYTER)], env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    pattern = re.compile(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        token = None
        while token is None and time.monotonic() < deadline and proc.poll() is None:
            found = [m.group(1) for m in map(pattern.search, list(lines)) if m]
            token = found[0] if found else None
            time.sleep(0.5)
        log = "".join(lines)
        assert token, f"no URL with a token within {START_TIMEOUT_S}s:\n{log[-3000:]}"
        base = f"http://127.0.0.1:{port}/api/contents"
        status, body = _get(f"{base}?token={token}")
        assert status == 200, status
        names = {item["name"] for item in json.loads(body)["content"]}
        chapters = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
        assert chapters and chapters <= names, (chapters, names)
        assert _get(base)[0] == 403, "the API answered without the token"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode is not None
