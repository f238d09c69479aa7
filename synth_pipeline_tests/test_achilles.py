"""OHDSI Achilles in the trusted fidelity report (core/achilles.py, the ohdsi extra).

Every analysis runs on both sides with no failure and is scored; a side compared with itself
agrees everywhere, and a deliberately different table (every person's gender made unknown,
births moved 200 years) is caught by the analyses that read it. Without duckcdm the page says what to
install and runs nothing.
"""

from __future__ import annotations

import html
import json
import shutil
import sys

import pytest
import sqlalchemy as sa

from synth_pipeline.core import achilles
from synth_pipeline.core.database import open_destination, open_source

from . import core_path
from . import omop_extracts as ox
from .extract_fixtures import postgres_extracts, postgres_schemas, sqlite_extracts  # noqa: F401

SPEC = ox.ExtractSpec(name="achilles", cdm_version="5.4", persons=60, seed=5)
UNKNOWN = 8551  # a gender concept the extract does not use


@pytest.fixture(scope="module")
def sides(sqlite_extracts, tmp_path_factory):  # noqa: F811
    facts = sqlite_extracts(SPEC)
    tmp = tmp_path_factory.mktemp("achilles")
    files = core_path.draft_and_approve(facts.url, tmp / "configuration-files")
    destination = f"sqlite:///{tmp / 'synthetic.sqlite'}"
    written = core_path.generate(files, destination)
    return facts, destination, sorted(written), tmp


def test_every_analysis_runs_on_both_sides_and_is_scored(sides):
    facts, destination, tables, tmp = sides
    source, synthetic = open_source(facts.url), open_source(destination)
    try:
        c = achilles.compare_sides((source, None), (synthetic, None), tmp, tables, "5.4")
    finally:
        source.dispose()
        synthetic.dispose()
    from duckcdm.achilles import available

    assert c.failed == {"source": [], "synthetic": []}
    assert c.ran == {"source": len(available()), "synthetic": len(available())}
    ids = {a.analysis_id for a in c.analyses}
    assert {1, 2, 3, 101, 108, 109, 200, 400, 700} <= ids
    assert len(c.scored) >= 60
    assert all(0.0 <= a.agreement <= 1.0 for a in c.scored)
    # the baseline: two halves of the source, scored the same way
    assert sum(a.halves is not None for a in c.scored) >= 60
    assert all(0.0 <= a.halves <= 1.0 for a in c.scored if a.halves is not None)
    assert c.median_halves is not None
    assert c.median_agreement is not None and 0.0 < c.median_agreement <= 1.0
    order = [a.agreement for a in c.worst_first() if a.agreement is not None]
    assert order == sorted(order)
    page = achilles.write_report(tmp / "report", "p", c, "now").read_text()
    assert "Trusted environment only" in page and "Median agreement" in page
    saved = json.loads((tmp / "report" / "achilles.json").read_text())
    assert saved["median_agreement"] == c.median_agreement
    assert not list(tmp.glob("achilles-*")), "the scratch DuckDB files are removed"


def test_a_side_agrees_with_itself(sides):
    facts, _destination, tables, tmp = sides
    source = open_source(facts.url)
    try:
        c = achilles.compare_sides((source, None), (source, None), tmp, tables, "5.4", halves=False)
    finally:
        source.dispose()
    assert [a.analysis_id for a in c.scored if a.agreement != 1.0] == []
    assert c.median_agreement == 1.0


def test_a_deliberately_different_table_scores_low(sides):
    """Every person's gender made unknown and births moved 200 years: the analyses of gender and
    year of birth must see it (a test where agreement is low can fail)."""
    facts, _destination, tables, tmp = sides
    changed = tmp / "changed.sqlite"
    shutil.copy(facts.url.removeprefix("sqlite:///"), changed)
    engine = open_destination(f"sqlite:///{changed}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE person SET gender_concept_id = {UNKNOWN}, year_of_birth = year_of_birth - 200"
            )
        )
    source = open_source(facts.url)
    try:
        c = achilles.compare_sides((source, None), (engine, None), tmp, tables, "5.4", halves=False)
    finally:
        source.dispose()
        engine.dispose()
    score = {a.analysis_id: a.agreement for a in c.analyses}
    assert score[2] == 0.0  # persons by gender: no gender in common
    assert score[3] == 0.0  # persons by year of birth: no year in common
    assert score[101] is not None and score[101] < 0.2  # age at first observation
    assert c.worst_first()[0].agreement == 0.0
    # every analysis by gender or age (decile) sees it too
    assert sum(a.agreement < 1.0 for a in c.scored) >= 10


def test_without_the_extra_the_report_says_so_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "duckcdm", None)  # import duckcdm now fails
    monkeypatch.setitem(sys.modules, "duckcdm.achilles", None)
    assert not achilles.available()
    page = achilles.write_report(tmp_path, "p", None, "now").read_text()
    assert "not installed" in page and html.escape(achilles.INSTALL) in page
    assert json.loads((tmp_path / "achilles.json").read_text())["installed"] is False


def test_a_postgresql_side_reads_the_same_as_its_sqlite_twin(sides, postgres_extracts, tmp_path):  # noqa: F811
    """The same extract built in PostgreSQL and in SQLite gives the same Achilles results, the
    halves (even and odd person ids) included."""
    facts, _destination, tables, _tmp = sides
    pg = postgres_extracts(SPEC)
    lite, server = open_source(facts.url), open_source(pg.url)
    try:
        c = achilles.compare_sides((lite, None), (server, pg.schema), tmp_path, tables, "5.4")
    finally:
        lite.dispose()
        server.dispose()
    assert c.failed == {"source": [], "synthetic": []}
    assert [a.analysis_id for a in c.scored if a.agreement != 1.0] == []
    assert sum(a.halves is not None for a in c.scored) >= 60
