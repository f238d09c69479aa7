"""The fidelity report as one self-contained HTML page (inline SVG plots, no scripts, no fetches).

Two versions from one function: the published one (in the bundle) holds the scores against the
approved statistics only; the trusted-environment one adds each column's score against the
source and orders the columns worst against the source first.
"""

from __future__ import annotations

from html import escape

from . import DISCLAIMER, GENERATOR_VERSION
from .fidelity import Distribution, TableFidelity

W, H, PAD = 420, 150, 28
EXPECTED, SYNTHETIC = "#9aa5b1", "#1f77b4"


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def svg_plot(dist: Distribution, title: str) -> str:
    """Approved (grey) against synthetic (blue): bars for categories, lines for cumulative shares."""
    if not dist.labels:
        return ""
    n = len(dist.labels)
    plot_w, plot_h = W - 2 * PAD, H - 2 * PAD
    top = max(max(dist.expected, default=0), max(dist.synthetic, default=0)) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#444"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>',
    ]

    def y(v: float) -> float:
        return H - PAD - plot_h * (v / top)

    if dist.kind == "categories":
        slot = plot_w / n
        bar = max(1.0, slot * 0.4)
        for i, (e, s) in enumerate(zip(dist.expected, dist.synthetic, strict=True)):
            x = PAD + i * slot + slot * 0.1
            parts.append(
                f'<rect x="{x:.1f}" y="{y(e):.1f}" width="{bar:.1f}" height="{H - PAD - y(e):.1f}" fill="{EXPECTED}"/>'
            )
            parts.append(
                f'<rect x="{x + bar:.1f}" y="{y(s):.1f}" width="{bar:.1f}" height="{H - PAD - y(s):.1f}" fill="{SYNTHETIC}"/>'
            )
    else:
        for values, colour in ((dist.expected, EXPECTED), (dist.synthetic, SYNTHETIC)):
            pts = " ".join(
                f"{PAD + plot_w * i / max(n - 1, 1):.1f},{y(v):.1f}" for i, v in enumerate(values)
            )
            parts.append(
                f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
    parts.append(f'<text x="{PAD}" y="{H - 8}" font-size="10">{escape(dist.labels[0])}</text>')
    parts.append(
        f'<text x="{W - PAD}" y="{H - 8}" font-size="10" text-anchor="end">{escape(dist.labels[-1])}</text>'
    )
    parts.append(f'<text x="{PAD}" y="{PAD - 8}" font-size="10">{top:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)


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
) -> str:
    """The report page; ``against_source`` adds the scores against the source (trusted
    environment only: never put that version in a bundle)."""
    rows = []
    for t in tables:
        violations = sum(t.rule_violations.values())
        source_cell = f"<td>{_fmt(t.median_source_score)}</td>" if against_source else ""
        rows.append(
            f'<tr><td><a href="#{escape(t.table)}">{escape(t.table)}</a></td><td>{t.rows}</td>'
            f"<td>{_fmt(t.median_score)}</td>{source_cell}<td>{violations}</td></tr>"
        )
    sections = [_table_section(t, against_source) for t in tables]
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
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.plot {{ border: 1px solid #eee; padding: 0.3em; }}
.key span {{ display: inline-block; width: 1em; height: 0.8em; margin: 0 0.3em; }}
</style>
</head>
<body>
<p><strong>{escape(DISCLAIMER)}</strong></p>
{banner}
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
</body>
</html>
"""


def _table_section(t: TableFidelity, against_source: bool = False) -> str:
    if t.rows == 0:
        return (
            f'<section id="{escape(t.table)}"><h2>{escape(t.table)}</h2>'
            "<p>0 rows: the table is empty in the source and stays empty.</p></section>"
        )
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
    else:
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
        summary = f"median column score against the approved statistics {_fmt(t.median_score)}"
    refs = "".join(
        f"<tr><td>{escape(r.column)}</td><td>{escape(r.parent)}</td><td>{_fmt(r.referential_integrity)}</td>"
        f"<td>{_fmt(r.cardinality_shape_similarity)}</td></tr>"
        for r in t.references
    )
    rules = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(t.rule_violations.items())
    )
    plots = "".join(
        f'<div class="plot"><div>{escape(c.column)} ({escape(c.metric)} against the approved '
        f"statistics {_fmt(c.score)})</div>"
        f"{svg_plot(c.distribution, t.table + '.' + c.column)}</div>"
        for c in t.columns
        if c.distribution and c.distribution.labels
    ) + "".join(
        f'<div class="plot"><div>{escape(r.column)}: children per {escape(r.parent)} '
        f"(CardinalityShapeSimilarity {_fmt(r.cardinality_shape_similarity)})</div>"
        f"{svg_plot(r.distribution, t.table + '.' + r.column)}</div>"
        for r in t.references
        if r.distribution and r.distribution.labels
    )
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
</section>
"""
