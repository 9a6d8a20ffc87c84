"""The CNN: two conv blocks, a dense head, and optional augmentation layers that
are active only while training. Two block shapes (`arch`):

- "strided": conv3-conv3 (valid padding) then a 5x5 stride-2 conv that learns its
  own down-sampling (the 32C3-32C3-32C5S2 / 64C3-64C3-64C5S2 family from the
  public Kaggle architecture study); cheaper per image and more accurate.
- "pool": conv3-conv3 (same padding) then 2x2 max-pooling.

Every block is conv-BN-ReLU and ends in dropout; every knob is a trial flag."""
from __future__ import annotations

import keras
from keras import layers

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True),
}


ARCHS = ("strided", "pool")


def _conv_bn_relu(x, filters: int, kernel: int, strides: int = 1, padding: str = "same"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def build_model(conv_filters: int = 32, dense_units: int = 256, dropout: float = 0.25,
                augment: float = 0.1, seed: int = 42, arch: str = "strided") -> keras.Model:
    """Inputs are raw pixels (0-255, shape [28, 28, 1]); the model rescales itself,
    so a saved model predicts straight from the CSV's values."""
    inputs = keras.Input(shape=(28, 28, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    if augment > 0:
        # `augment` is one strength: 0.1 = rotate up to 10 degrees, shift and zoom up to 10 %.
        x = layers.RandomRotation(augment * 100 / 360, fill_mode="constant", seed=seed)(x)
        x = layers.RandomTranslation(augment, augment, fill_mode="constant", seed=seed + 1)(x)
        x = layers.RandomZoom(augment, augment, fill_mode="constant", seed=seed + 2)(x)
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}, expected one of {', '.join(ARCHS)}")
    for filters in (conv_filters, conv_filters * 2):
        if arch == "strided":  # 28 -> 26 -> 24 -> 12, then 12 -> 10 -> 8 -> 4
            x = _conv_bn_relu(x, filters, 3, padding="valid")
            x = _conv_bn_relu(x, filters, 3, padding="valid")
            x = _conv_bn_relu(x, filters, 5, strides=2)
        else:  # 28 -> 14, then 14 -> 7
            x = _conv_bn_relu(x, filters, 3)
            x = _conv_bn_relu(x, filters, 3)
            x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout, seed=seed)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout, seed=seed)(x)
    outputs = layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        return OPTIMIZERS[name](learning_rate=learning_rate)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}, expected one of {', '.join(sorted(OPTIMIZERS))}") from None
