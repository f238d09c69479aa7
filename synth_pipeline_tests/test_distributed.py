"""One table generated as block-range tasks on a real Dask LocalCluster (issue 18).

The same seed gives the same table and the same bundle bytes in-process, on one worker and on
two, and loaded into PostgreSQL over one COPY stream or several; a worker killed mid-table is
rerun by Dask, or (when the scheduler allows no failure) fails the table, leaving the previous
table and bundle as they were and no part or staging table behind, as does a part whose file
is gone before it is loaded.

Small tables (a few blocks of 65,536 rows), two worker processes of one thread each: the
machine running the suite may have two cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from pathlib import Path

import dask
import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core import GENERATOR_VERSION
from synth_pipeline.core.bundle import BundleSpec, write_bundle
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.distributed import (
    LIVE_MARKER,
    DistributedError,
    PartTask,
    ProjectSnapshot,
    distributed_chunks,
    generate_part,
    local_client,
    part_ranges,
)
from synth_pipeline.core.errors import ConfigError, DatabaseError
from synth_pipeline.core.generators import BLOCK_ROWS
from synth_pipeline.core.parallel_copy import DEFAULT_COPY_STREAMS, PartStreams
from synth_pipeline.core.publication import bundle_tables
from synth_pipeline.core.schema import ColumnDef
from synth_pipeline.core.synthesise import FIRST_CHUNK_ROWS, TableRun, written_width
from synth_pipeline.core.write import RegisterEntry, read_register, replace_table
from synth_pipeline.dask_resource import (
    COPY_STREAMS_VAR,
    KEEP_PARTS_VAR,
    LOCAL_WORKERS_VAR,
    DaskCluster,
)

from .conftest import DEMO_CONFIGS

TABLE = "measurement"  # rules tie it to persons, visits and periods: workers regenerate those
CREATED_AT = "2024-01-01T00:00:00+00:00"


def demo_files() -> ProjectFiles:
    return ProjectFiles(DEMO_CONFIGS, "demo")


def scale_for(rows: int) -> float:
    return rows / demo_files().load_table(TABLE).rows


def columns() -> list[ColumnDef]:
    cfg = demo_files().load_table(TABLE)
    return [ColumnDef(n, c.type, written_width(c)) for n, c in cfg.columns.items()]


def write(engine, schema, chunks, seed: int, scale: float, on_chunk=None) -> int:
    """As core/generation.py's write_table: the register row names the parts kept, if any."""
    cfg = demo_files().load_table(TABLE)
    entry = RegisterEntry("synthetic", cfg.fingerprint(), seed, scale, {}, GENERATOR_VERSION)
    entry.parts = getattr(chunks, "kept_at", None)
    return replace_table(
        engine,
        schema,
        TABLE,
        columns(),
        chunks,
        primary_key=cfg.primary_key,
        entry=entry,
        on_chunk=on_chunk,
    )


def in_process(engine, schema, seed: int, scale: float) -> int:
    files = demo_files()
    run = TableRun.for_project(files, files.load_table(TABLE), seed, scale)
    return write(engine, schema, run.chunks(BLOCK_ROWS, first_rows=FIRST_CHUNK_ROWS), seed, scale)


def on_cluster(
    client, engine, schema, seed, scale, parts: Path, on_chunk=None, copy_streams=None
) -> int:
    with distributed_chunks(
        client,
        demo_files(),
        TABLE,
        seed,
        scale,
        str(parts),
        part_rows=BLOCK_ROWS,
        copy_streams=copy_streams or DEFAULT_COPY_STREAMS,
    ) as chunks:
        return write(engine, schema, chunks, seed, scale, on_chunk)


def bundle(engine, schema, out: Path, seed: int, scale: float, read_from: str = "") -> dict:
    """The bundle of the destination's table, file by file, as core/publication.py makes it:
    from the parts kept for the table's version when there are usable ones. ``read_from``: the
    start of what the bundle says it read the table from."""
    files, said = bundle_and_source(engine, schema, out, seed, scale)
    assert said.startswith(read_from), said
    return files


def bundle_and_source(engine, schema, out: Path, seed, scale, parts: bool = True):
    """(the bundle's files, where it says it read the table from); with ``parts`` False the
    table is read from the destination whatever parts it has."""
    entry = read_register(engine, schema)[TABLE]
    [table] = bundle_tables(demo_files(), engine, schema, {TABLE: entry})
    if not parts:
        table["parts"] = None
    spec = BundleSpec(project="demo", tables=[table], seed=seed, scale=scale)
    write_bundle(engine, schema, out, spec, created_at=CREATED_AT)
    return bundle_files(out), table["read_from"]


def kept_sets(parts: Path) -> list[str]:
    """The URLs of the part folders under ``parts``."""
    return sorted(f"file://{p}" for p in parts.iterdir()) if parts.exists() else []


def bundle_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def table_names(engine, schema) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names(schema=schema))


@contextlib.contextmanager
def most_connections_at_once(engine):
    """Yields a list holding, once the block is done, the most connections of ``engine``'s
    pool checked out at the same time while it ran."""
    out: list[int] = []
    lock = threading.Lock()
    now = [0, 0]  # checked out, most so far

    def checkout(*_):
        with lock:
            now[0] += 1
            now[1] = max(now)

    def checkin(*_):
        with lock:
            now[0] -= 1

    sa.event.listen(engine.pool, "checkout", checkout)
    sa.event.listen(engine.pool, "checkin", checkin)
    try:
        yield out
    finally:
        sa.event.remove(engine.pool, "checkout", checkout)
        sa.event.remove(engine.pool, "checkin", checkin)
        out.append(now[1])


def read_table(engine, schema) -> pl.DataFrame:
    qualified = f'"{schema}"."{TABLE}"' if schema else f'"{TABLE}"'
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f'SELECT * FROM {qualified} ORDER BY "measurement_id"').all()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", infer_schema_length=None)


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


def destination(kind: str, tmp_path: Path, request, name: str):
    """(engine, schema): an SQLite file, or a schema of the session's PostgreSQL database."""
    if kind == "sqlite":
        return open_destination(f"sqlite:///{tmp_path / f'{name}.sqlite'}"), None
    engine = open_destination(request.getfixturevalue("postgres_database"))
    schema = f"dist_{name}_{os.getpid()}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    return engine, schema


def test_block_ranges_give_the_rows_the_whole_table_has_there():
    files = demo_files()
    scale = scale_for(3 * BLOCK_ROWS + 999)
    run = TableRun.for_project(files, files.load_table(TABLE), 3, scale)
    whole = pl.concat(list(run.chunks(10**9)))
    ranges = part_ranges(run.rows, 2 * BLOCK_ROWS)
    assert ranges == [(0, 2 * BLOCK_ROWS), (2 * BLOCK_ROWS, run.rows)]
    # each range from a fresh run, as a worker process makes it
    parts = [
        pl.concat(
            list(
                TableRun.for_project(files, files.load_table(TABLE), 3, scale).chunks(
                    BLOCK_ROWS, start=a, stop=b
                )
            )
        )
        for a, b in reversed(ranges)
    ]
    assert pl.concat(parts[::-1]).equals(whole)
    with pytest.raises(ValueError, match="not whole blocks"):
        next(run.chunks(BLOCK_ROWS, start=1000, stop=BLOCK_ROWS))
    with pytest.raises(ValueError, match="not whole blocks"):
        next(run.chunks(BLOCK_ROWS, start=0, stop=BLOCK_ROWS + 1))


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_cluster_writes_the_table_and_bundle_of_the_in_process_path(
    kind, client, tmp_path, request
):
    seed, scale = 21, scale_for(3 * BLOCK_ROWS + 4321)  # four parts, the last one short
    local, local_schema = destination(kind, tmp_path, request, "local")
    remote, remote_schema = destination(kind, tmp_path, request, "dask")
    parts = tmp_path / "parts"
    rows = in_process(local, local_schema, seed, scale)
    assert on_cluster(client, remote, remote_schema, seed, scale, parts) == rows
    assert read_table(remote, remote_schema).equals(read_table(local, local_schema))
    expected = bundle(local, local_schema, tmp_path / "bundle-local", seed, scale, "destination")
    # the cluster's table: its bundle files written from the four parts it was loaded from
    got = bundle(remote, remote_schema, tmp_path / "bundle-dask", seed, scale, "parts: 4 ")
    assert set(got) == set(expected) and {"measurement.csv", "manifest.json"} <= set(got)
    assert got == expected  # byte for byte: CSV, Parquet, manifest, README
    # the run's folder is kept, named in the register row, holding its parts and their list
    [kept] = kept_sets(parts)
    assert read_register(remote, remote_schema)[TABLE]["parts"] == kept
    assert len(list(Path(kept.removeprefix("file://")).glob("part-*.parquet"))) == 4
    assert read_register(local, local_schema)[TABLE]["parts"] is None
    if kind == "sqlite":  # and on a cluster of one worker too, into another parts folder
        one = open_destination(f"sqlite:///{tmp_path / 'one.sqlite'}")
        with local_client(1) as single:
            assert on_cluster(single, one, None, seed, scale, tmp_path / "parts1") == rows
        assert bundle(one, None, tmp_path / "bundle-one", seed, scale, "parts: 4 ") == expected
    for engine in (local, remote):
        engine.dispose()


def test_a_killed_worker_is_rerun_by_dask(client, tmp_path):
    seed, scale = 22, scale_for(6 * BLOCK_ROWS)
    local = open_destination(f"sqlite:///{tmp_path / 'local.sqlite'}")
    remote = open_destination(f"sqlite:///{tmp_path / 'dask.sqlite'}")
    in_process(local, None, seed, scale)
    with killing_a_busy_worker(client) as killed:
        rows = on_cluster(client, remote, None, seed, scale, tmp_path / "parts")
    assert killed, "no worker was generating a part while the table was written"
    assert rows == 6 * BLOCK_ROWS
    assert read_table(remote, None).equals(read_table(local, None))


@contextlib.contextmanager
def killing_a_busy_worker(client):
    """While the block runs, SIGKILL the process of the first worker seen generating a part
    (the worker processes of a LocalCluster this test started); yields a list that then holds
    the pid killed."""
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not killed:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            stop.wait(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        stop.set()
        watcher.join()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_worker_without_reruns_leaves_the_previous_table_and_bundle(
    kind, client, tmp_path, request
):
    engine, schema = destination(kind, tmp_path, request, "killed")
    scale = scale_for(6 * BLOCK_ROWS)
    parts = tmp_path / "parts"
    # the previous version was generated on the cluster too: its parts are kept for its bundle
    on_cluster(client, engine, schema, 1, scale, parts)
    kept = kept_sets(parts)
    before_table = read_table(engine, schema)
    before_bundle = bundle(engine, schema, tmp_path / "bundle", 1, scale, "parts: 6 ")
    # a scheduler that gives up on a task the first time its worker dies; on PostgreSQL the
    # other COPY streams go on with their parts until the lost one is asked for
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_client(2) as strict,
        killing_a_busy_worker(strict) as killed,
        pytest.raises(DistributedError, match=r"measurement: rows \d+\.\.\d+ \(part \d+ of 6\)"),
    ):
        on_cluster(strict, engine, schema, 2, scale, parts, copy_streams=3)
    assert killed, "no worker was generating a part while the table was written"
    assert_previous_table_stays(engine, schema, before_table, before_bundle, tmp_path, parts, kept)
    engine.dispose()


def assert_previous_table_stays(
    engine, schema, before_table, before_bundle, tmp_path, parts, kept=()
):
    """The table, its register row (seed 1) and its bundle as they were; no part of the failed
    run and no staging table left, the parts ``kept`` of the previous version (if any) still
    there and still what its bundle is written from."""
    assert read_table(engine, schema).equals(before_table)
    register = read_register(engine, schema)[TABLE]
    assert register["seed"] == 1
    assert register["parts"] == (kept[0] if kept else None)
    assert bundle_files(tmp_path / "bundle") == before_bundle
    assert kept_sets(parts) == list(kept)
    # the bundle made again is the same, from the previous version's parts if it has some
    read_from = "parts: " if kept else "destination"
    again = bundle(engine, schema, tmp_path / "bundle-again", 1, register["scale"], read_from)
    assert again == before_bundle
    assert table_names(engine, schema) == {TABLE, "_synth_pipeline_tables"}  # no staging table


@pytest.mark.postgres
def test_one_and_three_copy_streams_write_the_same_table_and_bundle(client, tmp_path, request):
    seed, scale = 23, scale_for(5 * BLOCK_ROWS + 777)  # six parts, the last one short
    local, local_schema = destination("postgres", tmp_path, request, "streams_local")
    expected_rows = in_process(local, local_schema, seed, scale)
    assert expected_rows == 5 * BLOCK_ROWS + 777
    expected = bundle(local, local_schema, tmp_path / "bundle-local", seed, scale)
    for streams in (1, 3):
        engine, schema = destination("postgres", tmp_path, request, f"streams{streams}")
        parts = tmp_path / f"parts{streams}"
        with most_connections_at_once(engine) as most:
            rows = on_cluster(client, engine, schema, seed, scale, parts, copy_streams=streams)
        assert most == [streams]  # one connection a COPY stream, all at once
        assert rows == expected_rows
        assert read_table(engine, schema).equals(read_table(local, local_schema))
        assert read_register(engine, schema)[TABLE]["rows"] == rows
        # written from the six parts the streams loaded, byte for byte the in-process bundle
        got = bundle(engine, schema, tmp_path / f"bundle{streams}", seed, scale, "parts: 6 ")
        assert got == expected  # byte for byte: CSV, Parquet, manifest, README
        assert kept_sets(parts) == [read_register(engine, schema)[TABLE]["parts"]]
        assert table_names(engine, schema) == {TABLE, "_synth_pipeline_tables"}
        engine.dispose()
    local.dispose()


@pytest.mark.postgres
def test_a_part_gone_before_its_copy_stream_takes_it_leaves_the_previous_table(
    client, tmp_path, request
):
    engine, schema = destination("postgres", tmp_path, request, "gone")
    scale = scale_for(6 * BLOCK_ROWS)
    in_process(engine, schema, 1, scale)
    before_table = read_table(engine, schema)
    before_bundle = bundle(engine, schema, tmp_path / "bundle", 1, scale)
    parts = tmp_path / "parts"
    with distributed_chunks(
        client, demo_files(), TABLE, 2, scale, str(parts), part_rows=BLOCK_ROWS, copy_streams=3
    ) as chunks:
        # the last part's file, removed once its worker has created it and before any stream
        # takes it: the other streams COPY (and may commit) their parts first
        [folder] = parts.iterdir()
        [last] = wait_for(lambda: sorted(folder.glob("part-000005-*.parquet")))
        last.unlink()
        with pytest.raises(
            DistributedError,
            match=r"measurement: rows 327681\.\.393216 \(part 6 of 6\): cannot read its part "
            r".*part-000005-",
        ):
            write(engine, schema, chunks, 2, scale)
    assert_previous_table_stays(engine, schema, before_table, before_bundle, tmp_path, parts)
    engine.dispose()


def wait_for(found, seconds: float = 120.0):
    """``found()`` once it is truthy (polled), or fail after ``seconds``."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.05)):
        value = found()
        if value:
            return value
        pause.wait(0.05)
    raise AssertionError(f"nothing found in {seconds} s")


@pytest.mark.postgres
def test_a_key_the_swap_refuses_drops_the_staging_table_of_the_streams(tmp_path, request):
    """Two streams COPY the same rows: the primary key fails in the swap's transaction, after
    both streams committed; the staging table goes, the previous table and register row stay."""
    engine, schema = destination("postgres", tmp_path, request, "dupkey")
    scale = scale_for(BLOCK_ROWS)
    in_process(engine, schema, 1, scale)
    before = read_table(engine, schema)
    files = demo_files()
    run = TableRun.for_project(files, files.load_table(TABLE), 1, scale)
    rows = pl.concat(list(run.chunks(BLOCK_ROWS)))
    twice = PartStreams(2, lambda i, cancelled: [rows], copy_streams=2)
    with pytest.raises(DatabaseError, match="destination table measurement: could not create"):
        write(engine, schema, twice, 2, scale)
    assert read_table(engine, schema).equals(before)
    assert read_register(engine, schema)[TABLE]["seed"] == 1
    assert table_names(engine, schema) == {TABLE, "_synth_pipeline_tables"}
    engine.dispose()


def test_a_worker_with_another_generator_version_or_config_is_refused(tmp_path):
    files = demo_files()
    cfg = files.load_table(TABLE)
    snapshot = ProjectSnapshot.of(files)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LIVE_MARKER).touch()
    task = PartTask(TABLE, cfg.fingerprint(), 1, scale_for(1000), 0, 0, 1000, str(folder), 1000)
    assert generate_part(task, snapshot).rows == 1000
    other = dataclasses.replace(task, generator_version="0.0.0-other")
    with pytest.raises(
        DistributedError, match="the run 0.0.0-other; install the same synth_pipeline"
    ):
        generate_part(other, snapshot)
    stale = dataclasses.replace(task, config_fingerprint="sha256:other")
    with pytest.raises(DistributedError, match="fingerprint"):
        generate_part(stale, snapshot)


def test_a_part_finished_after_its_run_ended_removes_itself(tmp_path):
    files = demo_files()
    cfg = files.load_table(TABLE)
    folder = tmp_path / "run"
    folder.mkdir()  # no live marker: the run gave up on the folder
    task = PartTask(TABLE, cfg.fingerprint(), 1, scale_for(1000), 0, 0, 1000, str(folder), 1000)
    with pytest.raises(DistributedError, match="after its run ended"):
        generate_part(task, ProjectSnapshot.of(files))
    assert list(folder.iterdir()) == []


def test_the_resource_sends_only_tables_from_the_threshold_to_the_cluster(
    client, tmp_path, config_root, monkeypatch
):
    files = ProjectFiles(config_root, "demo")
    project_file = files.project_file
    project_file.write_text(project_file.read_text() + "distributed_min_rows: 200000\n")
    assert files.load_project().distributed_min_rows == 200_000
    cfg = files.load_table(TABLE)
    address = client.scheduler.address
    said: list[str] = []

    def rows_of(resource: DaskCluster, rows: int) -> int:
        run = TableRun.for_project(files, cfg, 5, rows / cfg.rows)
        with resource.table_chunks(run, files, BLOCK_ROWS, log=said.append) as chunks:
            return sum(df.height for df in chunks)

    on = DaskCluster(scheduler_address=address, parts_url=str(tmp_path / "parts"))
    assert rows_of(on, 100_000) == 100_000 and said == []  # below the threshold: in-process
    assert rows_of(on, 200_000) == 200_000
    assert len(said) == 2 and "generated on the Dask cluster" in said[0] and address in said[0]
    [kept] = kept_sets(tmp_path / "parts")
    assert said[1] == f"measurement: its parts are kept for the bundle at {kept}"
    # the table written in-process again: the parts of the version on the cluster go
    assert rows_of(on, 100_000) == 100_000 and kept_sets(tmp_path / "parts") == []
    assert said[2] == f"measurement: removed the parts of its previous version: {[kept]}"
    # a parts storage that cannot be reached does not fail a table written in-process
    unreachable = DaskCluster(scheduler_address=address, parts_url="nosuchfs://parts")
    assert rows_of(unreachable, 100_000) == 100_000
    assert said[3].startswith("measurement: could not look for the parts of its previous version")
    said.clear()
    on.close()
    monkeypatch.delenv("SYNTH_DASK_SCHEDULER", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.delenv(LOCAL_WORKERS_VAR, raising=False)
    off = DaskCluster()
    assert not off.configured()
    assert rows_of(off, 300_000) == 300_000 and said == []  # no cluster: in-process
    monkeypatch.setenv("SYNTH_DASK_SCHEDULER", address)
    assert DaskCluster().address() == address
    monkeypatch.delenv("SYNTH_DASK_SCHEDULER")
    monkeypatch.setenv(LOCAL_WORKERS_VAR, "two")
    with pytest.raises(ConfigError, match=LOCAL_WORKERS_VAR):
        DaskCluster().configured()
    monkeypatch.delenv(COPY_STREAMS_VAR, raising=False)
    assert DaskCluster().resolved_copy_streams() == DEFAULT_COPY_STREAMS == 4
    monkeypatch.setenv(COPY_STREAMS_VAR, "2")
    assert DaskCluster().resolved_copy_streams() == 2
    assert DaskCluster(copy_streams=3).resolved_copy_streams() == 3  # run config first
    for wrong in ("0", "many"):
        monkeypatch.setenv(COPY_STREAMS_VAR, wrong)
        with pytest.raises(ConfigError, match=f"{COPY_STREAMS_VAR}='{wrong}' is not a number"):
            DaskCluster().resolved_copy_streams()
    with pytest.raises(ConfigError, match="dask.copy_streams=0 is not a number"):
        DaskCluster(copy_streams=0).resolved_copy_streams()
    monkeypatch.delenv(KEEP_PARTS_VAR, raising=False)
    assert DaskCluster().resolved_keep_parts() is True
    monkeypatch.setenv(KEEP_PARTS_VAR, "0")
    assert DaskCluster().resolved_keep_parts() is False
    assert DaskCluster(keep_parts=True).resolved_keep_parts() is True  # run config first
    monkeypatch.setenv(KEEP_PARTS_VAR, "sometimes")
    with pytest.raises(ConfigError, match=f"{KEEP_PARTS_VAR}='sometimes' is not 1 or 0"):
        DaskCluster().resolved_keep_parts()


def test_a_run_through_dagster_sends_a_table_to_the_cluster(
    client, demo_sqlite_url, config_root, tmp_path
):
    """The synthetic_table asset itself, materialised by the CLI's runner on an instance, with
    the scheduler's address in the environment and distributed_min_rows below the person
    table's rows: the person table is generated on the cluster (its run's log says so), the
    smaller tables in-process, and the destination holds what an in-process run writes."""
    import dagster as dg

    from synth_pipeline.runner import execute, temporary_environment

    files = ProjectFiles(config_root, "demo")
    project = files.load_project()
    persons = files.load_table("person").rows
    project.distributed_min_rows = persons
    files.save_project(project)
    tables = ["location", "care_site", "provider", "person"]

    def run(name: str, env: dict) -> tuple[list, list[str], Path]:
        path = tmp_path / f"{name}.sqlite"
        with temporary_environment(env), dg.DagsterInstance.ephemeral() as instance:
            report = execute(
                source_url=demo_sqlite_url,
                destination_url=f"sqlite:///{path}",
                project="demo",
                config_root=config_root,
                bundle_dir=tmp_path / f"{name}-bundle",
                tables=tables,
                instance=instance,
            )
            assert report.ok, [(t.table, t.messages) for t in report.tables]
            logs = [e.user_message for r in report.run_ids for e in instance.all_logs(r)]
        return report.tables, logs, path

    address = client.scheduler.address
    parts = tmp_path / "parts"
    same = {"SYNTH_DASK_PARTS_URL": str(parts), "SYNTH_BUNDLE_CREATED_AT": CREATED_AT}
    _, cluster_logs, on_cluster_db = run("cluster", {"SYNTH_DASK_SCHEDULER": address, **same})
    [kept] = kept_sets(parts)
    _, local_logs, in_process_db = run("local", {"SYNTH_DASK_SCHEDULER": None, **same})
    sent = [m for m in cluster_logs if "generated on the Dask cluster" in m]
    assert len(sent) == 1 and sent[0].startswith("person:"), sent
    assert not any("generated on the Dask cluster" in m for m in local_logs)
    # the csv_bundle step wrote person's files from its parts, the same bytes as in-process
    assert f"bundle: person read from parts: 1 Parquet parts at {kept}" in cluster_logs
    assert not any(m.startswith("bundle: person read from") for m in local_logs)
    assert bundle_files(tmp_path / "cluster-bundle") == bundle_files(tmp_path / "local-bundle")
    # the local run wrote person in-process into another destination: the parts went
    assert kept_sets(parts) == []
    for table in tables:
        key = f"{table}_id"
        with sa.create_engine(f"sqlite:///{on_cluster_db}").connect() as a:
            cluster_rows = a.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY "{key}"').all()
        with sa.create_engine(f"sqlite:///{in_process_db}").connect() as b:
            local_rows = b.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY "{key}"').all()
        assert cluster_rows == local_rows, table
    assert len(local_rows) == persons
