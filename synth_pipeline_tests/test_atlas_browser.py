"""The synthetic demo opened in ATLAS, as docs/atlas.md says.

The session's demo run (the `demo_run` fixture, no run of its own) left a bundle with a
`parquet/` folder. The three duckcdm commands of docs/atlas.md take it to ATLAS: `duckcdm views
--materialize` (OMOP tables from the Parquet files), `duckcdm achilles` (the results the
data-source reports read), `duckcdm serve` (ATLAS 3.0 and its WebAPI, shipped in the duckcdm
wheel: nothing is fetched from the network). Headless Chromium (Debian's package) opens ATLAS,
closes its licence notice, goes to Data Sources, and reads the dashboard and the Person report of
the synthetic source. The number of people the dashboard shows must equal the rows of the bundle's
person Parquet file, read here with pyarrow (so a lost, doubled or misread person fails), and the
Person report's year-of-birth chart must be drawn from the file's counts per year of birth (the
WebAPI answer the page itself received; the chart is a canvas).
Screenshots go where the other browser test keeps its own (SYNTH_TEST_ARTEFACTS, default
.work/test-artefacts/).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .browser_helpers import CHROMIUM_FLAGS, chromium_executable, screenshot, start_atlas

pytest.importorskip(
    "duckcdm.webapi.app", reason="the ohdsi extra (duckcdm[server]) is not installed"
)

SOURCE_KEY = "SYNTHETIC"
PAGE_TIMEOUT_MS = 60_000
SMALL_CELL = 5


def _duckcdm(*args: str, log: Path) -> None:
    exe = Path(sys.executable).parent / "duckcdm"
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"duckcdm {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


@pytest.fixture
def atlas(demo_run, tmp_path):
    """The demo bundle's Parquet folder in a DuckDB file with its Achilles results, served by
    `duckcdm serve` on a free loopback port; stopped by its pid afterwards."""
    assert demo_run["code"] == 0
    parquet = demo_run["out"] / "bundle" / "parquet"
    assert (parquet / "person").is_dir(), f"{parquet}: the demo bundle has no Parquet folder"
    db = tmp_path / "synthetic.duckdb"
    _duckcdm("views", str(parquet), str(db), "--materialize", log=tmp_path / "views.log")
    _duckcdm("achilles", str(db), log=tmp_path / "achilles.log")
    server = start_atlas({SOURCE_KEY: db}, tmp_path / "store.duckdb", tmp_path / "serve.log")
    try:
        yield {"server": server, "parquet": parquet}
    finally:
        server.stop()


def _shot(page: Page, name: str) -> Path:
    return screenshot(page, f"test_atlas_browser-{name}")


@pytest.mark.browser
@pytest.mark.slow
def test_atlas_data_source_report_shows_the_synthetic_persons(atlas):
    chromium = chromium_executable()
    assert chromium, (
        "Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)"
    )
    person = pq.read_table(atlas["parquet"] / "person", columns=["year_of_birth"])
    persons = person.num_rows
    by_year = {
        int(r["values"]): int(r["counts"])
        for r in pc.value_counts(pc.drop_null(person["year_of_birth"])).to_pylist()
    }
    assert persons > 0 and len(by_year) > 1

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        expect.set_options(timeout=PAGE_TIMEOUT_MS)
        try:
            page.goto(f"{atlas['server'].url}/")
            # ATLAS opens with a vocabulary licence notice over the page: closed, not accepted
            notice = page.get_by_role("dialog").filter(has_text="License Agreement")
            expect(notice).to_be_visible()
            notice.get_by_role("button").first.click()  # the dialog's close button
            expect(notice).to_be_hidden()

            page.get_by_role("link", name="Data Sources").first.click()
            main = page.locator("main")
            expect(main).to_contain_text(f"{SOURCE_KEY} — Dashboard")
            summary = main.locator("tr").filter(has_text="Number of People")
            expect(summary).to_have_text(re.compile(rf"Number of People\s*{persons:,}\s*"))
            expect(main).to_contain_text("Age at First Observation")
            _shot(page, "1-dashboard")

            # the Person report: the year-of-birth counts the browser received are the file's
            with page.expect_response(
                lambda r: f"/WebAPI/cdmresults/{SOURCE_KEY}/person" in r.url
            ) as answer:
                main.get_by_text("Person", exact=True).first.click()
            expect(main).to_contain_text(f"{SOURCE_KEY} — Person")
            chart = main.locator(".chart-section").filter(
                has=page.get_by_text("Year of Birth", exact=True)
            )
            expect(chart.locator("canvas").first).to_be_visible()
            _shot(page, "2-person")
            report = answer.value.json()
        except Exception:
            _shot(page, "failure")
            print(f"duckcdm serve log:\n{atlas['server'].log_tail()}")
            raise
        finally:
            browser.close()

    start = report["yearOfBirthStats"][0]["minValue"]
    shown = {start + int(b["intervalIndex"]): int(b["countValue"]) for b in report["yearOfBirth"]}
    # Achilles drops cells of SMALL_CELL persons or fewer (`duckcdm achilles`'s default)
    assert shown == {y: n for y, n in by_year.items() if n > SMALL_CELL}
