"""OHDSI Achilles on the source and on the synthetic tables, compared per analysis.

Trusted environment only: Achilles' counts on the source are exact counts of real patients, so
this report sits beside the trusted fidelity report under the work dir and never in a bundle.

With the optional extra (``pip install -e '.[ohdsi]'``, bringing duckcdm, a pure-Python port of
OHDSI Achilles on DuckDB), each side's OMOP tables are copied into a scratch DuckDB file with the
CDM's columns and types, every Achilles analysis the ATLAS data-source reports read is run there
(Achilles' own SQL, translated by duckcdm), and each analysis of ``achilles_results`` is scored:

    agreement = 1 - total variation distance between the two distributions of count_value
                    over the analysis's strata (stratum_1 .. stratum_5)

so 1 is the same shape and 0 shares nothing. An analysis with a single stratum (a total, such as
the number of persons) is a distribution of one point and always agrees: its counts are shown
side by side instead. Distribution analyses (``achilles_results_dist``: averages and percentiles
per stratum) are listed side by side, not scored. Small cells are kept (small_cell_count 0): the
comparison is inside the trusted environment and would otherwise drop the tails it is about.

Without duckcdm installed, :func:`available` is False and the caller says so.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path

from sqlalchemy.engine import Engine

from . import GENERATOR_VERSION
from .achilles_cdm import load_cdm
from .report import html_page

INSTALL = "pip install -e '.[ohdsi]'"
METADATA_ANALYSES = {0}  # source name, Achilles version and run date: not a distribution


def available() -> bool:
    """Whether duckcdm (and DuckDB) are installed."""
    try:
        import duckcdm.achilles  # noqa: F401
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Analysis:
    """One Achilles analysis on both sides."""

    analysis_id: int
    name: str
    category: str
    strata: int  # distinct strata seen on either side
    agreement: float | None  # None: distribution analysis, or no rows on either side
    source_total: int
    synthetic_total: int
    # the largest strata of either side: (stratum label, source share, synthetic share)
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    note: str = ""
    # the agreement between two halves of the source (even and odd person_id): what sampling
    # alone costs at half the size, so a floor for what the synthetic data could reach
    halves: float | None = None


@dataclass
class AchillesComparison:
    analyses: list[Analysis]
    failed: dict[str, list[tuple[int, str]]]  # side -> (analysis id, error)
    ran: dict[str, int]  # side -> analyses run
    cdm_version: str

    @property
    def scored(self) -> list[Analysis]:
        return [a for a in self.analyses if a.agreement is not None]

    @property
    def median_agreement(self) -> float | None:
        scores = [a.agreement for a in self.scored]
        return round(statistics.median(scores), 4) if scores else None

    @property
    def median_halves(self) -> float | None:
        scores = [a.halves for a in self.scored if a.halves is not None]
        return round(statistics.median(scores), 4) if scores else None

    def worst_first(self) -> list[Analysis]:
        return sorted(
            self.analyses,
            key=lambda a: (a.agreement is None, a.agreement or 0.0, a.analysis_id),
        )

    def to_json(self) -> dict:
        return {
            "median_agreement": self.median_agreement,
            "median_agreement_between_source_halves": self.median_halves,
            "cdm_version": self.cdm_version,
            "ran": self.ran,
            "failed": {k: [list(x) for x in v] for k, v in self.failed.items()},
            "analyses": [asdict(a) for a in self.worst_first()],
        }


# ---------------------------------------------------------------------------------------------
# Running Achilles on a side (its tables loaded into DuckDB by achilles_cdm.py)


def run_side(
    engine: Engine,
    schema: str | None,
    work: Path,
    tables: list[str] | None = None,
    cdm_version: str = "5.4",
    half: int | None = None,
) -> tuple[dict, dict, list[tuple[int, str]], int]:
    """Achilles on one side in a scratch DuckDB file under ``work``: its results per analysis
    ({id: {strata: count}}), its distributions ({id: [row dicts]}), failures and analyses run."""
    import duckdb

    work.mkdir(parents=True, exist_ok=True)
    path = work / "cdm.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        load_cdm(engine, schema, con, tables, cdm_version, half)
        done, failed = _run_achilles(
            con,
            cdm_schema="main",
            results_schema="results",
            source_name="synth_pipeline",
            cdm_version="5.4" if cdm_version.startswith("5.4") else "5.3",
            small_cell_count=0,
            log=None,
        )
        results: dict[int, dict[tuple, int]] = defaultdict(dict)
        for aid, s1, s2, s3, s4, s5, n in con.execute(
            "SELECT analysis_id, stratum_1, stratum_2, stratum_3, stratum_4, stratum_5, "
            "count_value FROM results.achilles_results"
        ).fetchall():
            key = tuple("" if s is None else str(s) for s in (s1, s2, s3, s4, s5))
            results[int(aid)][key] = results[int(aid)].get(key, 0) + int(n or 0)
        dist: dict[int, list[dict]] = defaultdict(list)
        cur = con.execute("SELECT * FROM results.achilles_results_dist")
        names = [d[0] for d in cur.description]
        for row in cur.fetchall():
            r = dict(zip(names, row, strict=True))
            dist[int(r["analysis_id"])].append(r)
        return dict(results), dict(dist), list(failed), len(done)
    finally:
        con.close()


def _run_achilles(con, **kwargs):
    """duckcdm's run_achilles with its SQL translations remembered for the process.

    Translating Achilles' SQL Server dialect to DuckDB (duckcdm's pure-Python SqlRender) takes
    most of a run on small tables, and the translated statements are the same for every side
    and every run (the same schema names and parameters): the module's ``translate`` is
    wrapped in a cache while the analyses run, then put back.
    """
    import duckcdm.achilles as ach

    original = ach.translate
    ach.translate = _cached_translate(original)
    try:
        return ach.run_achilles(con, **kwargs)
    finally:
        ach.translate = original


_TRANSLATIONS: dict[tuple, str] = {}


def _cached_translate(translate):
    def cached(sql, dialect, *args, **kwargs):
        key = (sql, dialect, args, tuple(sorted(kwargs.items())))
        if key not in _TRANSLATIONS:
            _TRANSLATIONS[key] = translate(sql, dialect, *args, **kwargs)
        return _TRANSLATIONS[key]

    return cached


# ---------------------------------------------------------------------------------------------
# Comparing


def agreement(source: dict[tuple, int], synthetic: dict[tuple, int]) -> float | None:
    """1 - total variation distance between the two count distributions over the strata;
    None when either side has no counts."""
    a, b = sum(source.values()), sum(synthetic.values())
    if a <= 0 or b <= 0:
        return None
    keys = set(source) | set(synthetic)
    tvd = 0.5 * sum(abs(source.get(k, 0) / a - synthetic.get(k, 0) / b) for k in keys)
    return round(1.0 - tvd, 4)


def _label(key: tuple) -> str:
    return " / ".join(k for k in key if k != "") or "(total)"


def compare(
    source: tuple[dict, dict],
    synthetic: tuple[dict, dict],
    shown: int = 12,
    halves: tuple[dict, dict] | None = None,
) -> list[Analysis]:
    """Per analysis: its agreement, its largest strata side by side, and (given the results of
    two halves of the source) the agreement between the halves."""
    from duckcdm.achilles import analysis_details

    details = analysis_details()
    (src, src_dist), (syn, syn_dist) = source, synthetic
    out = []
    for aid in sorted(set(src) | set(syn) | set(src_dist) | set(syn_dist)):
        if aid in METADATA_ANALYSES:
            continue
        d = details.get(aid, {})
        name, category = d.get("analysis_name", f"analysis {aid}"), d.get("category", "")
        if aid in src_dist or aid in syn_dist:
            out.append(
                _dist_analysis(aid, name, category, src_dist.get(aid, []), syn_dist.get(aid, []))
            )
            continue
        a, b = src.get(aid, {}), syn.get(aid, {})
        ta, tb = sum(a.values()), sum(b.values())
        keys = set(a) | set(b)
        score = agreement(a, b)
        note = ""
        if score is None:
            note = "no rows in the " + ("source" if ta <= 0 else "synthetic data")
        elif len(keys) == 1:
            note = "one stratum: a total, compared by its counts"
        top = sorted(keys, key=lambda k: -(a.get(k, 0) / (ta or 1) + b.get(k, 0) / (tb or 1)))
        rows = [
            (
                _label(k),
                round(a.get(k, 0) / ta, 4) if ta else 0.0,
                round(b.get(k, 0) / tb, 4) if tb else 0.0,
            )
            for k in top[:shown]
        ]
        split = agreement(halves[0].get(aid, {}), halves[1].get(aid, {})) if halves else None
        out.append(Analysis(aid, name, category, len(keys), score, ta, tb, rows, note, split))
    return out


def _dist_analysis(aid: int, name: str, category: str, a: list[dict], b: list[dict]) -> Analysis:
    """A distribution analysis: its first strata's median and p10..p90 side by side."""

    def summary(rows: list[dict]) -> dict[str, str]:
        return {
            _label(
                tuple(
                    "" if r.get(f"stratum_{i}") is None else str(r[f"stratum_{i}"])
                    for i in range(1, 6)
                )
            ): (
                f"n {r.get('count_value')}, median {r.get('median_value')}, "
                f"p10-p90 {r.get('p10_value')}-{r.get('p90_value')}"
            )
            for r in rows
        }

    sa_, sb = summary(a), summary(b)
    keys = list(dict.fromkeys([*sa_, *sb]))[:6]
    return Analysis(
        aid,
        name,
        category,
        len(set(sa_) | set(sb)),
        None,
        sum(int(r.get("count_value") or 0) for r in a),
        sum(int(r.get("count_value") or 0) for r in b),
        [(f"{k}: {sa_.get(k, '-')}", 0.0, 0.0) for k in keys],
        "distribution analysis: side by side, not scored; synthetic "
        + "; ".join(f"{k}: {sb.get(k, '-')}" for k in keys),
    )


def compare_sides(
    source: tuple[Engine, str | None],
    synthetic: tuple[Engine, str | None],
    work: Path | None = None,
    tables: list[str] | None = None,
    cdm_version: str = "5.4",
    halves: bool = True,
) -> AchillesComparison:
    """Run Achilles on both sides (scratch DuckDB files under ``work``, removed afterwards)
    and compare them. ``tables`` limits both sides to those OMOP tables (the project's);
    ``halves`` also runs it on the two halves of the source, for the baseline per analysis."""
    scratch = Path(tempfile.mkdtemp(prefix="achilles-", dir=work))
    split = None
    try:
        src = run_side(*source, scratch / "source", tables, cdm_version)
        syn = run_side(*synthetic, scratch / "synthetic", tables, cdm_version)
        if halves:
            split = tuple(
                run_side(*source, scratch / f"half{h}", tables, cdm_version, half=h)[0]
                for h in (0, 1)
            )
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(scratch)
    return AchillesComparison(
        analyses=compare(src[:2], syn[:2], halves=split),
        failed={"source": src[2], "synthetic": syn[2]},
        ran={"source": src[3], "synthetic": syn[3]},
        cdm_version=cdm_version,
    )


# ---------------------------------------------------------------------------------------------
# The report


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def achilles_html(project: str, comparison: AchillesComparison | None, created_at: str) -> str:
    """The trusted-environment page: per analysis its agreement and the two distributions side
    by side, worst first; or, without the extra, what to install."""
    title = f"OHDSI Achilles, source against synthetic: project {escape(project)}"
    if comparison is None:
        body = (
            f"<p>Achilles was not run: the optional extra is not installed "
            f"(<code>{escape(INSTALL)}</code> brings duckcdm).</p>"
        )
    else:
        body = _comparison_body(comparison)
    css = """body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
"""
    return html_page(
        title,
        css,
        f"""<p><strong>Trusted environment only: Achilles' counts on the source are exact counts of real
patients and are not for publication.</strong></p>
<h1>{title}</h1>
<p>Created {escape(created_at)} by synth_pipeline {escape(GENERATOR_VERSION)}. Every Achilles
analysis the ATLAS data-source reports read, run on the source and on the synthetic tables
(OHDSI Achilles' SQL on DuckDB, through duckcdm). Agreement = 1 - total variation distance
between the two distributions of counts over the analysis's strata (1: the same shape).
Analyses with one stratum (totals) always agree and show their counts; distribution analyses
(averages and percentiles) are shown side by side, not scored. Worst first. <em>Source half
against half</em> is the agreement between the source's persons with even and with odd ids: what
sampling alone costs at half the size, a floor for what independently drawn synthetic data can be
expected to reach on sparse analyses.</p>
{body}
""",
    )


def _comparison_body(comparison: AchillesComparison) -> str:
    """The medians, the failures and the table of analyses, worst first."""
    failures = "".join(
        f"<li>{escape(side)}: analysis {aid}: {escape(err)}</li>"
        for side, items in comparison.failed.items()
        for aid, err in items
    )
    rows = "".join(_analysis_row(a) for a in comparison.worst_first())
    return f"""<p>Median agreement over {len(comparison.scored)} scored analyses:
<strong>{_fmt(comparison.median_agreement)}</strong> (between two halves of the source:
{_fmt(comparison.median_halves)}). Analyses run: source {comparison.ran.get("source")},
synthetic {comparison.ran.get("synthetic")}; failed: {sum(len(v) for v in comparison.failed.values())}.</p>
{"<ul>" + failures + "</ul>" if failures else ""}
<table>
<thead><tr><th>id</th><th>analysis</th><th>category</th><th>agreement</th>
<th>source half against half</th><th>strata</th>
<th>source count</th><th>synthetic count</th><th>note, strata side by side</th></tr></thead>
<tbody>{rows}</tbody>
</table>"""


def _analysis_row(a: Analysis) -> str:
    """One analysis: its figures, and its largest strata side by side under a fold."""
    strata = (
        "".join(
            f"<tr><td>{escape(label)}</td><td>{p:.3f}</td><td>{q:.3f}</td></tr>"
            for label, p, q in a.rows
        )
        if a.agreement is not None
        else "".join(f"<tr><td colspan=3>{escape(label)}</td></tr>" for label, _, _ in a.rows)
    )
    return (
        f"<tr><td>{a.analysis_id}</td><td>{escape(a.name)}</td><td>{escape(a.category)}</td>"
        f"<td>{_fmt(a.agreement)}</td><td>{_fmt(a.halves)}</td><td>{a.strata}</td><td>{a.source_total}</td>"
        f"<td>{a.synthetic_total}</td><td>{escape(a.note)}"
        f"<details><summary>strata</summary><table><tr><th>stratum</th><th>source share</th>"
        f"<th>synthetic share</th></tr>{strata}</table></details></td></tr>"
    )


def write_report(
    folder: Path, project: str, comparison: AchillesComparison | None, created_at: str
) -> Path:
    """achilles.html and achilles.json in ``folder`` (the trusted report's); the page's path."""
    from .files import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "achilles.html"
    atomic_write_text(path, achilles_html(project, comparison, created_at))
    data = comparison.to_json() if comparison else {"installed": False, "install": INSTALL}
    atomic_write_text(folder / "achilles.json", json.dumps(data, indent=1, default=str))
    return path
