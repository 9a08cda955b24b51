"""Spot overfitting in a run's history: validation loss rising while training loss falls.

Read from the logged metrics (one row per step with `loss`, one per evaluation
with `val_loss`), so the check survives a resume. Training loss for an
evaluation is the mean of the steps logged since the previous one: single
steps are too noisy to say whether it falls.

    overfitting_warning(run.history(), patience=2)  # None, or a sentence saying what was seen
"""

from __future__ import annotations


def overfitting_warning(history: list[dict], patience: int) -> str | None:
    """A warning when the last `patience` evaluations each raised validation loss and training loss fell."""
    points = evaluation_points(history)
    if len(points) < patience + 1:
        return None
    window = points[-(patience + 1) :]
    rising = all(later[1] > earlier[1] for earlier, later in zip(window, window[1:], strict=False))
    first_train, last_train = window[0][2], window[-1][2]
    falling = first_train is not None and last_train is not None and last_train < first_train
    if not (rising and falling):
        return None
    (start, val_start, _), (step, val_now, _) = window[0], window[-1]
    return (
        f"overfitting: validation loss rose {patience} evaluations in a row "
        f"({val_start:.4f} at step {start} -> {val_now:.4f} at step {step}) while training loss fell "
        f"({first_train:.4f} -> {last_train:.4f}); the best checkpoint is earlier (see best_step, train.load_best)"
    )


def evaluation_points(history: list[dict]) -> list[tuple[int, float, float | None]]:
    """(step, validation loss, mean training loss since the previous evaluation) per evaluation.

    After a resume, steps may be logged twice; the later line wins.
    """
    val = {row["step"]: row["val_loss"] for row in history if "val_loss" in row}
    train = {row["step"]: row["loss"] for row in history if "loss" in row}
    points, previous = [], 0
    for step in sorted(val):
        window = [loss for s, loss in train.items() if previous < s <= step]
        points.append((step, val[step], sum(window) / len(window) if window else None))
        previous = step
    return points
