"""The Dagster UI in a real browser: what a data engineer does first, end to end.

dagster-webserver runs on a free loopback port with the checkout's workspace.yaml, its own
instance, two projects (a copy of the approved demo configs, and a second project made from
them) and the demo extract in SQLite. Headless Chromium (Debian's package) opens the asset
lineage of each project, materialises the `person` partition of its four table steps from the
Materialize dialog, and the test reads the run's success, the partition's state and every
check from the pages, then from the instance, the destinations and the work folder: the second
project's run leaves the first's files and tables as they were. Screenshots of each page are
kept under SYNTH_TEST_ARTEFACTS (default .work/test-artefacts/).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from playwright.sync_api import Page, expect, sync_playwright

from synth_pipeline.projects import partitions_name

from .browser_helpers import (
    CHECKS,
    CHROMIUM_FLAGS,
    FIVE_ASSETS,
    TABLE_STEPS,
    artefact_dir,
    chromium_executable,
    filter_assets,
    pipeline_env,
    screenshot,
    start_webserver,
    write_instance_yaml,
)

PROJECTS = ["demo", "second"]  # the second is made from the demo's approved configs
PARTITION = "person"  # its parents (location, care_site, provider) are empty in the demo
OTHER_PARTITION = "cdm_source"  # present, never picked: it must stay missing
RUN_TIMEOUT_MS = 180_000  # the run itself takes about 15 s; the machine is shared
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture
def ui(tmp_path, config_root, demo_sqlite_url):
    """A running webserver on a private instance serving two projects, each holding the
    partitions person and cdm_source and writing its own destination (no destination URL set:
    each project's SQLite file under the work folder); stopped by its pid afterwards."""
    second = config_root / PROJECTS[1]
    shutil.copytree(config_root / "demo", second)
    text = (second / "project.yaml").read_text()
    (second / "project.yaml").write_text(text.replace("project: demo", f"project: {second.name}"))
    home = tmp_path / "dagster_home"
    write_instance_yaml(home)
    instance = dg.DagsterInstance.from_config(str(home))
    for project in PROJECTS:
        instance.add_dynamic_partitions(partitions_name(project), [PARTITION, OTHER_PARTITION])

    work = tmp_path / "work"
    env = pipeline_env(home, work, config_root, demo_sqlite_url)
    server = start_webserver(env, tmp_path / "webserver.log")
    try:
        yield {
            "server": server,
            "instance": instance,
            "work": work,
            "config_root": config_root,
        }
    finally:
        server.stop()
        instance.dispose()


def _shot(page: Page, name: str) -> Path:
    return screenshot(page, f"test_ui_browser-{name}")


def _open_lineage_and_materialise(page: Page, base: str, project: str) -> str:
    """The project's asset group shows its five steps; materialise `person` of the four table
    steps from the Materialize dialog. Returns the launched run's id, read from the graph."""
    page.goto(f"{base}/asset-groups")
    graph = page.locator("body")
    for p in PROJECTS:  # one group per project
        expect(graph).to_contain_text(p, timeout=PAGE_TIMEOUT_MS)
    filter_assets(page, f"group:{project}")
    for name in FIVE_ASSETS:
        expect(graph).to_contain_text(name, timeout=PAGE_TIMEOUT_MS)
    expect(page.get_by_role("button", name=re.compile(r"Materialize all \(5\)"))).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    _shot(page, f"{project}-1-asset-lineage")

    # csv_bundle is not partitioned: with it in the selection the UI would ask for a backfill,
    # which needs the daemon. Filter the graph to the four partitioned steps.
    page.goto(f"{base}/asset-groups")
    filter_assets(page, f"group:{project} and not kind:csv")
    page.get_by_role("button", name=re.compile(r"Materialize all \(4\)")).click(
        timeout=PAGE_TIMEOUT_MS
    )

    # the Materialize dialog (the partition list below it is a dialog too, without the title)
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 4 assets")
    expect(dialog).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    dialog.get_by_text("Select a partition or create one").click()
    options = page.get_by_role("menuitem")
    expect(options.filter(has_text=OTHER_PARTITION)).to_be_visible()
    pick = options.filter(has_text=PARTITION)
    expect(pick).to_have_count(1)
    pick.click()
    dialog.get_by_text("Launch runs to materialize 4 assets").click()  # closes the list
    expect(dialog).to_contain_text("1 partition")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    _shot(page, f"{project}-2-materialize-dialog")
    launch.click()

    # each node of the graph links to the run materialising it
    run_link = page.locator('a[href^="/runs/"]').first
    expect(run_link).to_be_attached(timeout=PAGE_TIMEOUT_MS)
    href = run_link.get_attribute("href") or ""
    match = re.fullmatch(r"/runs/([0-9a-f-]{36})", href)
    assert match, f"the graph links to {href!r}, not to a run"
    return match.group(1)


def _wait_for_run(page: Page, base: str, run_id: str) -> str:
    """The run's page, live, until the run ends; returns its status as the page shows it."""
    page.goto(f"{base}/runs/{run_id}")
    ended = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(ended).to_be_visible(timeout=RUN_TIMEOUT_MS)
    return ended.inner_text().strip()


def _files_of(work: Path, project: str) -> dict[str, str]:
    """Every file the project has under the work folder (state, destination), by its digest."""
    found = [*(work / project).rglob("*"), *(work / "state" / project).rglob("*")]
    return {
        str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in found
        if p.is_file()
    }


def _check_project_pages(page: Page, base: str, project: str, run_id: str) -> None:
    """The project's run, its partition's state and every check of every step, passed, for
    the partition it checked."""
    header = page.locator("body")
    expect(header).to_contain_text(f"partition: {PARTITION}")
    expect(header).to_contain_text("4 assets")
    expect(header).to_contain_text(f"{sum(len(c) for c in CHECKS.values())} checks")

    # the partition's state: person materialised, cdm_source still missing
    page.goto(f"{base}/assets/{project}/synthetic_table?view=partitions&partition={PARTITION}")
    body = page.locator("body")
    for text in ("Materialized (1)", "Missing (1)", "Failed (0)", run_id[:8]):
        expect(body).to_contain_text(text)
    _shot(page, f"{project}-4-partitions")

    # every check of every step, passed, on its asset's Checks tab
    for asset, names in CHECKS.items():
        page.goto(f"{base}/assets/{project}/{asset}?view=checks")
        expect(page.locator("body")).to_contain_text(f"Checks ({len(names)})")
        for name in names:
            row = page.get_by_title(name, exact=True).locator("xpath=..")
            expect(row).to_contain_text("Succeeded")
        if asset == "synthetic_table":
            _shot(page, f"{project}-5-checks")
    # each check's results per partition: person's passed, cdm_source's not yet run
    for asset, name in (("synthetic_table", "rules_hold"), ("reviewed_config", "config_approved")):
        page.goto(f"{base}/assets/{project}/{asset}?view=checks&checkDetail={name}")
        # the check's own tabs (Overview, Execution history, ..., Partitions), not the asset's
        tabs = page.get_by_role("tablist").filter(has_text="Execution history")
        tabs.get_by_role("tab", name="Partitions").click()
        body = page.locator("body")
        expect(body).to_contain_text("2 Partitions Selected")
        for text in ("Passed (1)", "Missing (1)", "Failed (0)"):
            expect(body).to_contain_text(text)
        expect(body).to_contain_text(PARTITION)
        expect(body).to_contain_text(OTHER_PARTITION)
        _shot(page, f"{project}-6-{name}-by-partition")

    # the lineage after the run: the project's four table steps hold one partition of two
    page.goto(f"{base}/asset-groups")
    filter_assets(page, f"group:{project} and not kind:csv")
    page.keyboard.press("Escape")  # closes the filter's suggestions
    expect(page.get_by_text("50% filled")).to_have_count(len(TABLE_STEPS))
    n = len(CHECKS["synthetic_table"])
    expect(page.get_by_text(f"{n} / {n} Passed")).to_have_count(1)  # synthetic_table
    expect(page.get_by_text("1 / 1 Passed")).to_have_count(3)  # the other steps
    _shot(page, f"{project}-7-table-steps-after")


@pytest.mark.browser
@pytest.mark.slow
def test_materialise_two_projects_from_the_ui(ui):
    chromium = chromium_executable()
    assert chromium, (
        "Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)"
    )
    base = ui["server"].url
    instance: dg.DagsterInstance = ui["instance"]
    work: Path = ui["work"]
    run_ids: dict[str, str] = {}
    before_second: dict[str, str] = {}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        expect.set_options(timeout=PAGE_TIMEOUT_MS)  # pages load slowly on a busy machine
        try:
            for project in PROJECTS:
                if project != PROJECTS[0]:
                    before_second = _files_of(work, PROJECTS[0])
                run_id = _open_lineage_and_materialise(page, base, project)
                run_ids[project] = run_id
                status = _wait_for_run(page, base, run_id)
                _shot(page, f"{project}-3-run")
                assert status == "Success", (
                    f"run {run_id} ended as {status}; webserver log:\n{ui['server'].log_tail()}"
                )
                _check_project_pages(page, base, project, run_id)
        except Exception:
            _shot(page, "failure")
            print(f"webserver log:\n{ui['server'].log_tail()}")
            raise
        finally:
            browser.close()

    # the second project's run left the first's files and tables as they were
    assert before_second and _files_of(work, PROJECTS[0]) == before_second
    for project in PROJECTS:
        run_id = run_ids[project]
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == PARTITION
        # the run materialised its own project's keys and nothing else
        keys = {
            e.dagster_event.asset_key
            for e in instance.all_logs(run_id)
            if e.is_dagster_event and e.dagster_event.is_step_materialization
        }
        assert keys == {dg.AssetKey([project, a]) for a in TABLE_STEPS}, keys
        for asset in TABLE_STEPS:
            key = dg.AssetKey([project, asset])
            assert instance.get_materialized_partitions(key) == {PARTITION}, asset
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.run_id == run_id, asset
        bundle = dg.AssetKey([project, "csv_bundle"])
        assert instance.get_latest_materialization_event(bundle) is None
        # each check result belongs to the partition it checked, and to its project's run
        for asset, names in CHECKS.items():
            for name in names:
                key = dg.AssetCheckKey(dg.AssetKey([project, asset]), name)
                history = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
                assert {(r.partition, r.run_id) for r in history} == {(PARTITION, run_id)}, (
                    project,
                    asset,
                    name,
                )
        # each project's state and destination are its own
        assert (work / "state" / project / "synthetic_table" / f"{PARTITION}.json").exists()
        cfg = yaml.safe_load((ui["config_root"] / project / f"{PARTITION}.yaml").read_text())
        engine = sa.create_engine(f"sqlite:///{work / project / 'synthetic.sqlite'}")
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {PARTITION}")).scalar_one()
        finally:
            engine.dispose()
        assert rows == cfg["rows"] > 0
    assert not (work / "state" / "synthetic_table").exists()


def test_artefact_dir_follows_the_variable(tmp_path, monkeypatch):
    target = tmp_path / "artefacts"
    monkeypatch.setenv("SYNTH_TEST_ARTEFACTS", str(target))
    assert artefact_dir() == target.resolve() and target.is_dir()
    monkeypatch.delenv("SYNTH_TEST_ARTEFACTS")
    assert artefact_dir().parts[-2:] == (".work", "test-artefacts")
