"""A backfill of several tables launched from the Dagster UI, as a data engineer launches one.

dagster-webserver serves the demo project on an instance of the test's own, with the project's
own run coordinator (Dagster's default: runs queue until the daemon takes them) and the demo
extract in SQLite. Headless Chromium switches off the two sensors the project declares RUNNING
(the automation sensor and the config-file sensor), so that whatever their conditions decide,
every run on the instance is the backfill's (the test asserts it; in one trial with them on, no
other run came in the 100 s after the backfill). It selects the four table steps in the asset
graph, picks three of the four table partitions in the Materialize dialog and clicks "Launch
backfill" (the dialog warns that the backfill daemon is not running yet). Then `dagster-daemon
run` starts: it takes the backfill on its first iteration, a few seconds later, and looks again
every 30 s; the test waits on the backfill's page until it ends.

What Dagster 1.13 does with it, as observed here: the assets have no backfill policy, so the
backfill launches one run per selected partition, each running the four steps of that table
and nothing else (tags ``dagster/backfill`` and ``dagster/partition``), in the run's own process
(the definitions' default executor). Every step of a table is materialised once, in its table's
run, and every check reports once for its table. The runs of a backfill start together, in no
set order (the queued run coordinator launched all three at once), so a child table picked
with a parent that has rows can run its ``references_resolve`` check before the parent is
written and fail (observation_period beside person did, on an empty destination); the test
picks ``person`` and its parents ``location`` and ``care_site``, which are empty in the demo.
A run whose blocking check fails still leaves its materialisation, and the backfill's page then
says "Succeeded" for the partition; the test reads each run's own status as well.

The pages must show, for each selected table: its run, successful, on the backfill's Runs tab;
for each step, one materialisation of that table in the asset's event list, made by that
table's run; for each check of each step, one passed evaluation of that table in the check's
execution history. The unselected table (observation_period) must have none of these and show
as missing on synthetic_table's partitions view (Materialized (3), Missing (1)), and the
lineage shows each step three quarters filled. The instance's event log, read through Dagster's
public API, must say the same (``backfill_assertions.backfill_problems``); the companion tests
below show that it reports a missing table, a failed check and a run over several tables.
Screenshots go to SYNTH_TEST_ARTEFACTS (default .work/test-artefacts/), test_ui_backfill-*.png.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from synth_pipeline.projects import partitions_name

from .backfill_assertions import backfill_problems
from .browser_helpers import (
    CHECKS,
    CHROMIUM_FLAGS,
    TABLE_STEPS,
    chromium_executable,
    filter_assets,
    pipeline_env,
    screenshot,
    start_daemon,
    start_webserver,
    write_instance_yaml,
)

PROJECT = "demo"
SELECTED = ["person", "location", "care_site"]  # person and two of its parents (empty in the demo)
UNSELECTED = "observation_period"  # a child of person with rows: present, never picked
BACKFILL_TIMEOUT_MS = 300_000  # launch to end took about 45 s here, on a busy 2-core machine
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture
def backfill_ui(tmp_path, config_root, demo_sqlite_url):
    """A running webserver on a private instance (queued runs) serving the demo project with
    four table partitions, and a way to start the daemon; both stopped by their pids."""
    home = tmp_path / "dagster_home"
    write_instance_yaml(home, launch_at_once=False)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions(partitions_name(PROJECT), [*SELECTED, UNSELECTED])
    env = pipeline_env(home, tmp_path / "work", config_root, demo_sqlite_url)
    server = start_webserver(env, tmp_path / "webserver.log")
    daemons = []

    def daemon():
        daemons.append(start_daemon(env, tmp_path / "daemon.log"))
        return daemons[-1]

    try:
        yield {"server": server, "instance": instance, "start_daemon": daemon}
    finally:
        for d in daemons:
            d.stop()
        server.stop()
        instance.dispose()


def _shot(page: Page, name: str) -> Path:
    return screenshot(page, f"test_ui_backfill-{name}")


def _stop_running_sensors(page: Page, base: str) -> None:
    """The Automation page: switch off every sensor that is on (the two declared RUNNING)."""
    page.goto(f"{base}/automation")
    expect(page.locator("body")).to_contain_text(f"{PROJECT}__automation")
    on = page.get_by_role("checkbox", checked=True)
    expect(on).to_have_count(2)
    for left in (1, 0):  # one at a time: the list is redrawn after each
        on.first.locator("xpath=..").click()  # the switch's input is hidden under its label
        expect(on).to_have_count(left)
    _shot(page, "1-sensors-stopped")


def _launch_backfill(page: Page, base: str) -> str:
    """The four table steps selected in the asset graph, three partitions picked in the
    Materialize dialog, "Launch backfill" clicked; returns the backfill's id from the toast."""
    page.goto(f"{base}/asset-groups")
    filter_assets(page, f"group:{PROJECT} and not kind:csv")
    page.get_by_role("button", name=re.compile(r"Materialize all \(4\)")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 4 assets")
    expect(dialog).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    options = page.get_by_role("menuitem")
    expect(options.filter(has_text=UNSELECTED)).to_be_visible()
    for table in SELECTED:
        options.filter(has_text=table).click()  # no table name holds another here
    dialog.get_by_text("Launch runs to materialize 4 assets").click()  # closes the list
    expect(dialog).to_contain_text(f"{len(SELECTED)} partitions")
    launch = dialog.get_by_role("button", name="Launch backfill")
    expect(launch).to_be_enabled()
    _shot(page, "2-backfill-dialog")
    launch.click()
    link = page.locator('a[href^="/runs/b/"]').first
    expect(link).to_be_attached()
    match = re.fullmatch(r"/runs/b/([a-z0-9]+)", link.get_attribute("href") or "")
    assert match, f"the toast links to {link.get_attribute('href')!r}, not to a backfill"
    return match.group(1)


def _wait_for_backfill(page: Page, base: str, backfill_id: str) -> str:
    """The backfill's page, live, until the backfill ends; returns its status as shown."""
    page.goto(f"{base}/runs/b/{backfill_id}")
    status = page.get_by_text("Status", exact=True).locator("xpath=..")
    ended = re.compile(r"Status\s*(Succeeded|Failed|Failure|Canceled|Completed.*)\s*$")
    expect(status).to_have_text(ended, timeout=BACKFILL_TIMEOUT_MS)
    _shot(page, "3-backfill-overview")
    return status.inner_text().replace("Status", "").strip()


def _backfill_runs(page: Page) -> dict[str, tuple[str, str]]:
    """The backfill's Runs tab: each run's partition -> (its id's first 8 characters, status)."""
    page.get_by_role("tab", name="Runs").click()
    links = page.locator('a[href^="/runs/"]').filter(has_text=re.compile(r"^[0-9a-f]{8}$"))
    expect(links).to_have_count(len(SELECTED))
    rows = links.locator("xpath=ancestor::*[contains(., 'Manually launched')][1]")
    runs = {}
    for text in rows.all_inner_texts():
        run = re.search(r"\b([0-9a-f]{8})\b", text)
        table = re.search(r"partition: (\w+)", text)
        status = re.search(r"\b(Success|Failure|Canceled|Started|Queued)\b", text)
        assert run and table and status, text
        assert table.group(1) not in runs, f"two runs for {table.group(1)}"
        runs[table.group(1)] = (run.group(1), status.group(1))
    _shot(page, "4-backfill-runs")
    return runs


def _materialisations(page: Page, base: str, step: str) -> dict[str, str]:
    """The step's Events tab: each materialisation's partition -> the run that made it (its
    full id, from the link), read by selecting each event of the list in turn."""
    page.goto(f"{base}/assets/{PROJECT}/{step}?view=events")
    entries = page.get_by_role("img", name="partition", exact=True).locator("xpath=..")
    expect(entries.first).to_be_visible()
    found: dict[str, str] = {}
    for i in range(entries.count()):
        entries.nth(i).click()
        detail = page.get_by_text("materialized in run").locator("xpath=..")
        expect(detail).to_contain_text(entries.nth(i).inner_text().strip())
        table = detail.locator('a[href*="partition="]').inner_text().strip()
        href = detail.locator('a[href^="/runs/"]').get_attribute("href") or ""
        assert table not in found, f"{step}: two materialisations of {table}"
        found[table] = re.sub(r"^/runs/([0-9a-f-]{36}).*$", r"\1", href)
    if step == "synthetic_table":
        _shot(page, "5-synthetic_table-events")
    return found


def _check_histories(page: Page, base: str, step: str) -> dict[str, list[tuple[str, str]]]:
    """Each check of the step, chosen in turn on the asset's Checks tab: (result, partition) of
    every evaluation its Execution history lists."""
    page.goto(f"{base}/assets/{PROJECT}/{step}?view=checks")
    found = {}
    for check in CHECKS[step]:
        page.get_by_title(check, exact=True).click()
        expect(page).to_have_url(re.compile(rf"checkDetail={check}\b"))
        tabs = page.get_by_role("tablist").filter(has_text="Execution history")
        tabs.get_by_role("tab", name="Execution history").click()
        rows = page.locator("tbody tr")
        expect(rows.first).to_contain_text(re.compile("Passed|Failed"))
        found[check] = []
        for cells in (r.locator("td").all_inner_texts() for r in rows.all()):
            table = next((c.strip() for c in cells if c.strip() in (*SELECTED, UNSELECTED)), "")
            found[check].append((cells[0].strip(), table))
        if check == "rules_hold":
            _shot(page, "6-rules_hold-history")
    return found


def _pages_of(page: Page, base: str, backfill_id: str) -> dict[str, str]:
    """Everything the pages say about the backfill; returns its runs' ids by table."""
    status = _wait_for_backfill(page, base, backfill_id)
    runs = _backfill_runs(page)
    assert status == "Succeeded", status
    assert sorted(runs) == sorted(SELECTED), runs
    assert {s for _, s in runs.values()} == {"Success"}, runs
    run_ids: dict[str, str] = {}
    for step in TABLE_STEPS:
        made = _materialisations(page, base, step)
        assert sorted(made) == sorted(SELECTED), (step, made)  # one each, none for UNSELECTED
        for table, run_id in made.items():
            assert run_id.startswith(runs[table][0]), (step, table, run_id, runs)
            assert run_ids.setdefault(table, run_id) == run_id, (step, table)
        for check, history in _check_histories(page, base, step).items():
            assert sorted(history) == sorted(("Passed", t) for t in SELECTED), (check, history)
    # the unselected table, as the partitions view shows it: missing, never materialised
    page.goto(f"{base}/assets/{PROJECT}/synthetic_table?view=partitions&partition={UNSELECTED}")
    body = page.locator("body")
    for text in ("Materialized (3)", "Missing (1)", "Failed (0)", "View all historical events (0)"):
        expect(body).to_contain_text(text)
    _shot(page, f"7-{UNSELECTED}-missing")
    # the lineage: each of the four steps holds three of its four partitions
    page.goto(f"{base}/asset-groups")
    filter_assets(page, f"group:{PROJECT} and not kind:csv")
    page.keyboard.press("Escape")
    expect(page.get_by_text("75% filled")).to_have_count(len(TABLE_STEPS))
    _shot(page, "8-table-steps-after")
    return run_ids


@pytest.mark.browser
@pytest.mark.slow
def test_backfill_from_the_ui_materialises_each_table_on_its_own(backfill_ui):
    chromium = chromium_executable()
    assert chromium, "Debian's chromium is not installed (apt-get install chromium)"
    base = backfill_ui["server"].url
    instance: dg.DagsterInstance = backfill_ui["instance"]
    daemon = None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        expect.set_options(timeout=PAGE_TIMEOUT_MS)
        try:
            _stop_running_sensors(page, base)
            backfill_id = _launch_backfill(page, base)
            daemon = backfill_ui["start_daemon"]()
            run_ids = _pages_of(page, base, backfill_id)
        except Exception:
            _shot(page, "failure")
            print(f"webserver log:\n{backfill_ui['server'].log_tail()}")
            if daemon:
                print(f"daemon log:\n{daemon.log_tail()}")
            raise
        finally:
            browser.close()

    # the event log says what the pages said
    checks = {dg.AssetKey([PROJECT, s]): CHECKS[s] for s in TABLE_STEPS}
    assert backfill_problems(instance, backfill_id, SELECTED, checks) == []
    for table, run_id in run_ids.items():
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["dagster/partition"] == table
        assert run.tags["dagster/backfill"] == backfill_id
    for key in checks:
        assert instance.get_materialized_partitions(key) == set(SELECTED), key
    # nothing else ran: no run outside the backfill (the sensors were off), no bundle
    assert {r.run_id for r in instance.get_runs()} == set(run_ids.values())


# --- the instance-side rule, shown failing on small runs of a stand-in step -------------------


def _stand_in(fail_on: str | None = None):
    """A partitioned step with one partitioned check, like a project's table steps."""
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    tables = dg.DynamicPartitionsDefinition(name="tables")
    spec = dg.AssetCheckSpec("rows_ok", asset="step", partitions_def=tables)

    @dg.asset(partitions_def=tables, check_specs=[spec])
    def step(context):
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(
            check_name="rows_ok", passed=fail_on not in context.partition_keys
        )

    return step, {dg.AssetKey("step"): ["rows_ok"]}


def _run(step, instance, tags: dict[str, str], partition: str | None = None) -> None:
    dg.materialize(
        [step],
        instance=instance,
        partition_key=partition,
        tags={"dagster/backfill": "bf", **tags},
        raise_on_error=False,
    )


def test_backfill_rule_holds_for_one_run_per_table_and_names_a_missing_table():
    step, checks = _stand_in()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tables", ["a", "b", "c"])
        for table in ("a", "b"):
            _run(step, instance, {}, partition=table)
        assert backfill_problems(instance, "bf", ["a", "b"], checks) == []
        assert backfill_problems(instance, "bf", ["a", "b", "c"], checks) == [
            "table c: 0 runs in backfill bf"
        ]
        assert backfill_problems(instance, "bf", ["a"], checks) == [
            "backfill bf ran partition 'b', which was not selected"
        ]


def test_backfill_rule_names_a_failed_check_and_a_run_over_several_tables():
    step, checks = _stand_in(fail_on="b")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tables", ["a", "b", "c"])
        _run(step, instance, {}, partition="b")
        problems = backfill_problems(instance, "bf", ["b"], checks)
        assert any("checks failed: ['rows_ok[b]']" in p for p in problems), problems
    step, checks = _stand_in()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tables", ["a", "b", "c"])
        # one run over the range a..c, as a single-run backfill policy would launch
        _run(
            step,
            instance,
            {
                "dagster/asset_partition_range_start": "a",
                "dagster/asset_partition_range_end": "c",
            },
        )
        problems = backfill_problems(instance, "bf", ["a", "b", "c"], checks)
        assert "table a: 0 runs in backfill bf" in problems, problems
        assert any("unexpected" in p for p in problems), problems
