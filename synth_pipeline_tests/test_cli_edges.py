"""What a first user meets at the command line: help that says what each command does and
prints no Dagster warning, one spelling for choosing tables, init defaulting to the bundled
demo extract like run does, and a skipped table reported as skipped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synth_pipeline import cli
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.runner import RunReport, TableOutcome

from .conftest import DEMO_CONFIGS

COMMANDS = ["demo", "init", "approve", "review", "run"]


def test_help_prints_no_warning_and_describes_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "synth_pipeline.cli", "init", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stderr == "", "a warning or error on stderr: " + done.stderr[:300]
    assert "Write draft configuration files from a source extract." in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_a_description(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    description = out.split("\n\n")[1].strip()
    assert description.endswith(".") and not description.startswith("options"), out[:400]


@pytest.mark.parametrize("command", ["approve", "review", "init", "run"])
@pytest.mark.parametrize("spelling", ["--table", "--tables"])
def test_tables_are_chosen_the_same_way_by_every_command(command, spelling):
    extra = ["--reviewer", "R"] if command == "approve" else []
    args = cli.build_parser().parse_args(
        [command, "--project", "demo", spelling, "person", "death", *extra]
    )
    assert args.tables == ["person", "death"]


def test_init_without_a_source_drafts_from_the_bundled_demo_extract(tmp_path, capsys):
    code = cli.main(
        ["init", "--project", "first", "--config-dir", str(tmp_path), "--tables", "care_site"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no --source given: the bundled demo extract, sqlite:///" in out
    assert (tmp_path / "first" / "care_site.yaml").exists()


def test_a_skipped_table_is_reported_as_skipped(capsys):
    files = ProjectFiles(DEMO_CONFIGS, "demo")
    assert files.load_table("cdm_source").kind == "skip"
    report = RunReport(
        tables=[TableOutcome("cdm_source", True, rows=0), TableOutcome("person", True, rows=5)],
        bundle_ok=True,
    )
    cli._print_report(report, generation=True, files=files)
    out = capsys.readouterr().out
    assert "cdm_source               ok skipped (kind: skip in its config)" in out
    assert "person                   ok 5 rows" in out
    assert "0 rows" not in out


def test_the_closing_hint_runs_as_printed_and_hides_passwords(tmp_path):
    import shlex
    from pathlib import Path

    command = cli.ui_command(
        "postgresql+psycopg://reader:s3cret@db.example/omop",
        f"sqlite:///{tmp_path / 'synthetic.sqlite'}",
        tmp_path / "bundle",
    )
    assert "s3cret" not in command and "reader:***@db.example" in command
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("/"))
    assert env["SYNTH_DESTINATION_URL"] == f"sqlite:///{tmp_path / 'synthetic.sqlite'}"
    assert env["SYNTH_BUNDLE_DIR"] == str(tmp_path / "bundle")
    program, dev, flag, workspace = words[len(env) :]
    assert Path(program).is_file() and Path(program).name == "dagster", "the venv's dagster"
    assert (dev, flag) == ("dev", "-w") and Path(workspace).is_file()
