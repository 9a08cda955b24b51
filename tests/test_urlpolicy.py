"""The one rule for URLs from requests: http(s) only, no credentials, every resolved address public
unless the operator lists the host; the same check again at connect time."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tunery.urlpolicy import UrlNotAllowed, UrlPolicy, guarded_transport

PUBLIC = "93.184.216.34"
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def dns(monkeypatch):
    """Names of our own: `fake[name] = [addresses]`; the rest resolve as usual."""
    fake: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in fake:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in fake[host]]  # fmt: skip
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:////srv/x.db", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("FILE:///etc/passwd", "only http:// and https://"),
        ("mlruns", "only http:// and https://"),
        ("./mlflow.db", "only http:// and https://"),
        ("//127.0.0.1/x", "only http:// and https://"),
        ("gopher://127.0.0.1:6379/", "only http:// and https://"),
        ("http://127.0.0.1:5000", "loopback"),
        ("http://localhost:5000", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://017700000001/", "loopback"),
        ("http://[::1]:8000/v1", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 carrying 127.0.0.1
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.8/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "not a public address"),
        ("http://localtest.me/", "loopback"),  # a public name that resolves to loopback
        ("http://mixed.example/", "private"),  # one public address and one private: every one counts
        ("http://evil@127.0.0.1/", "credentials"),
        (f"http://{PUBLIC}@127.0.0.1/", "credentials"),
        ("http://127.0.0.1\\@93.184.216.34/", "backslashes"),
        ("http://exa mple.com/", "spaces"),
        (f"http://{PUBLIC}:99999/", "port"),
        ("http:///v1", "no host"),
        ("http://nowhere.invalid/", "cannot be resolved"),
    ],
)
def test_a_url_the_server_must_not_call_is_refused_saying_why(url, says, dns):
    dns |= {"localtest.me": ["127.0.0.1"], "mixed.example": [PUBLIC, "10.1.2.3"], "nowhere.invalid": []}
    dns.pop("nowhere.invalid")  # resolves as usual: not at all
    with pytest.raises(UrlNotAllowed) as caught:
        UrlPolicy.of([]).check(url, "judge.base_url")
    assert says in str(caught.value)
    assert caught.value.param == "judge.base_url" and caught.value.code == "url_not_allowed"


@pytest.mark.parametrize(
    "url",
    [f"http://{PUBLIC}/v1", f"HTTPS://{PUBLIC}:8443", "https://api.example/v1", "http://[2606:4700::1111]/"],
)
def test_public_http_urls_pass(url, dns):
    dns["api.example"] = [PUBLIC]
    UrlPolicy.of([]).check(url, "base_url")


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        (["127.0.0.1"], "http://127.0.0.1:5000"),
        (["127.0.0.1"], "http://2130706433:5000"),  # the same address in another spelling
        (["127.0.0.0/8"], "http://[::ffff:127.0.0.2]/"),
        (["10.0.0.0/8"], "http://10.9.9.9/"),
        (["mlflow.internal"], "http://MLflow.Internal.:5000"),  # by name: the operator trusts the name
        (["localhost"], "http://localhost:8000/v1"),
        (["::1"], "http://[::1]:8000/v1"),
    ],
)
def test_the_operator_allows_hosts_by_name_address_or_network(allowed, url, dns):
    dns["mlflow.internal"] = ["10.0.0.5"]
    UrlPolicy.of(allowed).check(url, "base_url")


def test_allowing_one_host_allows_no_other(dns):
    dns["mlflow.internal"] = ["10.0.0.5"]
    policy = UrlPolicy.of(["mlflow.internal", "127.0.0.1"])
    for url in ("http://10.0.0.5/", "http://127.0.0.2/", "http://169.254.169.254/", "file:///etc/passwd"):
        with pytest.raises(UrlNotAllowed):
            policy.check(url, "p")


def test_the_policy_travels_to_a_job_through_its_environment(monkeypatch):
    policy = UrlPolicy.of(["mlflow.internal", "10.0.0.0/8"])
    (name, value), = policy.job_env().items()  # fmt: skip
    monkeypatch.delenv(name, raising=False)
    assert UrlPolicy.for_this_job() is None  # `tunery train` on one's own machine: no policy
    monkeypatch.setenv(name, value)
    assert UrlPolicy.for_this_job() == policy


def test_settings_default_to_no_extra_hosts_and_keep_the_old_judge_setting(monkeypatch):
    from tunery.settings import Settings

    assert Settings().url_allow_hosts == []
    monkeypatch.setenv("TUNERY_REVIEW_JUDGE_HOSTS", '["judge.internal"]')
    monkeypatch.setenv("TUNERY_URL_ALLOW_HOSTS", '["10.0.0.0/8"]')
    assert Settings().url_policy == UrlPolicy.of(["judge.internal", "10.0.0.0/8"])


class Hits(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):
        Hits.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_name_that_resolves_elsewhere_at_connect_time_is_refused_there(dns):
    """DNS rebinding: public when the request was checked, loopback when the client connects."""
    import httpx2

    server = HTTPServer(("127.0.0.1", 0), Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    dns["rebind.example"] = [PUBLIC]
    policy = UrlPolicy.of([])
    policy.check(f"http://rebind.example:{port}/v1", "base_url")
    dns["rebind.example"] = ["127.0.0.1"]

    async def call():
        async with httpx2.AsyncClient(transport=guarded_transport(policy, "base_url")) as client:
            await client.get(f"http://rebind.example:{port}/v1")

    try:
        with pytest.raises(UrlNotAllowed, match="loopback"):
            asyncio.run(call())
        assert Hits.seen == []
        allowed = UrlPolicy.of(["127.0.0.1"])  # once allowed, the same transport connects to the address

        async def call_allowed():
            async with httpx2.AsyncClient(transport=guarded_transport(allowed, "base_url")) as client:
                return (await client.get(f"http://rebind.example:{port}/v1")).status_code

        assert asyncio.run(call_allowed()) == 200 and Hits.seen == ["/v1"]
    finally:
        server.shutdown()
