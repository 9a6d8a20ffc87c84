"""The CNN: two conv blocks, a dense head, and optional augmentation layers that
are active only while training. Two block shapes (`arch`):

- "strided": conv3-conv3 (valid padding) then a 5x5 stride-2 conv that learns its
  own down-sampling (the 32C3-32C3-32C5S2 / 64C3-64C3-64C5S2 family from the
  public Kaggle architecture study); the default.
- "pool": conv3-conv3 (same padding) then 2x2 max-pooling.

Every block is conv-BN-ReLU and ends in dropout; every knob is a trial flag, and
every default is `TrialConfig`'s."""

from __future__ import annotations

import math
from dataclasses import replace

import keras
import tensorflow as tf
from keras import layers

from trial.config import TrialConfig

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True),
}


@keras.saving.register_keras_serializable(package="katib_digits")
class RandomAffine(layers.Layer):
    """Rotate up to `strength` x 100 degrees, zoom each axis and shift by up to `strength` (0.1: 10 degrees,
    10 %), as ONE affine resampling per image while training; identity at inference.

    Keras' RandomRotation/RandomTranslation/RandomZoom chained resample three times, and each bilinear
    pass blurs a 28x28 digit further from what the model sees at test time."""

    def __init__(self, strength: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.strength, self.seed = strength, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.strength <= 0:
            return images
        n = tf.shape(images)[0]
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)

        def uniform(limit):
            return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

        angle = uniform(self.strength * 100 * math.pi / 180)
        zoom_x, zoom_y = 1 + uniform(self.strength), 1 + uniform(self.strength)
        shift_x, shift_y = uniform(self.strength) * width, uniform(self.strength) * height
        # Output pixel (x, y) samples input A (x - c) + c + shift, with A = rotation x zoom, about the centre c.
        cos, sin = tf.cos(angle), tf.sin(angle)
        a00, a01, a10, a11 = cos * zoom_x, -sin * zoom_y, sin * zoom_x, cos * zoom_y
        cx, cy = (width - 1) / 2, (height - 1) / 2
        transforms = tf.stack(
            [
                a00,
                a01,
                cx + shift_x - a00 * cx - a01 * cy,
                a10,
                a11,
                cy + shift_y - a10 * cx - a11 * cy,
                tf.zeros_like(angle),
                tf.zeros_like(angle),
            ],
            axis=1,
        )
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=transforms,
            output_shape=tf.shape(images)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


@keras.saving.register_keras_serializable(package="katib_digits")
class DebiasedBatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose moving statistics are bias-corrected at inference, as Adam corrects its moments.

    Keras starts them at mean 0 and variance 1 and blends in (1 - momentum) of each batch, so after a short epoch
    (21 steps: 2,700 rows at batch size 128) inference still leans on those initial values and a model that
    trains well scores chance (0.10) on validation: a false first report that skews medianstop's threshold.
    Dividing out the initial values' remaining weight (momentum ** steps) fixes that; after a few hundred
    steps the correction is nil, so long runs are unchanged.

    Training on conv feature maps runs TensorFlow's fused batch-norm kernel, the same arithmetic as Keras'
    op-by-op moments (which took a quarter of a float32 epoch and a third of a bfloat16 one, casting to
    float32 and back around every layer: README Results, "Where one training epoch goes")."""

    def build(self, input_shape):
        super().build(input_shape)
        self.steps = self.add_weight(shape=(), name="steps", initializer="zeros", trainable=False, autocast=False)

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable:
            self.steps.assign_add(1.0)
            if (
                mask is None
                and len(inputs.shape) == 4
                and self.axis in (-1, 3)
                and self.center
                and self.scale
                and not self.renorm
                and not self.synchronized
                and self.epsilon > 1.001e-5
            ):  # the kernel's limits
                return self._fused_training_step(inputs)
            return super().call(inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError("DebiasedBatchNormalization does not take a mask")
        # Weight the initial values (mean 0, variance 1: Keras' defaults) still hold; 0 before any training step.
        left = tf.where(self.steps > 0, tf.pow(self.momentum, self.steps), 0.0)
        mean = self.moving_mean / (1.0 - left)
        variance = (self.moving_variance - left) / (1.0 - left)
        return keras.ops.batch_normalization(
            inputs,
            mean,
            variance,
            axis=self.axis,
            offset=self.beta if self.center else None,
            scale=self.gamma if self.scale else None,
            epsilon=self.epsilon,
        )

    def _fused_training_step(self, inputs):
        """Normalize NHWC `inputs` by their batch moments and update the moving ones, as Keras' own training
        step does, in one kernel (bfloat16 or float16 in and out, float32 statistics inside)."""
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )[:3]
        # The kernel returns the batch variance Bessel-corrected (n - 1); Keras keeps the biased one (n).
        n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)
        variance = variance * (n - 1.0) / n
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


def _batch_norm():
    return DebiasedBatchNormalization(momentum=0.9)


def _conv_bn_relu(x, filters: int, kernel: int, strides: int = 1, padding: str = "same"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = _batch_norm()(x)
    return layers.ReLU()(x)


def build_model(config: TrialConfig | None = None, **overrides) -> keras.Model:
    """The CNN `config` describes (default `TrialConfig()`), with keyword `overrides` of its fields,
    e.g. `build_model(conv_filters=8)`. Bad values raise ValueError naming them.

    Inputs are raw pixels (0-255, shape [28, 28, 1]); the model rescales itself,
    so a saved model predicts straight from the CSV's values."""
    c = replace(config or TrialConfig(), **overrides)
    inputs = keras.Input(shape=(28, 28, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    if c.augment > 0:
        # `augment` is one strength: 0.1 = rotate up to 10 degrees, shift and zoom up to 10 %.
        x = RandomAffine(c.augment, seed=c.seed, name="random_affine")(x)
    for filters in (c.conv_filters, c.conv_filters * 2):
        if c.arch == "strided":  # 28 -> 26 -> 24 -> 12, then 12 -> 10 -> 8 -> 4
            x = _conv_bn_relu(x, filters, 3, padding="valid")
            x = _conv_bn_relu(x, filters, 3, padding="valid")
            x = _conv_bn_relu(x, filters, 5, strides=2)
        else:  # "pool" (TrialConfig refuses any other arch): 28 -> 14, then 14 -> 7
            x = _conv_bn_relu(x, filters, 3)
            x = _conv_bn_relu(x, filters, 3)
            x = layers.MaxPooling2D()(x)
        x = layers.Dropout(c.dropout, seed=c.seed)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(c.dense_units, use_bias=False)(x)
    x = _batch_norm()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(c.dropout, seed=c.seed)(x)
    # float32 whatever the policy: a softmax in bfloat16 rounds probabilities to 3 digits
    outputs = layers.Dense(10, activation="softmax", name="digit", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    try:
        return OPTIMIZERS[name](learning_rate=learning_rate)
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}, expected one of {', '.join(sorted(OPTIMIZERS))}") from None
