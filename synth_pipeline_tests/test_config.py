"""Loading and validating the reviewed YAML: clear errors naming file, table, column, setting."""

from __future__ import annotations

import json

import pytest
import yaml

from synth_pipeline.core.config import (
    approval_problem,
    approve,
    require_approved,
    table_config_json_schema,
)
from synth_pipeline.core.config_files import ProjectFiles, load_table_config
from synth_pipeline.core.errors import ConfigError, ReviewGateError


def edit(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_committed_demo_configs_are_valid_and_approved(config_root):
    files = ProjectFiles(config_root, "demo")
    tables = files.tables()
    assert "person" in tables and len(tables) == 37
    for t in tables:
        cfg = files.load_table(t)
        assert approval_problem(cfg, cfg.source.fingerprint) is None, t


def test_yaml_syntax_error_names_file_and_line(config_root):
    path = config_root / "demo" / "person.yaml"
    lines = path.read_text().splitlines()
    lines[9] = lines[9] + " : : ["
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    assert str(path) in str(err.value)
    assert err.value.line is not None and err.value.line >= 10
    assert "YAML syntax" in str(err.value)


def test_unknown_generator_names_table_column_and_setting(config_root):
    path = config_root / "demo" / "person.yaml"
    edit(path, lambda d: d["columns"]["gender_concept_id"].update(generator="magic"))
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    msg = str(err.value)
    assert "person" in msg and "gender_concept_id" in msg and "generator" in msg and "magic" in msg
    assert str(path) in msg


def test_parameter_of_the_wrong_type(config_root):
    path = config_root / "demo" / "visit_occurrence.yaml"
    edit(path, lambda d: d["columns"]["visit_end_date"]["params"].update(minimum_days="soon"))
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    assert err.value.column == "visit_end_date"
    assert err.value.setting == "params.minimum_days"


def test_generator_that_does_not_fit_the_column_type(config_root):
    path = config_root / "demo" / "person.yaml"
    edit(
        path,
        lambda d: d["columns"]["person_source_value"].update(
            generator="numeric_quantiles", params={}
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    assert err.value.column == "person_source_value" and "string" in str(err.value)


def test_constant_of_the_wrong_type(config_root):
    path = config_root / "demo" / "person.yaml"
    edit(
        path,
        lambda d: d["columns"]["race_concept_id"].update(
            generator="constant", params={"value": "white"}
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    assert err.value.column == "race_concept_id" and "not a integer" in str(err.value)


def test_derived_column_that_does_not_exist(config_root):
    path = config_root / "demo" / "condition_occurrence.yaml"
    edit(
        path,
        lambda d: d["columns"]["condition_start_datetime"].update(params={"date_column": "nope"}),
    )
    with pytest.raises(ConfigError) as err:
        load_table_config(path)
    assert "nope" in str(err.value) and err.value.column == "condition_start_datetime"


def test_k_below_one_in_project_file(config_root):
    path = config_root / "demo" / "project.yaml"
    edit(path, lambda d: d["disclosure"].update(min_cell_count=0))
    with pytest.raises(ConfigError) as err:
        ProjectFiles(config_root, "demo").load_project()
    assert err.value.setting == "disclosure.min_cell_count"
    assert str(path) in str(err.value)


def test_scale_of_zero_in_project_file(config_root):
    path = config_root / "demo" / "project.yaml"
    edit(path, lambda d: d.update(scale=0))
    with pytest.raises(ConfigError) as err:
        ProjectFiles(config_root, "demo").load_project()
    assert err.value.setting == "scale"


def test_approval_gate_refuses_draft_edited_and_stale(config_root):
    files = ProjectFiles(config_root, "demo")
    cfg = files.load_table("person")
    fp = cfg.source.fingerprint
    assert approval_problem(cfg, fp) is None

    draft = cfg.model_copy(deep=True)
    draft.review.status = "draft"
    with pytest.raises(ReviewGateError, match="person.*draft"):
        require_approved(draft, fp)

    edited = cfg.model_copy(deep=True)
    edited.rows += 5
    with pytest.raises(ReviewGateError, match="edited after"):
        require_approved(edited, fp)

    with pytest.raises(ReviewGateError, match="changed since the approval"):
        require_approved(cfg, "sha256:" + "0" * 64)

    again = approve(edited, "Second Reviewer", fp)
    assert approval_problem(again, fp) is None
    assert again.review.reviewer == "Second Reviewer"


def test_published_json_schema_is_up_to_date():
    from .conftest import DEMO_CONFIGS

    published = json.loads((DEMO_CONFIGS / "table-config.schema.json").read_text())
    assert published == json.loads(json.dumps(table_config_json_schema()))
    assert (
        "weighted_choice" in published["$defs"]["ColumnConfig"]["properties"]["generator"]["enum"]
    )


@pytest.mark.parametrize(
    "text, line",
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 2),  # an unclosed bracket: where it opens
        ('a: 1\nb: "open\nc: 3\n', 2),  # an unclosed quote
        ("a: 1\nb:\n  - x\n - y\n", 4),  # a wrong indent: where it is
        ("a: 1\nb: x: y\n", 2),
    ],
)
def test_a_yaml_syntax_error_names_the_line_of_the_break(tmp_path, text, line):
    from synth_pipeline.core.config_files import read_yaml
    from synth_pipeline.core.errors import ConfigError

    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        read_yaml(path)
    assert str(raised.value).startswith(f"{path}:{line}: YAML syntax error")


def test_config_files_are_readable_by_other_users(tmp_path):
    import os
    import stat

    from synth_pipeline.core.files import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "person.yaml", "table: person\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "person.yaml").stat().st_mode) == 0o644
