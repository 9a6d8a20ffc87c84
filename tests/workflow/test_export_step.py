"""The pipeline's export step as a plain function: the SavedModel artifact, and the next version
published where KServe reads it (the data volume on a cluster; a folder here)."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.workflow import steps
from tests.serving.conftest import ensemble  # noqa: F401 - the tiny trained ensemble fixture

pytestmark = pytest.mark.slow  # real (tiny) training


def test_next_version(tmp_path):
    assert steps.next_version(tmp_path / "none") == 1
    for name in ("1", "7", ".incoming-9-1", "notes"):
        (tmp_path / name).mkdir()
    assert steps.next_version(tmp_path) == 8


def test_export_publishes_the_next_version_each_run(ensemble, tmp_path):  # noqa: F811
    published = tmp_path / "volume" / "models" / "digits"
    first = steps.export_model(ensemble, tmp_path / "a", published)
    assert first["saved_model"] == str(tmp_path / "a" / "1") and (tmp_path / "a" / "1" / "saved_model.pb").is_file()
    assert (first["version"], first["published"]) == (1, str(published / "1"))
    second = steps.export_model(ensemble, tmp_path / "b", published)
    assert (second["version"], second["published"]) == (2, str(published / "2"))
    assert sorted(p.name for p in published.iterdir()) == ["1", "2"]  # no staging folder left behind
    assert (published / "2" / "saved_model.pb").read_bytes() == (tmp_path / "b" / "1" / "saved_model.pb").read_bytes()
    assert steps.export_model(ensemble, tmp_path / "c")["published"] == ""  # locally: the artifact only


def test_an_unwritable_model_folder_is_one_line(ensemble, tmp_path):  # noqa: F811
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot create the model folder .*mounted read-write"):
        steps.export_model(ensemble, tmp_path / "a", blocker / "models")
