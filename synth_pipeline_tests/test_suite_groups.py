"""How the suite shares its expensive runs across pytest-xdist's workers (conftest.py): the
tests that read one shared whole-pipeline run go to one worker, so the run is made once; every
other test goes with its module."""

from __future__ import annotations

from types import SimpleNamespace

from .conftest import xdist_group


def _item(module: str, *fixtures: str) -> SimpleNamespace:
    return SimpleNamespace(
        fixturenames=["tmp_path", *fixtures], module=SimpleNamespace(__name__=module)
    )


def test_a_test_goes_with_the_shared_run_it_reads_else_with_its_module():
    assert xdist_group(_item("synth_pipeline_tests.test_bundle", "demo_run")) == "demo_run"
    assert xdist_group(_item("synth_pipeline_tests.test_x", "adversarial_runs")) == (
        "adversarial_runs"
    )
    # a test reading two shared runs goes with the dearer one, named first in SHARED_RUN_ORDER
    assert xdist_group(_item("synth_pipeline_tests.test_x", "demo_run", "pg_demo_run")) == (
        "pg_demo_run"
    )
    assert xdist_group(_item("synth_pipeline_tests.test_write")) == "test_write"


def test_under_xdist_this_test_reached_its_worker_in_its_group(request):
    """pytest-xdist's loadgroup marks a test's id with its group; a pytest or xdist release that
    stops doing so would send every test on its own and make each shared run once per worker
    (pytest 9.2 with xdist 3.8 did: pyproject.toml keeps pytest below 9)."""
    if not hasattr(request.config, "workerinput"):  # -n 0: one process, nothing to group
        assert "@" not in request.node.nodeid
        return
    assert request.node.nodeid.endswith("@test_suite_groups"), request.node.nodeid
