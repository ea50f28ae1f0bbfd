"""Build the rendered edition of the workbook: executed chapters -> Jupyter Book -> build/book/.

Each chapter (``notebooks/[0-9][0-9]_*.ipynb``) is executed once with papermill, with its default
parameters or with ``SMOKE = True`` (``--smoke``), unless an executed copy is given in
``--executed DIR``. Jupyter Book 1.x then renders them with execution off: cells tagged
``remove-cell`` disappear, ``hide-input`` cells are collapsed, widgets show their saved state and
plotly figures stay interactive (one offline copy of plotly.js for the whole site).

    python tools/book.py [--smoke] [--executed DIR] [--out build/book] [--chapters notebooks]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONFIG = ROOT / "docs" / "book"
BUILD = ROOT / "build"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SMOKE_BANNER = "SMOKE build: quick runs for the tests; the numbers are not meaningful."


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapters of the workbook, in order (every ``NN_name.ipynb`` of ``folder``)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def execute(src: Path, out: Path, smoke: bool) -> None:
    """Execute one chapter with papermill, from the chapter's folder (paths are relative to it)."""
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(src), str(out), parameters={"SMOKE": True} if smoke else {},
                        cwd=str(src.parent), kernel_name="python3", progress_bar=False)


def _plotly_html(outputs: list) -> None:
    """Give plotly outputs an HTML view (plotly's own, without plotly.js)."""
    import plotly.io as pio

    for out in outputs:
        data = out.get("data", {})
        # The kernel showed the figure as plotly JSON only (the mimetype renderer), which the
        # book cannot render; plotly.js itself is loaded once per page (see the config).
        if PLOTLY_MIME in data and "text/html" not in data:
            data["text/html"] = pio.to_html(data[PLOTLY_MIME], include_plotlyjs=False,
                                            full_html=False, validate=False)


def prepare(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The executed chapter as the book shows it: plotly figures (also inside widgets) get HTML."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            _plotly_html(cell.get("outputs", []))
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for model in state.values():
        if model.get("model_name") == "OutputModel":
            _plotly_html(model.get("state", {}).get("outputs", []))
    return nb


def stage(executed: list[Path], site_src: Path, smoke: bool) -> None:
    """Lay out the Jupyter Book source: config, landing page, chapters, plotly.js."""
    import plotly.offline

    shutil.rmtree(site_src, ignore_errors=True)
    shutil.copytree(CONFIG, site_src)
    if smoke:
        cfg_path = site_src / "_config.yml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg.setdefault("html", {})["announcement"] = SMOKE_BANNER
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (site_src / "chapters").mkdir()
    for path in executed:
        nb = prepare(nbformat.read(path, as_version=4))
        nbformat.write(nb, site_src / "chapters" / path.name)
    static = site_src / "_plotly"  # the config's html_static_path
    static.mkdir()
    (static / "plotly.min.js").write_text(plotly.offline.get_plotlyjs())


def build(site_src: Path, out: Path) -> None:
    """Render with Jupyter Book (no execution) and put the HTML site at ``out``."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", "--builder", "html", "--all",
           str(site_src)]
    done = subprocess.run(cmd, cwd=str(site_src))
    if done.returncode != 0:
        raise SystemExit(f"book: jupyter-book build failed (exit {done.returncode})")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(site_src / "_build" / "html", out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="execute with SMOKE = True (quick runs)")
    ap.add_argument("--executed", type=Path, default=None,
                    help="folder of already executed chapters to use (missing ones are executed)")
    ap.add_argument("--out", type=Path, default=BUILD / "book", help="where the site goes")
    ap.add_argument("--chapters", type=Path, default=NOTEBOOKS,
                    help="folder whose NN_*.ipynb are the chapters (default: notebooks/)")
    args = ap.parse_args(argv)
    for flag, folder in (("--executed", args.executed), ("--chapters", args.chapters)):
        if folder is not None and not folder.is_dir():
            print(f"book: {flag} {str(folder)!r} is not a folder", file=sys.stderr)
            return 2
    srcs = chapters(args.chapters)
    if not srcs:
        print(f"book: no chapters (NN_*.ipynb) in {args.chapters}", file=sys.stderr)
        return 2
    # Full runs go where `make notebooks` puts them, so `EXECUTED=build/notebooks` reuses those.
    run_dir = BUILD / ("notebooks-smoke" if args.smoke else "notebooks")
    executed = []
    for src in srcs:
        given = args.executed / src.name if args.executed is not None else None
        if given is not None and given.is_file():
            executed.append(given)
            continue
        print(f"book: executing {src.name}{' (SMOKE)' if args.smoke else ''}", flush=True)
        from papermill.exceptions import PapermillExecutionError

        try:
            execute(src, run_dir / src.name, args.smoke)
        except PapermillExecutionError as e:
            print(f"book: {src.name} failed ({e.ename}: {e.evalue}); the executed notebook, "
                  f"with the traceback, is {run_dir / src.name}", file=sys.stderr)
            return 1
        executed.append(run_dir / src.name)
    site_src = args.out.parent / f"{args.out.name}-src"  # beside the site, never shared
    stage(executed, site_src, args.smoke)
    build(site_src, args.out)
    print(f"book: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
