"""Issue 21 in a real browser: a page on another loopback port (same-site, another origin) tries to
change the signed-in user's project with auto-submitting forms and `fetch(..., {credentials: "include"})`;
nothing changes. Then sign-out and key revocation end the session at once, even for a kept cookie.

Before the fix the form deleted the model and the fetch uploaded a file (SameSite=Strict does not
separate ports). Debian's Chromium, headless, through Playwright; skipped when it is missing.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import httpx2
import pytest

from tests.service.conftest import Service

pytestmark = pytest.mark.slow
MODEL = "ft:tiny:team-a:ftjob-csrf"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("csrf"), {}).start()
    yield running
    running.stop()


def attacker_page(target: str, attacker_key: str) -> bytes:
    """Three forged requests, all sent the moment the page loads."""
    return f"""<!doctype html><html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="delete" method="post" action="{target}/ui/models/delete" target="sink1">
  <input name="id" value="{MODEL}"></form>
<form id="signin" method="post" action="{target}/signin" target="sink2">
  <input name="api_key" value="{attacker_key}"><input name="next" value="/jobs"></form>
<script>
document.getElementById("delete").submit();
document.getElementById("signin").submit();
const data = new FormData();
data.append("file", new Blob(['{{"messages": [{{"role": "user", "content": "a"}}, {{"role": "assistant", "content": "b"}}]}}\\n']), "evil.jsonl");
fetch("{target}/ui/files", {{method: "POST", body: data, credentials: "include", mode: "no-cors"}})
  .finally(() => {{ document.title = "sent"; }});
</script></body></html>""".encode()


@pytest.fixture
def attacker(server):
    """A page served from another loopback port: same site as the dashboard, not the same origin."""
    body = attacker_page(server.url, server.key("team-evil"))

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def add_model(server: Service) -> None:
    from tunery.store import connect, session_factory
    from tunery.store.tables import Model

    with session_factory(connect(f"sqlite:///{server.home / 'service' / 'tunery.db'}")).begin() as session:
        session.add(Model(id=MODEL, project="team-a", base_model="tiny", path="jobs/x/adapter", lineage={}))


def get(server: Service, key: str, path: str) -> dict:
    answer = httpx2.get(server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def sign_in(page, key: str) -> None:
    page.goto("/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/jobs")


def test_a_same_site_page_on_another_port_changes_nothing(browser, server, attacker):
    key = server.key("team-a")
    add_model(server)
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    sign_in(page, key)
    assert urlparse(attacker).port != urlparse(server.url).port
    page.goto(attacker)
    for _ in range(40):
        if page.title() == "sent":
            break
        page.wait_for_timeout(250)
    page.wait_for_timeout(1500)  # the forms' answers land in their frames
    assert page.title() == "sent"
    assert [m["id"] for m in get(server, key, "/v1/models")["data"] if m["id"] == MODEL] == [MODEL]
    assert get(server, key, "/v1/files")["data"] == []
    page.goto("/jobs")
    assert page.locator(".project").inner_text() == "team-a"  # not signed in as the attacker's project
    context.close()


def test_sign_out_and_revoke_end_the_session_at_once(browser, server):
    key = server.key("team-a")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    sign_in(page, key)
    kept = [c for c in context.cookies() if c["name"] == "tunery_session"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    context.add_cookies(kept)  # the old cookie, as someone who copied it would send it
    page.goto("/jobs")
    assert urlparse(page.url).path == "/signin"

    sign_in(page, key)
    (mine,) = [k for k in get(server, key, "/api/keys")["data"] if k["prefix"] == key[:10]]
    revoked = httpx2.delete(f"{server.url}/api/keys/{mine['id']}", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status_code == 200
    page.goto("/jobs")
    assert urlparse(page.url).path == "/signin"
    context.close()
