"""`katib-digits export`: the trained model as a TensorFlow SavedModel in the versioned
layout TF Serving and KServe's TensorFlow runtime load (`<out>/<version>/`).

An ensemble (the folder `katib-digits train --ensemble N` writes) becomes ONE graph
that averages its members' probabilities, so the endpoint answers what `predict`
writes. Inputs are raw pixels, 0-255, shape [28, 28, 1] (the model rescales itself);
the output is the ten digit probabilities.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import UserError
from pipeline.submission.predict import load_model, model_files

SIGNATURE = "serving_default"


def serving_model(model_path: str | Path):
    """One Keras model: the single member, or the members' average (`pixels` in, `digit` out)."""
    import keras

    members = [load_model(p) for p in model_files(model_path)]
    if len(members) == 1:
        return members[0]
    pixels = keras.Input(shape=(28, 28, 1), name="pixels")
    outputs = []
    for k, member in enumerate(members):
        member.name = f"member_{k}"  # one graph needs distinct names
        outputs.append(member(pixels))
    probabilities = keras.layers.Average(name="digit", dtype="float32")(outputs)
    return keras.Model(pixels, probabilities, name=f"digits_ensemble_{len(members)}")


def export_saved_model(model_path: str | Path, out_dir: str | Path, version: int = 1) -> Path:
    """Write `<out_dir>/<version>/` (refusing to overwrite a version: servers watch these folders)."""
    if version < 1:
        raise UserError(f"--version {version}: TF Serving versions are positive integers")
    target = Path(out_dir) / str(version)
    if target.exists():
        raise UserError(
            f"{target}: version {version} exists; pass --version {version + 1} (servers load the "
            "highest version) or remove it"
        )
    model = serving_model(model_path)
    model.export(str(target), format="tf_saved_model", verbose=False)
    return target
