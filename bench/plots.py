"""The pictures the bench saves beside its figures."""

from __future__ import annotations

from pathlib import Path


def plot_errors(images, errors: list[dict], path: Path) -> None:
    """The hold-out digits the ensemble gets wrong, one tile each: a glance tells a model error from a bad label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 8
    rows = max(1, -(-len(errors) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, error in zip(axes.flat, images, errors, strict=False):  # the grid may have spare axes
        ax.imshow(image.reshape(28, 28), cmap="gray_r")
        ax.set_title(
            f"line {error['train_csv_line']}\nlabel {error['label']}, says {error['predicted']}\n"
            f"p(label) {error['p_label']:.2f}",
            fontsize=7,
        )
    fig.suptitle(f"{len(errors)} hold-out errors of the retrained ensemble", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
