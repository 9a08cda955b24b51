"""Pictures of a run as PNG bytes: training curves, runs overlaid, a confusion matrix.

matplotlib's object API with the Agg canvas: no pyplot global state, no
display needed, safe in a server thread.

    png = training_curves(run.history())  # bytes, ready to write or embed
"""

from __future__ import annotations

import io
import math

CURVES = (  # (title, [(metric in metrics.jsonl, legend label)])
    ("Loss", [("loss", "training"), ("val_loss", "validation")]),
    ("Learning rate", [("lr", "learning rate")]),
    ("Throughput (supervised tokens/s)", [("tokens_per_s", "tokens/s")]),
)


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric; after a resume a step may repeat, and the later value wins."""
    values = {row["step"]: row[key] for row in history if key in row and row[key] is not None}
    steps = sorted(values)
    return steps, [values[step] for step in steps]


def training_curves(history: list[dict], best_step: int | None = None) -> bytes:
    """Loss and validation loss, learning rate, and tokens/s against the optimiser step."""
    figure, axes = _figure(len(CURVES), width=5.0)
    for ax, (title, keys) in zip(axes, CURVES, strict=True):
        for key, label in keys:
            steps, values = series(history, key)
            if steps:
                ax.plot(steps, values, marker="o" if key == "val_loss" else None, markersize=3, label=label)
        if title == "Loss" and best_step is not None:
            ax.axvline(best_step, color="grey", linestyle=":", label=f"best (step {best_step})")
        _label(ax, title)
    return _png(figure)


def lr_range_curve(curve: dict, chosen: float | None = None) -> bytes:
    """The learning-rate range test of train.lr: auto: loss (raw and smoothed) against the lr, log scale."""
    figure, (ax,) = _figure(1, width=5.0)
    for key, label, style in (("losses", "loss", {"alpha": 0.4, "marker": "o", "markersize": 3}),
                              ("smoothed", "smoothed", {})):  # fmt: skip
        values = [math.nan if value is None else value for value in curve[key]]  # null: a diverged step
        ax.plot(curve["lrs"], values, label=label, **style)
    if chosen is not None:
        ax.axvline(chosen, color="grey", linestyle=":", label=f"chosen lr {chosen:.3g}")
    ax.set_xscale("log")
    _label(ax, "Learning-rate range test")
    ax.set_xlabel("learning rate")
    return _png(figure)


def runs_overlaid(histories: dict[str, list[dict]]) -> bytes:
    """Training and validation loss of several runs on shared axes, one colour per run."""
    figure, (train_ax, val_ax) = _figure(2, width=6.0)
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index % 10}"
        train_ax.plot(*series(history, "loss"), color=colour, label=name)
        val_ax.plot(*series(history, "val_loss"), color=colour, marker="o", markersize=3, label=name)
    _label(train_ax, "Training loss")
    _label(val_ax, "Validation loss")
    return _png(figure)


def confusion_matrix(labels: list[str], matrix: list[list[int]]) -> bytes:
    """Counts with true labels down and predicted labels across."""
    size = max(3.0, 0.6 * len(labels) + 1.5)
    figure, (ax,) = _figure(1, width=size, height=size)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(
                j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black"
            )
    return _png(figure)


def _figure(panels: int, width: float, height: float = 3.6):
    from tunery.libraries import require_extra

    require_extra("report", "plots (tunery report, tunery compare)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, panels, squeeze=False)[0]


def _label(ax, title: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize="small")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
