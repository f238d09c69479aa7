"""The CDM version of a project's source, recorded in its project.yaml."""

from __future__ import annotations

from . import omop
from .config_files import ProjectFiles
from .files import atomic_write_text


def record_cdm_version(
    files: ProjectFiles, guess: omop.CdmVersionGuess, *, init: bool
) -> list[str]:
    """Write the CDM version the source's tables and columns show into project.yaml when the
    file does not exist yet or (at init) does not set it, and say what was done; a version the
    file sets that the columns contradict is reported, not changed."""
    shown = guess.describe(guess.version) if guess.version else ""
    notes = []
    if guess.evidence["5.3"] and guess.evidence["5.4"]:
        notes.append(
            "the source has tables or columns of both CDM versions: "
            f"{guess.describe('5.3')} and {guess.describe('5.4')}"
        )
    if not files.exists():
        project = files.load_project()
        if guess.version:
            project.cdm_version = guess.version
            notes.append(f"cdm_version {guess.version} recorded in {files.project_file}: {shown}")
        files.save_project(project)
        return notes
    project = files.load_project()
    if "cdm_version" not in project.model_fields_set:
        if init and guess.version:
            # added as a line, so the file keeps the user's own layout and comments
            text = files.project_file.read_text(encoding="utf-8").rstrip("\n")
            line = f"cdm_version: '{guess.version}'  # detected from the source's columns"
            atomic_write_text(files.project_file, f"{text}\n{line}\n")
            files.load_project()  # still valid
            notes.append(f"cdm_version {guess.version} recorded in {files.project_file}: {shown}")
        return notes
    if guess.version and not project.cdm_version.startswith(guess.version):
        notes.append(
            f"finding: {files.project_file} says cdm_version {project.cdm_version!r}, but the "
            f"source's tables and columns are those of {shown}; correct cdm_version"
        )
    return notes
