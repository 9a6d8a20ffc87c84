"""The container's volume mounts on this machine: --mount folders, a folder of the run's own for a
writable mount, and container paths rewritten only where they are whole paths."""

from __future__ import annotations

import pytest

from pipeline.errors import UserError
from pipeline.katib.experiment import Experiment
from pipeline.local.mounts import Mounts
from tests.fake_trial import experiment


def with_mounts(*mounts):
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = list(
        mounts
    )
    return Experiment(exp)


def test_given_writable_and_unmapped_mounts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    exp = with_mounts(
        {"name": "data", "mountPath": "/data", "readOnly": True},
        {"name": "ckpt", "mountPath": "/ckpt/"},
        {"name": "ref", "mountPath": "/ref", "readOnly": True},
    )
    m = Mounts.resolve(exp, {"/data/": str(data)}, tmp_path / "out")
    assert m.folders == {"/data": str(data.resolve()), "/ckpt": str((tmp_path / "out" / "volumes" / "ckpt").resolve())}
    assert (tmp_path / "out" / "volumes" / "ckpt").is_dir()
    assert m.created == [f"/ckpt -> {tmp_path / 'out' / 'volumes' / 'ckpt'}"] and m.unmapped == ["/ref"]


def test_only_whole_paths_are_rewritten():
    m = Mounts({"/data": "/local/d", "/data/sub": "/elsewhere"})
    assert m.map_paths("--file=/data/x.csv") == "--file=/local/d/x.csv"
    assert m.map_paths("/data/sub/y") == "/elsewhere/y"  # the longest mount wins
    assert m.map_paths("/database x/data /data.old") == "/database x/data /data.old"
    assert m.map_paths("/katib/m.log", {"/katib": "/run/t/metrics"}) == "/run/t/metrics/m.log"


@pytest.mark.parametrize(
    "given,message", [({"data": "."}, "must be absolute"), ({"/data": "/no/such/dir"}, "is not a directory")]
)
def test_bad_mount_flags(tmp_path, given, message):
    with pytest.raises(UserError, match=message):
        Mounts.resolve(with_mounts(), given, tmp_path)
