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

What Dagster 1.13 does with it, as observed here: the four steps have multi-run backfill
policies that differ from step to step (``step_backfill_policy``), so the backfill launches one
run per step and never puts two steps in one run (the daemon log says so: "parent
demo/schema_snapshot and demo/column_stats have different backfill policies so they cannot be
materialized in the same run"). Each run targets its step alone (its asset selection, and its
checks) over all three tables: tags ``dagster/backfill``, ``dagster/asset_partition_range_start``
= person and ``dagster/asset_partition_range_end`` = care_site (the first and last of the three
in the partitions' order; no ``dagster/partition``). The runs come step after step, a step's run
launched on a daemon iteration after the run before it ended (about 2 min in all here). In its
run the step records each table on its own: one materialisation per table and one evaluation
per check and table (``each_table``); synthetic_table writes the parents first. The test picks
``person`` and its parents ``location`` and ``care_site`` (empty in the demo), neighbours in the
partitions' order, so a range holds exactly them.

The pages must show: on the backfill's Runs tab, four runs, one per step, each successful,
with the range person..care_site in its tags; for each step, one materialisation of each
selected table in the asset's event list, all made by that step's run; for each check of each
step, one passed evaluation of each selected table in the check's execution history. The
unselected table (observation_period) must have none of these and show as missing on
synthetic_table's partitions view (Materialized (3), Missing (1)), and the lineage shows each
step three quarters filled. The instance's event log, read through Dagster's public API, must
say the same (``backfill_assertions.backfill_problems``); the companion tests below show that it
reports a missing table, a failed check of one table, a failed run, a step run per table instead
of once for all, and a partition that was not selected.
Screenshots go to SYNTH_TEST_ARTEFACTS (default .work/test-artefacts/), test_ui_backfill-*.png.
"""

from __future__ import annotations

import re
import warnings
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from synth_pipeline.projects import partitions_name

from .backfill_assertions import RANGE_END_TAG, RANGE_START_TAG, backfill_problems
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
BACKFILL_TIMEOUT_MS = 420_000  # launch to end took about 2 min here: a step a daemon tick (30 s)
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


def _backfill_runs(page: Page) -> dict[str, tuple[str, str, tuple[str, str]]]:
    """The backfill's Runs tab: each run's step -> (its id's first 8 characters, its status,
    its partition range as its tags dialog shows it: (start, end)). The rows name the step
    a run targets, not its tables; those are in the run's tags."""
    page.get_by_role("tab", name="Runs").click()
    links = page.locator('a[href^="/runs/"]').filter(has_text=re.compile(r"^[0-9a-f]{8}$"))
    expect(links).to_have_count(len(TABLE_STEPS))
    rows = links.locator("xpath=ancestor::*[contains(., 'Manually launched')][1]")
    runs = {}
    for i in range(rows.count()):
        text = rows.nth(i).inner_text()
        run = re.search(r"\b([0-9a-f]{8})\b", text)
        steps = set(re.findall(rf"\b{PROJECT} / (\w+)", text))
        status = re.search(r"\b(Success|Failure|Canceled|Started|Queued)\b", text)
        assert run and len(steps) == 1 and status, text  # one step a run, no other asset
        step = steps.pop()
        assert step not in runs, f"two runs of {step}"
        rows.nth(i).get_by_text(re.compile(r"^View all tags")).click()
        tags = page.get_by_role("dialog").filter(has_text="asset_partition_range_start")
        expect(tags).to_be_visible()
        found = [
            re.search(rf"asset_partition_range_{end}: (\w+)", tags.inner_text())
            for end in ("start", "end")
        ]
        assert all(found), tags.inner_text()
        if i == 0:
            _shot(page, "4-backfill-run-tags")
        tags.get_by_role("button", name="Close").click()
        expect(tags).to_have_count(0)
        runs[step] = (run.group(1), status.group(1), (found[0].group(1), found[1].group(1)))
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
    """Everything the pages say about the backfill; returns its runs' ids by step."""
    status = _wait_for_backfill(page, base, backfill_id)
    runs = _backfill_runs(page)
    assert status == "Succeeded", status
    assert sorted(runs) == sorted(TABLE_STEPS), runs  # a run for each step, one each
    # each over the three selected tables: neighbours, first and last in the partitions' order
    assert {r[1:] for r in runs.values()} == {("Success", (SELECTED[0], SELECTED[-1]))}, runs
    run_ids: dict[str, str] = {}
    for step in TABLE_STEPS:
        made = _materialisations(page, base, step)
        assert sorted(made) == sorted(SELECTED), (step, made)  # one each, none for UNSELECTED
        assert len(set(made.values())) == 1, (step, made)  # all made by one run
        run_ids[step] = next(iter(made.values()))
        assert run_ids[step].startswith(runs[step][0]), (step, made, runs)
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
def test_backfill_from_the_ui_runs_each_step_once_for_all_its_tables(backfill_ui):
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
    assert (
        backfill_problems(instance, backfill_id, SELECTED, checks, partitions_name(PROJECT)) == []
    )
    records = instance.get_run_records(dg.RunsFilter(run_ids=list(run_ids.values())))
    by_id = {r.dagster_run.run_id: r for r in records}
    for step, run_id in run_ids.items():
        run = by_id[run_id].dagster_run
        assert run.asset_selection == {dg.AssetKey([PROJECT, step])}, (step, run.asset_selection)
        assert run.tags["dagster/backfill"] == backfill_id
        assert run.tags[RANGE_START_TAG] == SELECTED[0] and run.tags[RANGE_END_TAG] == SELECTED[-1]
        assert "dagster/partition" not in run.tags, run.tags
    # step after step: each run started once the one before it had ended
    ordered = [by_id[run_ids[s]] for s in TABLE_STEPS]
    for before, after in pairwise(ordered):
        assert before.end_time is not None and after.start_time is not None
        assert after.start_time >= before.end_time, (
            before.dagster_run.run_id,
            after.dagster_run.run_id,
        )
    for key in checks:
        assert instance.get_materialized_partitions(key) == set(SELECTED), key
    # nothing else ran: no run outside the backfill (the sensors were off), no bundle
    assert {r.run_id for r in instance.get_runs()} == set(run_ids.values())


# --- the instance-side rule, shown failing on small runs of a stand-in step -------------------

KEY = dg.AssetKey("step")
CHECKS_OF = {KEY: ["rows_ok"]}


def _stand_in(fail_on: str | None = None, raise_after: bool = False):
    """A step like a project's table steps: a one-output multi-asset over dynamic partitions
    "tables" with one partitioned check, which records each table of its run on its own (a
    materialisation and the check's evaluation, failed for ``fail_on``), and may then fail."""
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    tables = dg.DynamicPartitionsDefinition(name="tables")
    spec = dg.AssetCheckSpec("rows_ok", asset=KEY, partitions_def=tables)

    @dg.multi_asset(
        outs={"step": dg.AssetOut(key=KEY, is_required=False)},
        check_specs=[spec],
        partitions_def=tables,
        can_subset=True,
    )
    def step(context):
        for table in context.partition_keys:
            yield dg.AssetMaterialization(KEY, partition=table)
            yield dg.AssetCheckEvaluation(
                asset_key=KEY, check_name="rows_ok", passed=table != fail_on, partition=table
            )
        if raise_after:
            raise dg.Failure("the step failed after its tables")

    return step


def _run(step, instance, tables: list[str]) -> str:
    """A run of the backfill "bf" over ``tables`` (neighbours): one partition, or a range as the
    backfill daemon tags it. Returns its id's first 8 characters."""
    one = len(tables) == 1
    result = dg.materialize(
        [step],
        instance=instance,
        partition_key=tables[0] if one else None,
        tags={
            "dagster/backfill": "bf",
            **({} if one else {RANGE_START_TAG: tables[0], RANGE_END_TAG: tables[-1]}),
        },
        raise_on_error=False,
    )
    return result.run_id[:8]


@pytest.fixture
def stand_in_instance():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tables", ["a", "b", "c", "d"])
        yield instance


def _problems(instance, selected: list[str]) -> list[str]:
    return backfill_problems(instance, "bf", selected, CHECKS_OF, "tables")


def test_backfill_rule_holds_for_one_run_over_the_tables_and_names_a_missing_one(
    stand_in_instance,
):
    run = _run(_stand_in(), stand_in_instance, ["a", "b", "c"])
    assert _problems(stand_in_instance, ["a", "b", "c"]) == []
    problems = _problems(stand_in_instance, ["a", "b", "c", "d"])
    assert f"run {run} covers ['a', 'b', 'c'], not the selected ['a', 'b', 'c', 'd']" in problems
    assert any("materialisations (run, table) missing [(" in p and "'d')]" in p for p in problems)
    assert any("rows_ok evaluations (run, table) missing [(" in p for p in problems), problems


def test_backfill_rule_names_a_failed_check_by_table_and_a_failed_run(stand_in_instance):
    run = _run(_stand_in(fail_on="b", raise_after=True), stand_in_instance, ["a", "b", "c"])
    assert _problems(stand_in_instance, ["a", "b", "c"]) == [
        f"run {run}: FAILURE",
        f"run {run}: check rows_ok[b] failed",
    ]


def test_backfill_rule_names_a_run_per_table_instead_of_one_for_all(stand_in_instance):
    step = _stand_in()
    runs = [_run(step, stand_in_instance, [t]) for t in ("a", "b", "c")]
    problems = _problems(stand_in_instance, ["a", "b", "c"])
    assert "step step: 3 runs in backfill bf, not one" in problems, problems
    for run, table in zip(runs, "abc", strict=True):
        assert f"run {run} covers ['{table}'], not the selected ['a', 'b', 'c']" in problems


def test_backfill_rule_names_a_partition_not_selected(stand_in_instance):
    run = _run(_stand_in(), stand_in_instance, ["a", "b", "c"])
    problems = _problems(stand_in_instance, ["a", "b"])
    assert f"run {run} covers ['a', 'b', 'c'], not the selected ['a', 'b']" in problems
    assert "backfill bf ran partition 'c', not selected" in problems, problems
