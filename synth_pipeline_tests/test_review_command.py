"""`synth-pipeline review`: every value a config took from the source, the rule that let it out,
and the difference from the last approved version."""

from __future__ import annotations

import re

import yaml

from synth_pipeline import cli
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.review import approved_copy_path, released_values

STATS_FIELDS = (
    "non_null",
    "values",
    "other_count",
    "quantiles",
    "years",
    "months",
    "length",
    "pattern",
    "offset",
    "fanout",
    "conditional",
)


def review(config_root, capsys, *tables: str) -> tuple[int, str]:
    args = ["review", "--project", "demo", "--config-dir", str(config_root)]
    if tables:
        args += ["--table", *tables]
    code = cli.main(args)
    return code, capsys.readouterr().out


def test_every_released_statistic_is_listed_with_its_rule(config_root):
    files = ProjectFiles(config_root, "demo")
    policy = files.load_project().disclosure
    for table in ("person", "drug_exposure", "measurement", "visit_occurrence"):
        cfg = files.load_table(table)
        items = released_values(cfg, policy)
        listed = {i.where for i in items}
        assert all(i.rule for i in items)
        for name, col in cfg.columns.items():
            if not col.stats:
                continue
            for field in STATS_FIELDS:
                value = getattr(col.stats, field)
                if value not in (None, [], 0):
                    prefix = f"columns.{name}.stats.{field}"
                    assert any(w.startswith(prefix) for w in listed), (table, prefix)
        assert "source.row_count" in listed and "rows" in listed


def test_review_prints_values_rules_and_no_change_for_an_approved_file(config_root, capsys):
    code, out = review(config_root, capsys, "person")
    assert code == 0
    assert "review: approved by synth_pipeline maintainers (demo extract)" in out
    assert re.search(r"values: 8532: \d+, 8507: \d+", out)
    assert "values seen at least k=10 times" in out
    assert "each the mean of k=10 neighbouring values" in out
    assert "applied: quantiles p1..p99 only" in out
    assert "changes since the last approval: none" in out


def test_review_shows_a_hand_edit_as_a_diff_and_refuses_it(config_root, capsys):
    path = config_root / "demo" / "person.yaml"
    data = yaml.safe_load(path.read_text())
    data["columns"]["race_concept_id"]["stats"]["values"].append({"value": 8657, "count": 100})
    data["columns"]["gender_concept_id"]["generator"] = "constant"
    data["columns"]["gender_concept_id"]["params"] = {"value": 8532}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out = review(config_root, capsys, "person")
    assert code == 0
    assert "NOT approved for generation" in out and "edited after" in out
    assert "values: 8527: " in out and "8657: 100" in out  # the slipped-in value, with its rule
    diff = out[out.index("changes since the last approval:") :]
    assert "--- .approved/person.yaml (last approved)" in diff
    changed = [line[2:] for line in diff.splitlines()[1:] if line[2:3] in ("+", "-")]
    # only what the edit changed, whatever the editor's YAML style
    assert changed == [
        "--- .approved/person.yaml (last approved)",
        "+++ person.yaml (now)",
        "-    generator: weighted_choice",
        "-    params: {}",
        "+    generator: constant",
        "+    params: {value: 8532}",
        "+      - {value: 8657, count: 100}",
    ]


def test_approve_keeps_the_copy_review_diffs_against(config_root, capsys):
    files = ProjectFiles(config_root, "demo")
    copy = approved_copy_path(files, "visit_occurrence")
    copy.unlink()
    code, out = review(config_root, capsys, "visit_occurrence")
    assert code == 0 and "no approved copy" in out
    path = files.table_file("visit_occurrence")
    data = yaml.safe_load(path.read_text())
    data["rows"] = 2000
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert (
        cli.main(
            [
                "approve",
                "--project",
                "demo",
                "--table",
                "visit_occurrence",
                "--reviewer",
                "Second Reviewer",
                "--config-dir",
                str(config_root),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert copy.read_text() == path.read_text()
    code, out = review(config_root, capsys, "visit_occurrence")
    assert "approved by Second Reviewer" in out and "changes since the last approval: none" in out
    assert "rows: 2000" in out and "set by hand" in out


def test_review_of_every_table_and_of_an_unknown_one(config_root, capsys):
    code, out = review(config_root, capsys)
    assert code == 0
    files = ProjectFiles(config_root, "demo")
    assert out.count("\n== ") + out.startswith("== ") == len(files.tables())
    code = cli.main(
        ["review", "--project", "demo", "--table", "nope", "--config-dir", str(config_root)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no table 'nope'" in err
