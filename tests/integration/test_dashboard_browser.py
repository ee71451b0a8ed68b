"""The dashboard in a real browser: Debian's chromium driven by
tests/browser/dashboard.mjs (playwright-core from npm, no browser download).

The gateway runs with two registered, heartbeating backends that report
fixed CPU and RAM figures, and three WebSocket clients. The script logs in
through the form and checks the two cards, their status and the widths and
colours of their CPU, RAM and connection bars against the figures given
here; this test then SIGKILLs one backend, the page must show the
migration in its recent-migrations table within ~10 s, and the script
drains the other backend from its card (confirming the dialog) and sees it
"draining". Screenshots of every step go to tests/output/ (or
$WSGATE_TEST_OUTPUT). A console error, a failed request or a request to
any host but the gateway fails the script."""

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import websockets

from fleet import FAST, Fleet
from harness import REPO, run

BROWSER_DIR = REPO / "tests" / "browser"
SCRIPT = BROWSER_DIR / "dashboard.mjs"
OUTDIR = Path(os.environ.get("WSGATE_TEST_OUTPUT", REPO / "tests" / "output"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
STEPS = ["login", "backends", "migration", "draining"]

# What each backend reports in its heartbeats, chosen so the bars show all
# three colours (green < 60 % <= yellow < 85 % <= red) far from the edges.
ALPHA = {"cpu": 30.0, "ramUsage": 3072, "ramTotal": 4096, "max": 4}  # RAM 75 %: yellow
BETA = {"cpu": 92.5, "ramUsage": 512, "ramTotal": 4096, "max": 10}   # CPU: red


@pytest.fixture
def seeds(tmp_path):
    with Fleet(tmp_path) as fleet:
        yield fleet


def ensure_tools():
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not (node and npm and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"the browser test needs node, npm and {CHROMIUM} "
                    "(apt-get install nodejs npm chromium)", pytrace=False)
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").exists():
        # The lock file pins playwright-core; it downloads no browser.
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                           capture_output=True, text=True, timeout=180,
                           env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return node


def seed_args(figures):
    return ["--cpu", figures["cpu"], "--ram-usage", figures["ramUsage"],
            "--ram-total", figures["ramTotal"], "--max-connections", figures["max"]]


def bearer(g):
    return {"Authorization": f"Bearer {g.key}"}


async def server_of(ws):
    await ws.send("whoami")
    return json.loads(await asyncio.wait_for(ws.recv(), 5))["server"]


@pytest.mark.timeout(300)
def test_dashboard_in_chromium(make_gateway, seeds, tmp_path):
    node = ensure_tools()
    OUTDIR.mkdir(parents=True, exist_ok=True)
    for old in OUTDIR.glob("dashboard-*.png"):
        old.unlink()

    g = make_gateway(args=FAST)  # heartbeats every 200 ms, dead after 1 s
    seeds(g, "alpha", *seed_args(ALPHA))
    beta = seeds(g, "beta", *seed_args(BETA))
    transcript = []
    node_err = tmp_path / "dashboard.stderr"

    async def body():
        clients = [await websockets.connect(g.ws_url(f"/?clientId=browser{i}"),
                                            ping_interval=None) for i in range(3)]
        where = [await server_of(c) for c in clients]
        per = {"alpha": where.count("alpha"), "beta": where.count("beta")}
        assert per["alpha"] and per["beta"], where
        expect = {
            "servers": {"alpha": {**ALPHA, "active": per["alpha"]},
                        "beta": {**BETA, "active": per["beta"]}},
            "drain": "alpha",
            # After the kill alpha carries all three: 3 of 4, a yellow bar.
            "afterKill": {**ALPHA, "active": 3},
        }
        with open(node_err, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                node, str(SCRIPT), g.http_url("/"), g.key, str(OUTDIR), cwd=BROWSER_DIR,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                env={**os.environ, "DASHBOARD_EXPECT": json.dumps(expect),
                     "DASHBOARD_TIMEOUT_MS": "150000"})
        try:
            await converse(proc, clients, per)
            rc = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for c in clients:
            c.transport.abort()  # alpha is draining with nowhere to go: no close handshake
        return rc

    async def converse(proc, clients, per):
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 150)
            if not raw:
                return
            line = raw.decode().strip()
            transcript.append(line)
            if line == "WAITING kill":
                beta.kill()
                proc.stdin.write(f"KILLED beta {per['beta']}\n".encode())
                await proc.stdin.drain()
            elif line == "WAITING drain":
                # Every client is still connected, now served by alpha.
                assert [await server_of(c) for c in clients] == ["alpha"] * 3
                proc.stdin.write(b"GO\n")
                await proc.stdin.drain()

    rc = run(body(), 280)
    report = (f"dashboard.mjs exited {rc}\nstdout: {transcript}\n"
              f"stderr: {node_err.read_text(errors='replace')[-4000:]}\n"
              f"gateway log tail:\n" + "\n".join(g.log_lines()[-30:]))
    # First whether every step worked, then whether the page was clean.
    assert [l.split()[1] for l in transcript if l.startswith("STEP ")] == STEPS, report
    assert rc == 0 and transcript[-1] == "DONE", report

    # The click really drained alpha on the gateway.
    st = requests.get(g.http_url("/api/stats"), headers=bearer(g), timeout=3).json()
    assert [(s["id"], s["status"]) for s in st["servers"]] == [("alpha", "draining")], st
    assert any(m["fromServer"] == "beta" for m in st["recentMigrations"]), st

    shots = sorted(OUTDIR.glob("dashboard-*.png"))
    assert [p.name for p in shots] == [f"dashboard-{i}-{s}.png" for i, s in
                                       enumerate(STEPS, 1)], shots
    for p in shots:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, p
