"""One writer for the reports' documents and tables: Markdown, HTML and CSV.

A document is a sequence of blocks (:class:`Heading`, :class:`Paragraph`,
:class:`BulletList`, :class:`Table`, :class:`Images`) rendered by :func:`to_markdown` or
:func:`to_html`; :func:`to_csv` writes one table of values. ``dff compare``'s
``report.md``, ``report.html`` and ``results.csv`` and ``dff batch``'s
``batch_summary.md`` and ``batch_summary.csv`` are written with them::

    from dffcore.report.tables import Heading, Paragraph, Table, to_markdown

    text = to_markdown([Heading(1, "Results"), Paragraph("Two runs."),
                        Table(["run", "seconds"], [["a", "1.5"], ["b", "2"]])])
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th{background:#eee}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%;display:block;margin:0.5em 0}h3{font-size:1em;margin-bottom:0.2em}"
)


@dataclass(frozen=True)
class Heading:
    """A section title of ``level`` 1 (the document's title), 2, 3, ..."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class BulletList:
    """A bulleted list of plain-text ``items`` (kept as a tuple)."""

    items: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))


@dataclass(frozen=True)
class Table:
    """A table of text cells: ``header`` and ``rows`` (each as long as the header).

    ``bold``, when given, has one flag per cell of ``rows`` (same shape): the cells to
    emphasise, e.g. the best value of each column. All are kept as tuples.
    """

    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    bold: Sequence[Sequence[bool]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", tuple(self.header))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        if self.bold is not None:
            object.__setattr__(self, "bold", tuple(tuple(b) for b in self.bold))

    def is_bold(self, i: int, j: int) -> bool:
        """Whether cell ``j`` of row ``i`` is emphasised."""
        return bool(self.bold and self.bold[i][j])


@dataclass(frozen=True)
class Images:
    """Image ``files`` (paths relative to the document, kept as a tuple), side by side."""

    files: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))


Block = Heading | Paragraph | BulletList | Table | Images


def md_cell(text: Any) -> str:
    """``text`` as one Markdown table cell: ``|`` escaped, line breaks made spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """Render a document as Markdown (GitHub tables).

    Parameters
    ----------
    blocks : sequence of Heading, Paragraph, BulletList, Table or Images
        The document, in order.

    Returns
    -------
    str
        The Markdown text; every block is followed by a blank line, so the text ends
        with a newline.
    """
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, BulletList):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            for i, line in enumerate(b.rows):
                shown = [
                    f"**{md_cell(c)}**" if b.is_bold(i, j) else md_cell(c)
                    for j, c in enumerate(line)
                ]
                out.append("| " + " | ".join(shown) + " |")
            out.append("")
        elif isinstance(b, Images):
            out += [" ".join(f"![{Path(f).stem}]({f})" for f in b.files), ""]
        else:
            raise TypeError(f"not a document block: {b!r}")
    return "\n".join(out)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """Render a document as one self-contained HTML page (inline CSS).

    Parameters
    ----------
    blocks : sequence of Heading, Paragraph, BulletList, Table or Images
        The document, in order.
    title : str
        The page's ``<title>``.

    Returns
    -------
    str
        The HTML text, ending with a newline.
    """
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, BulletList):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr>")
            for i, line in enumerate(b.rows):
                tds = [
                    f"<td><b>{e(c)}</b></td>" if b.is_bold(i, j) else f"<td>{e(c)}</td>"
                    for j, c in enumerate(line)
                ]
                out.append("<tr>" + "".join(tds) + "</tr>")
            out.append("</table>")
        elif isinstance(b, Images):
            out += [f'<img src="{e(f)}" alt="{e(Path(f).stem)}">' for f in b.files]
        else:
            raise TypeError(f"not a document block: {b!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One table as CSV text (``\\n`` line ends).

    Parameters
    ----------
    header : sequence of str
        The column names.
    rows : sequence of sequences
        The values; None and NaN become empty cells, anything else is written as
        :mod:`csv` writes it (``str``, quoted when needed).

    Returns
    -------
    str
        The CSV text, one line per row after the header.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if _missing(v) else v for v in row])
    return buf.getvalue()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, Real) and value != value)  # None or NaN
