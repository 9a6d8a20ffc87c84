"""`katib-digits export`: the SavedModel loaded with plain TensorFlow (no Keras, no project code)
answers what `predict` writes, for a single model and for an ensemble."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.serving.export import SIGNATURE, export_saved_model
from pipeline.submission.predict import predict_submission
from tests.conftest import SAMPLE, katib_digits

pytestmark = pytest.mark.slow  # real (tiny) training


def test_the_saved_model_averages_the_members_as_predict_does(ensemble, tmp_path):
    import tensorflow as tf

    from trial.data import load_test

    target = export_saved_model(ensemble, tmp_path / "digits")
    assert target == tmp_path / "digits" / "1" and (target / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(target)).signatures[SIGNATURE]
    x = load_test(SAMPLE / "test.csv.gz")[:64].astype("float32")
    (probabilities,) = serve(tf.constant(x)).values()
    probabilities = probabilities.numpy()
    assert probabilities.shape == (64, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    predict_submission(ensemble, SAMPLE / "test.csv.gz", tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as fh:
        labels = [int(row["Label"]) for row in csv.DictReader(fh)][:64]
    assert probabilities.argmax(axis=1).tolist() == labels


def test_a_version_is_never_overwritten(ensemble, tmp_path):
    export_saved_model(ensemble / "member-0", tmp_path / "digits")  # one member: a single model
    with pytest.raises(UserError, match="version 1 exists; pass --version 2"):
        export_saved_model(ensemble, tmp_path / "digits")
    assert export_saved_model(ensemble, tmp_path / "digits", version=2).name == "2"


def test_the_command_says_what_it_wrote_and_refuses_a_missing_model(ensemble, tmp_path):
    ran = katib_digits("export", "--model", str(ensemble), "--out", str(tmp_path / "m"))
    assert ran.returncode == 0 and f"{tmp_path / 'm' / '1'}: SavedModel" in ran.stdout
    ran = katib_digits("export", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "m2"))
    assert ran.returncode == 2 and "model file not found" in ran.stderr
