"""The New job form offers task preference with the losses of the config, and its request is the API's."""

from __future__ import annotations

import json
from typing import get_args

from tests.conftest import write_jsonl
from tests.tasks.preference_rows import pair_rows
from tunery.config import PreferenceConfig


def test_the_form_offers_the_preference_task_and_every_loss(signed_in):
    page = signed_in.get("/jobs/new").text
    assert '<option value="preference">' in page and 'id="preference-beta" name="preference.beta"' in page
    for loss in get_args(PreferenceConfig.model_fields["loss"].annotation):
        assert f'<option value="{loss}"' in page
    assert 'data-for-task="preference" hidden' in page  # shown by job_new.js for task preference only


def test_a_pairs_upload_is_kept_and_a_dpo_request_from_the_form_is_checked_like_the_api(
    signed_in, key, tmp_path
):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4, "openai"))
    uploaded = signed_in.post("/ui/files", files={"file": ("pairs.jsonl", pairs.read_bytes())})
    assert uploaded.status_code == 200, uploaded.text
    listed = signed_in.get("/v1/files", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    file_id = next(f["id"] for f in listed if f["filename"] == "pairs.jsonl")
    # What job_new.js sends for task preference, loss dpo, with a bad beta: refused, naming beta.
    body = {"model": "smollm2-135m-instruct", "training_file": file_id,
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}, "tunery": {"method": "lora"}}  # fmt: skip
    answer = signed_in.post("/ui/jobs", json=body)
    assert answer.status_code == 400 and "beta" in json.dumps(answer.json())
