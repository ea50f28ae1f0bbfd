"""The rendered edition (``make book``), built in SMOKE mode from the session's chapter executions.

Every chapter ``notebooks/NN_*.ipynb`` gets a page in the table of contents, with every figure it
draws (interactive plotly), and shows no test scaffolding: cells tagged ``remove-cell`` (the
checks and the ``GLX_RESULTS`` line) are gone. A synthetic chapter checks the cell tags the book
honours (``remove-cell``, ``hide-input``) independently of the chapters' current state.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.nbrun import NOTEBOOKS, ROOT, execute

pytestmark = pytest.mark.notebook

BOOK = ROOT / "tools" / "book.py"
CHAPTERS = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
PLOTLY_MIME = "application/vnd.plotly.v1+json"
FIGURE_DIV = re.compile(r'<div id="[^"]+" class="plotly-graph-div"')
ASSERT_LINE = re.compile(r"^\s*assert\b", re.M)
BUILD_TIMEOUT_S = 600


class _Text(HTMLParser):
    """The text of a page a reader sees: outside scripts and styles, and not collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.visible: list[str] = []
        self.collapsed: list[str] = []
        self.code: list[str] = []  # visible text inside <pre>, one entry per block
        self._skip = self._details = self._pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "details":
            self._details += 1
        elif tag == "pre":
            self._pre += 1
            if not self._details and not self._skip:
                self.code.append("")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag == "details":
            self._details -= 1
        elif tag == "pre":
            self._pre -= 1

    def handle_data(self, data):
        if self._skip:
            return
        if self._details:
            self.collapsed.append(data)
            return
        self.visible.append(data)
        if self._pre:
            self.code[-1] += data


def _read(page: Path) -> _Text:
    parser = _Text()
    parser.feed(page.read_text())
    return parser


def _build(executed: Path, out: Path, *extra: str) -> None:
    done = subprocess.run([sys.executable, str(BOOK), "--smoke", "--executed", str(executed),
                           "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert (out / "index.html").is_file()


def _visible_figures(nb: dict) -> int:
    """Plotly figures in the cells the book keeps (not tagged ``remove-cell``)."""
    return sum(PLOTLY_MIME in out.get("data", {})
               for cell in nb["cells"] if "remove-cell" not in cell["metadata"].get("tags", [])
               for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The SMOKE executions of the chapters (shared with the chapter tests), rendered once.

    A chapter that fails to execute is left out of the book and reported by its own tests
    (a failing module fixture would otherwise run again for every test)."""
    executed = tmp_path_factory.mktemp("executed")
    failed = {}
    for name in CHAPTERS:
        try:
            execute(name, executed)
        except Exception as e:  # noqa: BLE001 - reported per chapter below
            failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}"
            (executed / name).unlink(missing_ok=True)
    site = tmp_path_factory.mktemp("book") / "book"
    if len(failed) < len(CHAPTERS):
        # The executed copies are the chapter list: nothing is executed again.
        _build(executed, site, "--chapters", str(executed))
    return Book(site, executed, failed)


class Book(NamedTuple):
    site: Path
    executed: Path
    failed: dict[str, str]

    def page(self, name: str) -> Path:
        if name in self.failed:
            pytest.fail(f"{name} did not execute: {self.failed[name]}")
        return self.site / "chapters" / f"{Path(name).stem}.html"


def test_every_chapter_is_in_the_table_of_contents(book):
    assert CHAPTERS, "no chapters found"
    assert not book.failed, f"chapters that did not execute: {book.failed}"
    assert "intro.html" in (book.site / "index.html").read_text()  # the landing page
    intro = (book.site / "intro.html").read_text()
    for name in CHAPTERS:
        assert book.page(name).is_file(), name
        assert f'href="chapters/{Path(name).stem}.html"' in intro, name
    assert (book.site / "_static" / "plotly.min.js").is_file()  # figures work offline


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_shows_its_figures(book, name):
    html = book.page(name).read_text()
    want = _visible_figures(json.loads((book.executed / name).read_text()))
    assert want > 0, f"{name} draws no plotly figure"
    assert len(FIGURE_DIV.findall(html)) >= want, name
    assert "plotly.min.js" in html and "Plotly.newPlot" in html


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_shows_no_results_dump(book, name):
    assert "GLX_RESULTS" not in "".join(_read(book.page(name)).visible)


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_shows_no_asserts(book, name):
    shown = [block for block in _read(book.page(name)).code if ASSERT_LINE.search(block)]
    assert not shown, shown[0][:500]


def _synthetic_chapter(path: Path) -> None:
    import nbformat as nbf
    import plotly.graph_objects as go

    fig = json.loads(go.Figure(go.Scatter(x=[1, 2], y=[3, 1])).to_json())
    stream = lambda text: nbf.v4.new_output("stream", name="stdout", text=text)
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell("# A synthetic chapter\n\nProse."),
        nbf.v4.new_code_cell("print('SHOWN_INPUT')", outputs=[stream("SHOWN_OUTPUT\n")]),
        nbf.v4.new_code_cell("fig.show()", outputs=[nbf.v4.new_output(
            "display_data", data={PLOTLY_MIME: fig, "text/plain": "Figure"})]),
        nbf.v4.new_code_cell("x = 'COLLAPSED_INPUT'", metadata={"tags": ["hide-input"]},
                             outputs=[stream("OUTPUT_OF_COLLAPSED\n")]),
        nbf.v4.new_code_cell("assert REMOVED_INPUT", metadata={"tags": ["remove-cell"]},
                             outputs=[stream('GLX_RESULTS {"REMOVED_OUTPUT": 1}\n')]),
    ]
    nbf.write(nb, path)


def test_book_honours_the_cell_tags(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    _synthetic_chapter(chapters / "01_synthetic.ipynb")
    site = tmp_path / "book"
    _build(chapters, site, "--chapters", str(chapters))
    page = site / "chapters" / "01_synthetic.html"
    html, text = page.read_text(), _read(page)
    visible, collapsed = "".join(text.visible), "".join(text.collapsed)
    assert "SHOWN_INPUT" in visible and "SHOWN_OUTPUT" in visible
    assert "COLLAPSED_INPUT" in collapsed and "COLLAPSED_INPUT" not in visible
    assert "OUTPUT_OF_COLLAPSED" in visible
    for removed in ("REMOVED_INPUT", "REMOVED_OUTPUT", "GLX_RESULTS"):
        assert removed not in html, removed
    assert len(FIGURE_DIV.findall(html)) == 1
    assert "A synthetic chapter" in (site / "intro.html").read_text()  # in the contents
    assert "SMOKE build" in html  # the banner of a SMOKE build


@pytest.mark.parametrize("flag", ["--executed", "--chapters"])
def test_a_missing_folder_is_one_line(tmp_path, flag):
    done = subprocess.run([sys.executable, str(BOOK), flag, str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "book")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nowhere" in done.stderr, done.stderr
    assert not (tmp_path / "book").exists()
