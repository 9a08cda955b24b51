"""A server's features that load models, all at once in threads: the engine (chat and blind reviews),
a GGUF export and an audit each build models with from_pretrained while the others do. Builds take
turns (`tunery.models.model_construction`), so none fails and transformers' swapped functions are
all back in place afterwards; before, the race left stand-ins behind and every later load of a
tied-embedding model failed ("Cannot copy out of meta tensor")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import swappable_globals, swapped_since
from tests.serve.conftest import train_tiny_run

ROUNDS = 3  # each feature loads this many times while the others load


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    return train_tiny_run(tiny_model_dir, tmp_path_factory.mktemp("concurrent-loads"), "run", seed=1)


def test_serving_an_export_an_audit_and_a_review_loading_at_once_leave_nothing_swapped(
    tiny_model_dir, finished_run, tmp_path
):
    from tunery.evaluate.audit import audit_run
    from tunery.gguf_export import export_gguf
    from tunery.serve.engine import Engine, Target

    base = Target.for_base(str(tiny_model_dir))
    own_model = Target(base=base.base, run_dir=finished_run, shared=False)  # a review's run: load_run_model

    def serve(round_: int) -> None:
        Engine(device="cpu").slot(base)

    def review(round_: int) -> None:
        Engine(device="cpu").slot(own_model)

    def export(round_: int) -> None:
        export_gguf(finished_run, tmp_path / f"model-{round_}.gguf", quant="f16")

    def audit(round_: int) -> None:
        audit_run(finished_run, out=tmp_path / f"audit-{round_}")

    serve(0)  # transformers' modules imported: every swappable place is in `before`
    before = swappable_globals()

    def rounds_of(feature) -> None:
        for round_ in range(ROUNDS):
            feature(round_)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(rounds_of, feature) for feature in (serve, review, export, audit)]
    assert [future.exception() for future in futures] == [None] * 4
    assert swapped_since(before) == []
    slot = Engine(device="cpu").slot(base)  # a tied model still loads
    assert slot.model.lm_head.weight is slot.model.model.embed_tokens.weight
