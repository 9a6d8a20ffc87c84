"""FLOP arithmetic: a model's forward FLOPs per image, TensorFlow's matmul rate in a precision, and a training
rate as a share of that matmul rate."""

from __future__ import annotations

import time

from bench.stats import significant


def model_forward_flops(model) -> int:
    """Multiply-adds x2 of the conv and dense layers for one image (the rest is noise)."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            flops += 2 * h * w * c_out * k_h * k_w * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """TensorFlow's n x n matmul rate in `dtype` on all cores."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.linalg.matmul(a, b).numpy()  # warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def matmul_share(images_per_s: float, flops_per_image: float, matmul_gflops: float) -> dict:
    """A training rate as GFLOP/s and as a share of the matmul rate of its precision, both computed from
    the unrounded figures, then each rounded to 3 significant digits."""
    effective = images_per_s * flops_per_image / 1e9
    return {"effective_gflops": significant(effective), "of_matmul": significant(effective / matmul_gflops)}
