"""The CDM version is read from the extract's own tables and columns (issue 12): recorded in
project.yaml at init when the file does not say it, and reported when the file contradicts it.

The 5.3- and 5.4-shaped extracts are dirty_extract.py's (visit_occurrence with 5.3's
admitting_source_concept_id or 5.4's admitted_from_concept_id) and the demo (CDM 5.3.1, with a
cohort table, which 5.4 specifies and 5.3 keeps in its results schema).
"""

from __future__ import annotations

import pytest
import yaml

from synth_pipeline import cli
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.omop import guess_cdm_version
from synth_pipeline.runner import source_columns

from . import dirty_extract as dirty


def columns_of(version: str) -> dict[str, list[str]]:
    return {t: [c for c, _ in cols] for t, (cols, _) in dirty.tables(version).items()}


def test_the_version_is_told_by_fields_only_one_version_has(demo_sqlite_url):
    assert guess_cdm_version(columns_of("5.3")).version == "5.3"
    guess = guess_cdm_version(columns_of("5.4"))
    assert guess.version == "5.4"
    assert "visit_occurrence.admitted_from_concept_id" in guess.evidence["5.4"]
    # the demo is CDM 5.3.1; its cohort table is no sign of 5.4
    demo = guess_cdm_version(source_columns(demo_sqlite_url, None))
    assert demo.version == "5.3" and "cohort" not in demo.evidence["5.4"]
    assert "visit_occurrence.admitting_source_concept_id" in demo.evidence["5.3"]
    # 5.4's procedure end and episode tables; 5.3's attribute_definition
    five_four = {
        "procedure_occurrence": ["procedure_occurrence_id", "procedure_end_date"],
        "episode": ["episode_id"],
        "cohort": ["cohort_definition_id", "subject_id"],
    }
    assert guess_cdm_version(five_four).evidence["5.4"] == [
        "episode",
        "procedure_occurrence.procedure_end_date",
    ]
    assert guess_cdm_version({"attribute_definition": ["attribute_definition_id"]}).version == "5.3"
    # nothing that tells them apart, or as much of each: no version
    assert guess_cdm_version({"person": ["person_id"], "cohort": ["subject_id"]}).version is None
    both = guess_cdm_version({"attribute_definition": ["x"], "episode": ["episode_id"]})
    assert both.version is None


def init(tmp_path, version: str, capsys) -> tuple[int, str, ProjectFiles]:
    source = f"sqlite:///{tmp_path / f'source{version}.sqlite'}"
    dirty.build(source, cdm_version=version)
    root = tmp_path / "configuration-files"
    capsys.readouterr()
    code = cli.main(
        ["init", "--source", source, "--project", "p", "--config-dir", str(root)]
        + ["--tables", "person"]
    )
    return code, capsys.readouterr().out, ProjectFiles(root, "p")


@pytest.mark.parametrize("version", ["5.3", "5.4"])
def test_init_records_the_version_the_columns_show(tmp_path, capsys, version):
    code, out, files = init(tmp_path, version, capsys)
    assert code == 0
    assert yaml.safe_load(files.project_file.read_text())["cdm_version"] == version
    assert files.load_project().cdm_version == version
    assert f"cdm_version {version} recorded in {files.project_file}: CDM {version} (" in out


def test_init_adds_the_version_to_a_project_file_that_does_not_say_it(tmp_path, capsys):
    files = ProjectFiles(tmp_path / "configuration-files", "p")
    files.folder.mkdir(parents=True)
    files.project_file.write_text("# our extract\nproject: p\nseed: 7\n")
    code, out, files = init(tmp_path, "5.4", capsys)
    assert code == 0
    text = files.project_file.read_text()
    assert text.startswith("# our extract\nproject: p\nseed: 7\n")
    assert files.load_project().cdm_version == "5.4" and files.load_project().seed == 7
    assert "cdm_version 5.4 recorded" in out


def test_a_version_the_columns_contradict_is_reported_not_changed(tmp_path, capsys):
    files = ProjectFiles(tmp_path / "configuration-files", "p")
    files.folder.mkdir(parents=True)
    files.project_file.write_text("project: p\ncdm_version: '5.3'\n")
    code, out, files = init(tmp_path, "5.4", capsys)
    assert code == 0
    assert files.load_project().cdm_version == "5.3"
    assert (
        f"finding: {files.project_file} says cdm_version '5.3', but the source's tables and "
        "columns are those of CDM 5.4 (visit_occurrence.admitted_from_concept_id, "
        "visit_occurrence.discharged_to_concept_id); correct cdm_version"
    ) in out
