"""Who may use the dashboard and the admin API: POST /api/login gives a
dashboard_session cookie (HttpOnly, SameSite=Strict, Max-Age from
--dashboard-session-ttl) that works until /api/logout or until it expires;
a bearer key or "authKey" in the body work too; everything else gets 401
and changes nothing. Logins are throttled per client address
(--login-attempts, then 429 with Retry-After). The dashboard page and its
assets carry a Content-Security-Policy with no outside source, X-Frame-Options
DENY and X-Content-Type-Options nosniff, and refer to nothing elsewhere."""

import asyncio
import http.client
import json
import re
import subprocess
import time
from html.parser import HTMLParser

import pytest
import requests
import websockets

from harness import free_port, run

WRONG = "this-is-not-the-gateway-key"


def login(g, key=None, session=None):
    s = session or requests
    return s.post(g.http_url("/api/login"), json={"authKey": g.key if key is None else key},
                  timeout=3)


def cookie_of(r):
    """The dashboard_session value and the attributes of its Set-Cookie."""
    header = r.headers.get("Set-Cookie")
    assert header, r.headers
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    assert name == "dashboard_session", header
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return value, attrs


def with_cookie(token):
    return {"Cookie": f"dashboard_session={token}"}


def calls(g, headers=None, body_extra=None):
    """Every admin call, as (label, status). Mutations name things that do
    not exist (so an authorised call answers 404, never 2xx) or the whole
    gateway (drain {}), so the caller checks readiness after."""
    h = headers or {}
    extra = body_extra or {}
    url = g.http_url
    out = []
    for path in ("/api/stats", "/api/history", "/api/connections"):
        out.append((f"GET {path}", requests.get(url(path), headers=h, timeout=3).status_code))
    for path, body in (("/drain", {}), ("/undrain", {"serverId": "nobody"}),
                       ("/drain", {"serverId": "nobody"}),
                       ("/disconnect", {"clientId": "victim", "code": 4000})):
        r = requests.post(url(path), json={**body, **extra}, headers=h, timeout=3)
        out.append((f"POST {path} {json.dumps(body)}", r.status_code))
    return out


# ---- login, cookie, logout ------------------------------------------------------------


def test_login_sets_a_strict_http_only_cookie_that_authorises(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--dashboard-session-ttl", "90s"])
    r = login(g)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True and isinstance(answer["sessionToken"], str)
    token, attrs = cookie_of(r)
    assert token == answer["sessionToken"] and len(token) >= 32
    assert "httponly" in attrs, attrs
    assert attrs.get("samesite", "").lower() == "strict", attrs
    assert attrs.get("max-age") == "90", attrs
    assert attrs.get("path", "/") == "/", attrs
    assert g.key not in r.headers["Set-Cookie"]

    s = requests.get(g.http_url("/api/stats"), headers=with_cookie(token), timeout=3)
    assert s.status_code == 200 and "servers" in s.json()
    assert requests.get(g.http_url("/api/history"), headers=with_cookie(token),
                        timeout=3).status_code == 200
    assert requests.get(g.http_url("/api/connections"), headers=with_cookie(token),
                        timeout=3).status_code == 200
    # Among the other cookies a browser sends.
    for header in (f"theme=dark; dashboard_session={token}", f"dashboard_session={token}; a=1",
                   f"a=1;dashboard_session={token}; b=2"):
        r = requests.get(g.http_url("/api/stats"), headers={"Cookie": header}, timeout=3)
        assert r.status_code == 200, header
    # Two logins are two sessions.
    other, _ = cookie_of(login(g))
    assert other != token


def test_the_cookie_is_secure_over_tls(make_gateway, tmp_path):
    """Served over HTTPS, the session cookie must never go back over plain
    HTTP: it carries Secure."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    admin_port = free_port()
    g = make_gateway([], args=["--admin-bind", f"127.0.0.1:{admin_port}", "--admin-tls", "true",
                               "--tls-cert", cert, "--tls-key", key])
    r = requests.post(f"https://127.0.0.1:{admin_port}/api/login", json={"authKey": g.key},
                      verify=str(cert), timeout=3)
    assert r.status_code == 200, r.text
    token, attrs = cookie_of(r)
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "strict", attrs
    assert "secure" in attrs, f"no Secure on an HTTPS session cookie: {r.headers['Set-Cookie']}"


def test_default_session_lifetime_is_an_hour(make_gateway):
    g = make_gateway([])
    _, attrs = cookie_of(login(g))
    assert attrs.get("max-age") == "3600", attrs


def test_the_cookie_authorises_mutations_end_to_end(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    token = login(g).json()["sessionToken"]

    async def body():
        victim = await websockets.connect(g.ws_url("/?clientId=victim"))
        r = requests.post(g.http_url("/disconnect"), headers=with_cookie(token), timeout=3,
                          json={"clientId": "victim", "code": 4003, "reason": "by cookie"})
        assert r.status_code == 200, r.text
        await asyncio.wait_for(victim.wait_closed(), 5)
        assert (victim.close_code, victim.close_reason) == (4003, "by cookie")

    run(body())
    r = requests.post(g.http_url("/drain"), data=b"", headers=with_cookie(token), timeout=3)
    assert r.status_code == 200, r.text
    assert g.get("/readyz").status_code == 503
    r = requests.post(g.http_url("/undrain"), json={}, headers=with_cookie(token), timeout=3)
    assert r.status_code == 200, r.text
    assert g.get("/readyz").status_code == 200


def test_logout_ends_the_session(make_gateway):
    g = make_gateway([])
    token = login(g).json()["sessionToken"]
    keep = login(g).json()["sessionToken"]
    assert requests.get(g.http_url("/api/stats"), headers=with_cookie(token),
                        timeout=3).status_code == 200
    r = requests.post(g.http_url("/api/logout"), headers=with_cookie(token), timeout=3)
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    # The browser is told to forget the cookie, and the gateway forgot it.
    _, attrs = cookie_of(r)
    assert attrs.get("max-age") == "0" or "expires" in attrs, attrs
    for path in ("/api/stats", "/api/history", "/api/connections"):
        r = requests.get(g.http_url(path), headers=with_cookie(token), timeout=3)
        assert r.status_code == 401, (path, r.status_code)
    r = requests.post(g.http_url("/drain"), json={}, headers=with_cookie(token), timeout=3)
    assert r.status_code == 401
    assert g.get("/readyz").json()["status"] != "draining"  # the refused drain did nothing
    # Another session is untouched.
    assert requests.get(g.http_url("/api/stats"), headers=with_cookie(keep),
                        timeout=3).status_code == 200


@pytest.mark.timeout(30)
def test_an_expired_cookie_is_refused(make_gateway, echo_backend):
    g = make_gateway([echo_backend], args=["--dashboard-session-ttl", "2s"])
    r = login(g)
    token, attrs = cookie_of(r)
    assert attrs.get("max-age") == "2", attrs
    assert requests.get(g.http_url("/api/stats"), headers=with_cookie(token),
                        timeout=3).status_code == 200
    time.sleep(2.5)
    for label, status in calls(g, with_cookie(token)):
        assert status == 401, (label, status)
    assert g.get("/readyz").status_code == 200  # the refused drain did nothing


def test_wrong_or_missing_key_gets_401_and_no_cookie(make_gateway):
    g = make_gateway([])
    for body in ({"authKey": WRONG}, {"authKey": g.key[:-1]}, {"authKey": g.key + "x"},
                 {"authKey": ""}, {"authKey": 12345}, {}, {"key": g.key}):
        r = requests.post(g.http_url("/api/login"), json=body, timeout=3)
        assert r.status_code == 401, (body, r.status_code, r.text)
        assert "Set-Cookie" not in r.headers or "dashboard_session=;" in r.headers["Set-Cookie"]
        assert r.json().get("success") is False
    r = requests.post(g.http_url("/api/login"), data=b"{not json", timeout=3,
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 401), r.text
    assert "Set-Cookie" not in r.headers


# ---- everything refused without credentials ----------------------------------------------


def test_admin_calls_refused_without_valid_credentials(make_gateway, echo_backend):
    g = make_gateway([echo_backend])

    async def body():
        victim = await websockets.connect(g.ws_url("/?clientId=victim"))
        attempts = {
            "nothing": {},
            "wrong bearer": {"Authorization": f"Bearer {WRONG}"},
            "key without Bearer": {"Authorization": g.key},
            "basic auth": {"Authorization": "Basic " + "a2V5OmtleQ=="},
            "forged cookie": with_cookie("0" * 64),
            "key as cookie": with_cookie(g.key),
        }
        for what, headers in attempts.items():
            for label, status in calls(g, headers):
                assert status == 401, (what, label, status)
        for label, status in calls(g, body_extra={"authKey": WRONG}):
            assert status == 401, ("wrong authKey in body", label, status)
        # Nothing changed: still ready, the victim still echoes.
        assert g.get("/readyz").status_code == 200
        await victim.send("alive")
        assert await asyncio.wait_for(victim.recv(), 5) == "alive"
        await victim.close()

    run(body())


def test_bearer_key_and_body_key_authorise(make_gateway, echo_backend):
    g = make_gateway([echo_backend])
    results = dict(calls(g, {"Authorization": f"Bearer {g.key}"}))
    assert results.pop('POST /drain {}') == 200
    assert results.pop('POST /disconnect {"clientId": "victim", "code": 4000}') == 404
    assert results.pop('POST /undrain {"serverId": "nobody"}') == 404
    assert results.pop('POST /drain {"serverId": "nobody"}') == 404
    assert set(results.values()) == {200}, results
    assert g.get("/readyz").status_code == 503
    r = requests.post(g.http_url("/undrain"), json={"authKey": g.key}, timeout=3)
    assert r.status_code == 200, r.text
    assert g.get("/readyz").status_code == 200


# ---- login throttling --------------------------------------------------------------------


def post_from(source_ip, port, body):
    """POST /api/login from a given loopback source address; (status, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3, source_address=(source_ip, 0))
    try:
        conn.request("POST", "/api/login", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status, r.headers
    finally:
        conn.close()


def test_login_attempts_are_throttled_per_address(make_gateway):
    g = make_gateway([], args=["--login-attempts", "3"])
    for i in range(3):
        status, _ = post_from("127.0.0.1", g.http_port, {"authKey": WRONG})
        assert status == 401, (i, status)
    status, headers = post_from("127.0.0.1", g.http_port, {"authKey": WRONG})
    assert status == 429
    retry = headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, retry
    # The right key does not get past the throttle either.
    status, headers = post_from("127.0.0.1", g.http_port, {"authKey": g.key})
    assert status == 429 and "dashboard_session" not in (headers.get("Set-Cookie") or "")
    # Another address has its own allowance.
    status, headers = post_from("127.0.0.2", g.http_port, {"authKey": g.key})
    assert status == 200 and "dashboard_session=" in headers.get("Set-Cookie", "")
    # The throttle is on logins only: a bearer key still works from the first.
    r = requests.get(g.http_url("/api/stats"), headers={"Authorization": f"Bearer {g.key}"},
                     timeout=3)
    assert r.status_code == 200


def test_the_throttle_lets_logins_through_again_after_retry_after(make_gateway):
    g = make_gateway([], args=["--login-attempts", "60"])  # one more each second
    # Sixty at once (a slow machine may earn one or two more meanwhile).
    statuses = []
    while len(statuses) < 80:
        status, headers = post_from("127.0.0.4", g.http_port, {"authKey": WRONG})
        if status == 429:
            break
        statuses.append(status)
    assert set(statuses) == {401} and 60 <= len(statuses) < 80, statuses
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= 2, wait
    time.sleep(wait + 0.2)
    status, headers = post_from("127.0.0.4", g.http_port, {"authKey": g.key})
    assert status == 200 and "dashboard_session=" in headers.get("Set-Cookie", "")


def test_default_login_allowance_is_ten_a_minute(make_gateway):
    g = make_gateway([])
    statuses = [post_from("127.0.0.3", g.http_port, {"authKey": WRONG})[0] for _ in range(11)]
    assert statuses == [401] * 10 + [429], statuses


# ---- the dashboard page ------------------------------------------------------------------------


class Refs(HTMLParser):
    """Every URL the page refers to in an attribute that loads something."""

    LOADING = {"src", "href", "action", "data", "poster", "srcset", "formaction", "background"}

    def __init__(self):
        super().__init__()
        self.urls = []
        self.icons = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and "icon" in (attrs.get("rel") or "").lower().split():
            self.icons.append(attrs.get("href") or "")
        for k, v in attrs.items():
            if k in self.LOADING and v is not None:
                self.urls.append((tag, k, v))
            if k == "style" or k.startswith("on"):
                self.inline_styles += k == "style"
                self.inline_scripts += k.startswith("on")
        if tag == "script" and "src" not in attrs:
            self._in_script = True
        if tag == "style":
            self.inline_styles += 1

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1


def same_origin(url):
    return not re.match(r"^([a-z][a-z0-9+.-]*:|//)", url, re.I) or url.startswith("data:")


def check_csp(policy):
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    assert "default-src" in directives, policy
    allowed = {"'self'", "'none'", "data:"}
    for name, sources in directives.items():
        if name in ("sandbox", "upgrade-insecure-requests", "report-uri", "report-to"):
            continue
        for src in sources:
            assert src in allowed, f"{name} allows {src!r}: {policy}"
    assert directives.get("frame-ancestors") == ["'none'"], policy
    for name in ("script-src", "style-src"):
        srcs = directives.get(name, directives["default-src"])
        assert "'unsafe-inline'" not in srcs and "'unsafe-eval'" not in srcs


def test_dashboard_page_and_assets_headers(make_gateway):
    g = make_gateway([])
    page = requests.get(g.http_url("/"), timeout=3)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assets = {"/": page}
    for path, ctype in (("/dashboard.js", "javascript"), ("/dashboard.css", "text/css")):
        r = requests.get(g.http_url(path), timeout=3)
        assert r.status_code == 200 and ctype in r.headers["Content-Type"], (path, r.headers)
        assets[path] = r
    for path, r in assets.items():
        assert r.headers.get("X-Frame-Options", "").upper() == "DENY", (path, r.headers)
        assert r.headers.get("X-Content-Type-Options", "").lower() == "nosniff", (path, r.headers)
        csp = r.headers.get("Content-Security-Policy")
        assert csp, (path, r.headers)
        check_csp(csp)
    # The page works without the key: it shows a login form.
    assert 'type="password"' in page.text


def test_dashboard_refers_to_nothing_elsewhere(make_gateway):
    g = make_gateway([])
    html = requests.get(g.http_url("/"), timeout=3).text
    refs = Refs()
    refs.feed(html)
    assert refs.urls, "the page loads its script and style sheet"
    for tag, attr, url in refs.urls:
        assert same_origin(url), f"<{tag} {attr}={url!r}> points elsewhere"
    assert refs.inline_scripts == 0 and refs.inline_styles == 0, "inline code the CSP forbids"
    loaded = {url for _, attr, url in refs.urls if attr in ("src", "href")}
    assert {"/dashboard.js", "/dashboard.css"} <= loaded, loaded
    js = requests.get(g.http_url("/dashboard.js"), timeout=3).text
    css = requests.get(g.http_url("/dashboard.css"), timeout=3).text
    for name, text in (("dashboard.js", js), ("dashboard.css", css)):
        assert not re.search(r"\b(https?|wss?):", text), f"{name} names an absolute URL"
        assert not re.search(r"[\"'`(]//[a-z0-9]", text, re.I), f"{name} has a scheme-relative URL"
    assert "@import" not in css
    assert not re.search(r"url\(\s*['\"]?(?!data:)[a-z]+:", css, re.I)


def test_the_browser_is_not_sent_to_a_404_for_an_icon(make_gateway):
    """A page that names no icon makes every browser ask /favicon.ico, and a
    404 there is a console error on every load (the browser test sees it)."""
    g = make_gateway([])
    html = requests.get(g.http_url("/"), timeout=3).text
    refs = Refs()
    refs.feed(html)
    if refs.icons:
        for url in refs.icons:
            assert url.startswith("data:") or requests.get(
                g.http_url(url), timeout=3).status_code == 200, url
        return
    r = requests.get(g.http_url("/favicon.ico"), timeout=3)
    assert r.status_code in (200, 204), \
        f"the page names no icon and /favicon.ico answers {r.status_code}"
