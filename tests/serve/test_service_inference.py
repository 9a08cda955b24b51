"""The inference routes inside `tunery serve`: keys as for every endpoint, registry ids resolved per project."""

from __future__ import annotations

import httpx2
import openai
import pytest

from tests.service.conftest import Service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("service-inference")
    running = Service(home, {}).start()
    yield running
    running.stop()


def test_a_key_is_needed_and_an_unknown_fine_tuned_id_is_404(service):
    body = {"model": "ft:tiny:x:ftjob-none", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx2.post(f"{service.url}/v1/chat/completions", json=body).status_code == 401
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key=service.key("team-a"), max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(**body)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="ft:tiny:x:ftjob-none", messages=[])
