"""The job's audit page: a button that starts the API's background audit, then the flagged rows, escaped."""

from __future__ import annotations

from tests.service import test_audits as api
from tests.web.conftest import make_key, sign_in, token_in

JOB, wait_until_done = api.JOB, api.wait_until_done
client, finished_run = api.client, api.finished_run  # the API tests' fixtures: a succeeded job and its run


def test_the_audit_page_starts_an_audit_and_lists_the_flagged_rows_escaped(client):
    del client.headers["Authorization"]
    assert sign_in(client, make_key(client, "team-a")).status_code == 303
    page = client.get(f"/jobs/{JOB}/audit")
    assert page.status_code == 200 and "Run the audit" in page.text
    assert f'href="/jobs/{JOB}/audit"' in client.get(f"/jobs/{JOB}").text  # linked from the job page
    assert client.post(f"/ui/jobs/{JOB}/audit", data={"csrf_token": "forged"}).status_code == 403
    form = {"csrf_token": token_in(page.text)}
    started = client.post(f"/ui/jobs/{JOB}/audit", data=form, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"] == f"/jobs/{JOB}/audit"
    from tunery.service.domain.audits import list_audits

    with client.app.state.sessions.begin() as session:
        audit_id = list_audits(session, "team-a", client.app.state.test_settings, JOB)[0]["id"]
    client.headers["Authorization"] = f"Bearer {make_key(client, 'team-a')}"
    done = wait_until_done(client, audit_id)
    del client.headers["Authorization"]
    page = client.get(f"/jobs/{JOB}/audit").text
    assert f"{done['summary']['rows']} rows" in page and 'id="audit-table"' in page
    assert "<script>alert('row')" not in page and "&lt;script&gt;alert(&#39;row&#39;)" in page
    assert "the same row as line 5" in page
