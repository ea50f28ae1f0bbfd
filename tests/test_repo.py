"""Hygiene of the repository: notebooks are committed clean and parameterised; the README's
results quote only numbers that the documents they cite show."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 1, "no numbered notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = code[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), \
        f"{path.name}: the first code cell must be tagged 'parameters'"
    assert "SMOKE" in "".join(first["source"]), f"{path.name}: parameters cell lacks SMOKE"
    assert nb["cells"][0]["cell_type"] == "markdown", f"{path.name}: must open with prose"


# The README's Results section ----------------------------------------------------------------

# A number as written in prose: an optional sign ("+", "-", the minus sign, or "±" with an
# optional space) and digits with an optional decimal part; not part of a name such as
# "CIFAR-10", "H200", "MNIST-1D" or a date. A trailing "x" ("5x") still counts as a number.
NUMBER = re.compile(r"(?<![\w.\-+−±])((?:±\s?|[+\-−](?=\d))?\d+(?:\.\d+)?)(?!(?!x\b)\w|\.\w)")


def section(text: str, title: str) -> str:
    """The body of the level-2 section ``## title``, up to the next level-2 heading."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


def numbers(text: str) -> list[str]:
    """Every number quoted in ``text``, normalised: "−" as "-", "± 1.0" as "±1.0"."""
    return [re.sub(r"\s", "", n).replace("−", "-") for n in NUMBER.findall(text)]


def cited_docs(text: str) -> list[str]:
    """The markdown files a text cites as `path.md`."""
    return sorted(set(re.findall(r"`([\w./-]+\.md)`", text)))


def absent_numbers(quoted: str, docs_text: str) -> list[str]:
    """Numbers of ``quoted`` that ``docs_text`` never writes.

    A signed number ("+6.6", "-0.1", "±1.0") must appear with its sign; an unsigned one
    ("17.1 pp") with any sign or none.
    """
    have = set(numbers(docs_text))
    magnitudes = {n.lstrip("+-±") for n in have}
    return [n for n in numbers(quoted)
            if (n not in have if n[0] in "+-±" else n not in magnitudes)]


def test_number_check_can_fail():
    docs = "sgd_compute − lexicase = +6.6 ± 1.0 pp [+5.6, +7.6]; 17.1 pp; CIFAR-10 on an H200"
    assert numbers("CIFAR-10, MNIST-1D, H200, 2026-11-23, 5x, p = 4, -0.1 and ± 0.9.") == \
        ["2026", "5", "4", "-0.1", "±0.9"]
    assert absent_numbers("SGD is ahead by +6.6 ± 1.0 pp (17.1 pp, 6.6 pp, CIFAR-10)", docs) == []
    assert absent_numbers("matches GLS (+0.0 ± 1.0 pp)", docs) == ["+0.0"]
    assert absent_numbers("-6.6 pp, ±1.1, 12.2 points", docs) == ["-6.6", "±1.1", "12.2"]


def test_readme_results_quote_only_numbers_from_the_cited_docs():
    results = section((ROOT / "README.md").read_text(), "Results")
    cited = cited_docs(results)
    assert cited, "the Results section cites no documents"
    missing = [c for c in cited if not (ROOT / c).is_file()]
    assert not missing, f"the Results section cites documents that do not exist: {missing}"
    quoted = numbers(results)
    assert quoted, "the Results section quotes no numbers; state the figures the docs show"
    docs_text = "\n".join((ROOT / c).read_text() for c in cited)
    absent = absent_numbers(results, docs_text)
    assert not absent, (f"README.md's Results section quotes {absent}, which none of "
                        f"{cited} writes; quote the documents' own figures")


def test_readme_results_do_not_word_a_failure_to_reject_as_a_finding():
    results = section((ROOT / "README.md").read_text(), "Results").lower()
    # an interval that covers 0 is inconclusive unless an equivalence test with a stated
    # margin says otherwise; "within noise" reads as "the same"
    assert "within noise" not in results
