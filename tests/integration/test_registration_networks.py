"""--registration-networks: /register, /heartbeat and /unregister answer
only to addresses in the list, on top of the key. An address outside gets
403 even with the right key; inside, the key decides as before."""

import json

import pytest

from fleet import post, registration, servers
from fromaddr import http_from, json_error

REFUSED = "registration is not allowed from this address"
FAST = ["--heartbeat-interval", "200", "--server-timeout", "30s"]


def call(g, path, body, source="127.0.0.1"):
    """POSTs JSON to the HTTP port from `source`; returns (status, body)."""
    ans = http_from(g.http_port, source, path, method="POST", body=body)
    return ans.status, json.loads(ans.body) if ans.body else None


@pytest.mark.parametrize("networks", ["10.0.0.0/8", "192.168.0.0/16,10.1.2.3", "::1"])
def test_outside_the_networks_gets_403_even_with_the_key(make_gateway, networks):
    g = make_gateway(args=FAST + ["--registration-networks", networks])
    r = post(g, "/register", registration(g, "b1"))
    assert r.status_code == 403, r.text
    assert r.json()["error"] == REFUSED
    assert servers(g) == {}
    # The other two calls as well, and without a key the answer is the same.
    for path, body in (("/heartbeat", {"serverId": "b1", "activeConnections": 0,
                                       "authKey": g.key}),
                       ("/unregister", {"serverId": "b1", "authKey": g.key}),
                       ("/register", {**registration(g, "b2"), "authKey": "wrong-key-wrong-key"})):
        r = post(g, path, body)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"] == REFUSED
    g.wait_log(r"registration refused: address not in REGISTRATION_NETWORKS")
    # Everything else on the port is unaffected.
    assert g.get("/healthz").status_code == 200
    assert g.get("/readyz").status_code == 503  # no backend registered


@pytest.mark.parametrize("networks", ["127.0.0.0/8", "10.0.0.0/8,127.0.0.1", "127.0.0.1/32"])
def test_inside_the_networks_the_key_decides(make_gateway, networks):
    g = make_gateway(args=FAST + ["--registration-networks", networks])
    r = post(g, "/register", {**registration(g, "b1"), "authKey": "wrong-key-wrong-key"})
    assert r.status_code == 401, r.text
    r = post(g, "/register", registration(g, "b1"))
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True
    assert "b1" in servers(g)
    r = post(g, "/heartbeat", {"serverId": "b1", "activeConnections": 2, "authKey": g.key})
    assert r.status_code == 200, r.text
    r = post(g, "/unregister", {"serverId": "b1", "authKey": g.key})
    assert r.status_code == 200, r.text
    assert servers(g) == {}


def test_single_address_among_loopback(make_gateway):
    """127.0.0.2 is allowed, 127.0.0.1 and 127.0.0.3 are not."""
    g = make_gateway(args=FAST + ["--registration-networks", "127.0.0.2"])
    for source in ("127.0.0.1", "127.0.0.3"):
        status, body = call(g, "/register", registration(g, "b1"), source)
        assert (status, body["error"]) == (403, REFUSED), source
    status, body = call(g, "/register", registration(g, "b1"), "127.0.0.2")
    assert status == 200, body
    status, body = call(g, "/heartbeat", {"serverId": "b1", "activeConnections": 0,
                                          "authKey": g.key}, "127.0.0.3")
    assert status == 403, body
    status, body = call(g, "/heartbeat", {"serverId": "b1", "activeConnections": 0,
                                          "authKey": g.key}, "127.0.0.2")
    assert status == 200, body
    assert "b1" in servers(g)


def test_refusal_is_json_with_security_headers(make_gateway):
    g = make_gateway(args=FAST + ["--registration-networks", "10.0.0.0/8"])
    ans = http_from(g.http_port, "127.0.0.1", "/register", method="POST",
                    body=registration(g, "b1"))
    json_error(ans, 403, REFUSED)
    assert ans.header("X-Content-Type-Options") == "nosniff"
    assert ans.header("Cache-Control") == "no-store"


def test_no_networks_means_any_address(make_gateway):
    g = make_gateway(args=FAST)
    for i, source in enumerate(("127.0.0.1", "127.0.0.5")):
        status, body = call(g, "/register", registration(g, f"b{i}"), source)
        assert status == 200, body
