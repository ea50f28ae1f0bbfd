#!/usr/bin/env bash
# Start JupyterLab on notebooks/ the way `make lab` does, on a desktop or a headless server, as a
# normal user or as root (containers, cloud VMs). Token authentication is left on: the URL with
# its token is printed when the server starts.
#   usage: tools/lab.sh [JUPYTER]        (default: .venv/bin/jupyter)
#   LAB_IP   address to listen on (default localhost; 0.0.0.0 to reach it from other machines)
#   LAB_PORT port (default 8888; Jupyter takes the next free one when it is busy)
set -euo pipefail
cd "$(dirname "$0")/.."
jupyter="${1:-.venv/bin/jupyter}"
args=(lab --notebook-dir=notebooks "--ServerApp.ip=${LAB_IP:-localhost}"
      "--ServerApp.port=${LAB_PORT:-8888}")
# Jupyter refuses to start as root unless told to.
if [ "$(id -u)" = 0 ]; then
  args+=(--allow-root)
fi
# No display (a server, an ssh session): do not try to open a browser; use the printed URL.
if [ "$(uname -s)" = Darwin ]; then
  headless="${SSH_CONNECTION:-}"
else
  headless="$([ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && echo yes || true)"
fi
if [ -n "$headless" ]; then
  args+=(--no-browser)
fi
exec "$jupyter" "${args[@]}"
