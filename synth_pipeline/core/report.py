"""The fidelity report as one self-contained HTML page (inline SVG plots, no scripts, no fetches).

Two versions from one function: the published one (in the bundle) holds the scores against the
approved statistics only; the trusted-environment one adds each column's score against the
source and orders the columns worst against the source first.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from . import DISCLAIMER, GENERATOR_VERSION
from .fidelity import Distribution, TableFidelity

W, H, PAD = 420, 150, 28
EXPECTED, SYNTHETIC = "#9aa5b1", "#1f77b4"
CSS = """body { font-family: sans-serif; margin: 2em; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plot { border: 1px solid #eee; padding: 0.3em; }
.key span { display: inline-block; width: 1em; height: 0.8em; margin: 0 0.3em; }
"""


def html_page(title: str, css: str, body: str) -> str:
    """One self-contained page (the fidelity and Achilles reports): its styles, the disclaimer
    first, then ``body``."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
{css}</style>
</head>
<body>
<p><strong>{escape(DISCLAIMER)}</strong></p>
{body}</body>
</html>
"""


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def concept_labels(tables: list[TableFidelity]) -> set[str]:
    """The category values drawn for concept columns: the ids whose names the plots can show."""
    return {
        label
        for t in tables
        for c in t.columns
        if c.column.endswith("concept_id")
        and c.distribution
        and c.distribution.kind == "categories"
        for label in c.distribution.labels
    }


def plot_note(dist: Distribution | None) -> str | None:
    """Why a column gets no plot (a sentence for the report), or None when it gets one."""
    if dist is None or not dist.labels:
        return "no distribution to draw"
    if len(dist.labels) == 1:
        if dist.kind == "categories":
            return (
                f"a single value, {dist.labels[0]}: approved {_pct(dist.expected[0])}, "
                f"synthetic {_pct(dist.synthetic[0])} of the rows"
            )
        return f"a single value, {dist.labels[0]}, on both sides"
    return None


@dataclass(frozen=True)
class _Frame:
    """A plot's drawing area inside the W x H picture: its left and bottom margins, its width
    and height, and the share drawn at its top."""

    left: int
    bottom: int
    width: int
    height: int
    top: float

    def y(self, v: float) -> float:
        return H - self.bottom - self.height * (v / self.top)


def svg_plot(dist: Distribution, title: str, names: dict[str, str] | None = None) -> str:
    """Approved (grey) against synthetic (blue): bars for categories, lines for cumulative
    shares, with axis titles; each bar names its value (and the concept's name where ``names``
    has it) under the axis when there are few, and in its tooltip always."""
    if plot_note(dist) is not None:
        return ""
    left, bottom = PAD + 14, PAD + 22
    top = max(max(dist.expected, default=0), max(dist.synthetic, default=0)) or 1.0
    frame = _Frame(left, bottom, W - left - PAD, H - bottom - PAD, top)
    categories = dist.kind == "categories"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 22}" '
        f'viewBox="0 0 {W} {H + 22}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{H - bottom}" x2="{W - PAD}" y2="{H - bottom}" stroke="#444"/>',
        f'<line x1="{left}" y1="{PAD}" x2="{left}" y2="{H - bottom}" stroke="#444"/>',
    ]
    parts += _bars(dist, frame, names or {}) if categories else _lines(dist, frame)
    parts += _axis_titles(frame, categories)
    parts.append("</svg>")
    return "".join(parts)


def _bars(dist: Distribution, f: _Frame, names: dict[str, str]) -> list[str]:
    """A pair of bars per category, named under the axis when there are at most 12."""
    n = len(dist.labels)

    def label(i: int) -> str:
        code = dist.labels[i]
        return f"{code} {names[code]}" if code in names else code

    parts = []
    base = H - f.bottom
    slot = f.width / n
    bar = max(1.0, slot * 0.4)
    for i, (e, s) in enumerate(zip(dist.expected, dist.synthetic, strict=True)):
        x = f.left + i * slot + slot * 0.1
        tip = escape(f"{label(i)}: approved {_pct(e)}, synthetic {_pct(s)}")
        parts.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{f.y(e):.1f}" width="{bar:.1f}" '
            f'height="{base - f.y(e):.1f}" fill="{EXPECTED}"/><rect x="{x + bar:.1f}" '
            f'y="{f.y(s):.1f}" width="{bar:.1f}" height="{base - f.y(s):.1f}" '
            f'fill="{SYNTHETIC}"/></g>'
        )
    shown = range(n) if n <= 12 else (0, n - 1)
    for i in shown:
        x = f.left + i * slot + slot * 0.5
        text = escape(label(i)[:18])
        parts.append(
            f'<text x="{x:.1f}" y="{base + 10}" font-size="8" text-anchor="end" '
            f'transform="rotate(-30 {x:.1f} {base + 10})">{text}</text>'
        )
    return parts


def _lines(dist: Distribution, f: _Frame) -> list[str]:
    """The two cumulative shares as lines, the first and last values under the axis."""
    n = len(dist.labels)
    parts = []
    for values, colour in ((dist.expected, EXPECTED), (dist.synthetic, SYNTHETIC)):
        pts = " ".join(
            f"{f.left + f.width * i / max(n - 1, 1):.1f},{f.y(v):.1f}" for i, v in enumerate(values)
        )
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
    parts.append(
        f'<text x="{f.left}" y="{H - f.bottom + 12}" font-size="9">{escape(dist.labels[0])}</text>'
    )
    parts.append(
        f'<text x="{W - PAD}" y="{H - f.bottom + 12}" font-size="9" text-anchor="end">'
        f"{escape(dist.labels[-1])}</text>"
    )
    return parts


def _axis_titles(f: _Frame, categories: bool) -> list[str]:
    """The axes' titles and the share at the top of the vertical axis."""
    x_title = "value (hover a bar for its shares)" if categories else "value"
    y_title = "share of rows" if categories else "cumulative share"
    return [
        f'<text x="{f.left + f.width / 2:.1f}" y="{H + 16}" font-size="10" '
        f'text-anchor="middle">{x_title}</text>',
        f'<text x="12" y="{PAD + f.height / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {PAD + f.height / 2:.1f})">{y_title}</text>',
        f'<text x="{f.left + 3}" y="{PAD - 6}" font-size="9">{f.top:.2f}</text>',
    ]


NOT_PUBLISHED = (
    "Each column was also scored against the source table inside the trusted environment. "
    "Those scores are not published: each is computed from exact source counts, and scores "
    "from repeated releases (another seed or scale) could be combined to narrow those counts "
    "below what disclosure control releases."
)


def fidelity_html(
    project: str,
    tables: list[TableFidelity],
    created_at: str,
    threshold: float,
    against_source: bool = False,
    names: dict[str, str] | None = None,
) -> str:
    """The report page; ``against_source`` adds the scores against the source (trusted
    environment only: never put that version in a bundle). ``names``: concept names by id
    (public vocabulary), shown beside the ids in the plots."""
    rows = []
    for t in tables:
        violations = sum(t.rule_violations.values())
        source_cell = f"<td>{_fmt(t.median_source_score)}</td>" if against_source else ""
        rows.append(
            f'<tr><td><a href="#{escape(t.table)}">{escape(t.table)}</a></td><td>{t.rows}</td>'
            f"<td>{_fmt(t.median_score)}</td>{source_cell}<td>{violations}</td></tr>"
        )
    sections = [_table_section(t, against_source, names) for t in tables]
    if against_source:
        title = f"Fidelity report against the source: project {escape(project)}"
        banner = (
            "<p><strong>Trusted environment only: these scores are computed from the source "
            "and are not for publication.</strong></p>"
        )
        which = """Each synthetic column has two scores (1 is a perfect match): <em>against the
approved statistics</em> (the configuration its reviewer signed, as in the published report) and
<em>against the source</em> (the source table, measured by aggregate SQL in each database):
KSComplement for numbers, offsets and string lengths, TVComplement for categories (the source's
values seen at least k times, every other value pooled) and years. A string column whose source
has no value seen k times (identifiers, free text) is compared by its lengths. Columns are listed
worst against the source first."""
        source_head = "<th>median against the source</th>"
    else:
        title = f"Fidelity report: project {escape(project)}"
        banner = ""
        which = f"""Each synthetic column is scored <em>against the approved statistics</em>
(the configuration its reviewer signed), not against the source: KSComplement for numbers,
offsets and lengths, TVComplement for categories and year bins (1 is a perfect match). Columns
are listed worst first. {escape(NOT_PUBLISHED)}"""
        source_head = ""
    return html_page(
        title,
        CSS,
        f"""{banner}
<h1>{title}</h1>
<p>Created {escape(created_at)} by synth_pipeline {escape(GENERATOR_VERSION)}. {which}
Threshold for the median column score against the approved statistics: {threshold:.2f}.</p>
<p class="key">Plots: <span style="background:{EXPECTED}"></span>approved statistics
<span style="background:{SYNTHETIC}"></span>synthetic data</p>
<table>
<thead><tr><th>table</th><th>rows</th><th>median against the approved statistics</th>{source_head}<th>rule violations</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
</table>
{"".join(sections)}
""",
    )


def _table_section(
    t: TableFidelity, against_source: bool = False, names: dict[str, str] | None = None
) -> str:
    if t.rows == 0:
        return (
            f'<section id="{escape(t.table)}"><h2>{escape(t.table)}</h2>'
            "<p>0 rows: the table is empty in the source and stays empty.</p></section>"
        )
    head, cols, summary = _column_table(t, against_source)
    refs = "".join(
        f"<tr><td>{escape(r.column)}</td><td>{escape(r.parent)}</td><td>{_fmt(r.referential_integrity)}</td>"
        f"<td>{_fmt(r.cardinality_shape_similarity)}</td></tr>"
        for r in t.references
    )
    rules = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(t.rule_violations.items())
    )
    plots, unplotted = _plots(t, names)
    return f"""
<section id="{escape(t.table)}">
<h2>{escape(t.table)}</h2>
<p>{t.rows} rows; {summary}.</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>{cols}</tbody>
</table>
{"<table><thead><tr><th>foreign key</th><th>parent</th><th>ReferentialIntegrity</th><th>CardinalityShapeSimilarity</th></tr></thead><tbody>" + refs + "</tbody></table>" if refs else ""}
{"<table><thead><tr><th>rule</th><th>violations</th></tr></thead><tbody>" + rules + "</tbody></table>" if rules else ""}
<div class="plots">{plots}</div>
{"<p>Not drawn:</p><ul>" + unplotted + "</ul>" if unplotted else ""}
</section>
"""


def _column_table(t: TableFidelity, against_source: bool) -> tuple[str, str, str]:
    """The columns' table (its head and rows, worst first) and the summary sentence's scores."""
    if against_source:
        head = (
            "<th>column</th><th>generator</th><th>metric against the approved statistics</th>"
            "<th>score against the approved statistics</th><th>metric against the source</th>"
            "<th>score against the source</th><th>null similarity against the source</th>"
            "<th>note</th>"
        )
        cols = "".join(
            f"<tr><td>{escape(c.column)}</td><td>{escape(c.generator)}</td><td>{escape(c.metric)}</td>"
            f"<td>{_fmt(c.score)}</td><td>{escape(s.metric if s else '')}</td>"
            f"<td>{_fmt(s.score if s else None)}</td><td>{_fmt(s.null_similarity if s else None)}</td>"
            f"<td>{escape(s.note if s else 'not measured against the source')}</td></tr>"
            for c in t.worst_first(against_source=True)
            for s in [c.against_source]
        )
        summary = (
            f"median column score against the approved statistics {_fmt(t.median_score)}, "
            f"against the source {_fmt(t.median_source_score)}"
            + (f" ({escape(t.source_note)})" if t.source_note else "")
        )
        return head, cols, summary
    head = (
        "<th>column</th><th>generator</th><th>metric</th><th>score against the approved "
        "statistics</th><th>null similarity</th><th>boundary adherence</th>"
        "<th>category adherence</th>"
    )
    cols = "".join(
        f"<tr><td>{escape(c.column)}</td><td>{escape(c.generator)}</td><td>{escape(c.metric)}</td>"
        f"<td>{_fmt(c.score)}</td><td>{_fmt(c.null_similarity)}</td><td>{_fmt(c.boundary_adherence)}</td>"
        f"<td>{_fmt(c.category_adherence)}</td></tr>"
        for c in t.worst_first()
    )
    return head, cols, f"median column score against the approved statistics {_fmt(t.median_score)}"


def _plots(t: TableFidelity, names: dict[str, str] | None) -> tuple[str, str]:
    """The table's plots (columns, then children per parent) and the list of columns not
    drawn, with why."""
    plots = "".join(
        f'<div class="plot"><div>{escape(c.column)} ({escape(c.metric)} against the approved '
        f"statistics {_fmt(c.score)})</div>"
        f"{svg_plot(c.distribution, t.table + '.' + c.column, names)}</div>"
        for c in t.columns
        if c.distribution and plot_note(c.distribution) is None
    )
    unplotted = "".join(
        f"<li>{escape(c.column)}: {escape(note)}</li>"
        for c in t.columns
        if c.distribution and c.distribution.labels
        for note in [plot_note(c.distribution)]
        if note
    )
    plots += "".join(
        f'<div class="plot"><div>{escape(r.column)}: children per {escape(r.parent)} '
        f"(CardinalityShapeSimilarity {_fmt(r.cardinality_shape_similarity)})</div>"
        f"{svg_plot(r.distribution, t.table + '.' + r.column)}</div>"
        for r in t.references
        if r.distribution and plot_note(r.distribution) is None
    )
    return plots, unplotted
