"""Draining: POST /drain takes a backend (or a group of backends) out of
rotation. Its sessions move to other backends between two messages, with
nothing lost or duplicated and no client disconnected; new sessions never
land on it; POST /undrain takes it back. With --drain-mode finish, sessions
stay until --drain-timeout, then move.

The backends here take time to answer each number (--seq-delay-ms), and
every drain happens while answers are on their way: a move that is really
"between two messages" must still deliver what the old backend answers to
the messages it already received."""

import asyncio
import time

import pytest
import requests
import websockets

from fleet import (FAST, Fleet, Streamer, bearer, check_stream, open_clients, post, servers,
                   stats, wait_until, whoami)
from harness import run, wait_for


@pytest.fixture
def seeds(tmp_path):
    """seeds(gateway, id, args...): a registered seed_backend.py."""
    with Fleet(tmp_path) as fleet:
        yield fleet


# Each answer takes 20 ms (streams send every 50 ms), or 200 ms (request-
# response traffic: the drain surely finds a message at the backend, however
# slowly the gateway gets to it); --log-answers records what was sent.
AT_WORK = ("--seq-delay-ms", 20, "--log-answers")
SLOW_WORK = ("--seq-delay-ms", 200, "--log-answers")


def seq_paths(n, prefix):
    return [f"/{prefix}/{i}?mode=seq&clientId={prefix}{i}" for i in range(n)]


def drain(g, body, path="/drain"):
    r = post(g, path, body, headers=bearer(g))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True, answer
    return answer


async def new_sessions(g, n, prefix):
    """Servers of n new sessions, opened one after the other."""
    out = []
    for i in range(n):
        out.append((await whoami(g.ws_url(f"/{prefix}/{i}?clientId={prefix}{i}")))["server"])
    return out


def fate(backends, path, seq):
    """What the backends' event logs say about one number of one client."""
    for b in backends:
        for e in b.events():
            if e.get("path") == path and e.get("seq") == seq:
                if e["ev"] == "answer":
                    return f"{b.id} sent its answer"
                return (f"{b.id} got it, but its connection was gone before it could answer "
                        f"(it saw close code {e['close_code']})")
    return "no backend got it"


def check_moved(clients, paths, moved, away_from, to, backends):
    """Nobody disconnected; nothing lost, duplicated or reordered; the
    moved sessions switched once, to one of `to`; the others stayed."""
    dropped = [(paths[i], c.close_code) for i, c in enumerate(clients) if c.dropped]
    assert not dropped, f"{len(dropped)} clients disconnected, e.g. {dropped[:5]}"
    problems = []
    for i, c in enumerate(clients):
        try:
            check_stream(c, c.sent[-1][1])
        except AssertionError as e:
            got = {n for _, _, n in c.echoes()}
            first = min(set(range(c.sent[-1][1] + 1)) - got, default=None)
            why = f"; of {first}: {fate(backends, paths[i], first)}" if first is not None else ""
            problems.append(f"{paths[i]} ({'drained' if c in moved else 'not drained'}): {e}{why}")
            continue
        if c in moved:
            assert c.servers()[0] in away_from and len(c.servers()) == 2, c.servers()
            assert c.servers()[1] in to, c.servers()
        else:
            assert len(c.servers()) == 1, c.servers()
    assert not problems, f"{len(problems)} of {len(clients)} clients:\n" + "\n".join(problems[:10])


async def streaming(g, paths):
    clients = await open_clients(g.ws_port, paths)
    streamer = Streamer(clients).start()
    await wait_until(lambda: all(len(c.echoes()) >= 5 for c in clients), 10, "echoes everywhere")
    return clients, streamer


@pytest.mark.timeout(60)
def test_drain_moves_sessions_without_loss_and_undrain_takes_back(make_gateway, seeds):
    g = make_gateway(args=FAST)
    backends = {f"d{i}": seeds(g, f"d{i}", *AT_WORK) for i in range(3)}
    paths = seq_paths(60, "d")

    async def body():
        clients, streamer = await streaming(g, paths)
        try:
            on_d0 = [c for c in clients if c.echoes()[0][1] == "d0"]
            await streamer.after_tick()
            answer = drain(g, {"serverId": "d0"})
            t_drain = time.time()
            assert answer["sessions"] == len(on_d0), (answer, len(on_d0))
            assert servers(g)["d0"]["status"] == "draining"
            # New sessions go elsewhere while it drains.
            fresh = await new_sessions(g, 9, "fresh")
            await wait_until(lambda: all(c.echoes()[-1][1] != "d0" and c.echoes()[-1][0] > t_drain
                                         for c in on_d0), 10, "the drained sessions to move")
            await asyncio.sleep(1.0)
            await streamer.stop()
            return clients, on_d0, fresh
        finally:
            for c in clients:
                c.close()

    clients, on_d0, fresh = run(body(), timeout=45)
    assert "d0" not in fresh, fresh
    check_moved(clients, paths, on_d0, {"d0"}, {"d1", "d2"}, backends.values())

    st = stats(g)
    by_id = {s["id"]: s for s in st["servers"]}
    d0 = by_id["d0"]
    assert d0["status"] == "draining" and d0["activeConnections"] == 0, d0
    moves = [m for m in st["recentMigrations"] if m["fromServer"] == "d0"]
    assert sum(m["clientCount"] for m in moves) == len(on_d0), st["recentMigrations"]
    migrated = [e for b in ("d1", "d2") for e in backends[b].events("open") if e["migratedFrom"]]
    assert sorted(e["path"] for e in migrated) == sorted(paths[clients.index(c)] for c in on_d0)
    assert {e["migratedFrom"] for e in migrated} == {"d0"}

    # Taken back: healthy, and it gets new sessions again.
    assert drain(g, {"serverId": "d0"}, "/undrain")["serverId"] == "d0"
    assert servers(g)["d0"]["status"] == "healthy"
    assert "d0" in run(new_sessions(g, 3, "back"))


@pytest.mark.timeout(60)
def lockstep_move(g, backends, paths, leave):
    """Request-response traffic: each client sends its next number the
    moment the answer to the previous one arrives, so nearly always one is
    at the backend when `leave()` sends l0's sessions away. The move must
    wait for that answer, not drop it."""

    async def body():
        clients = await open_clients(g.ws_port, paths)
        try:
            for c in clients:
                c.start_lockstep()
            await wait_until(lambda: all(len(c.echoes()) >= 3 for c in clients), 10,
                             "traffic on every client")
            on_l0 = [c for c in clients if c.echoes()[0][1] == "l0"]
            leave()
            await asyncio.sleep(1.5)
            for c in clients:
                c.stop_lockstep()
            await asyncio.sleep(0.8)
            return clients, on_l0
        finally:
            for c in clients:
                c.close()

    clients, on_l0 = run(body(), timeout=45)
    assert len(on_l0) == 10
    stalled = []
    for i, c in enumerate(clients):
        last = c.sent[-1][1]
        if c.echoes()[-1][2] != last:
            stalled.append(f"{paths[i]}: no answer to {last} after {c.echoes()[-1][2]} from "
                           f"{c.servers()[-1]}: {fate(backends, paths[i], last)}")
    assert not stalled, (f"{len(stalled)} of {len(on_l0)} moved sessions lost an answer:\n"
                         + "\n".join(stalled))
    check_moved(clients, paths, on_l0, {"l0"}, {"l1"}, backends)


def test_drain_loses_no_answer_in_flight(make_gateway, seeds):
    g = make_gateway(args=FAST)
    backends = [seeds(g, "l0", *SLOW_WORK), seeds(g, "l1", *SLOW_WORK)]
    lockstep_move(g, backends, seq_paths(20, "ls"), lambda: drain(g, {"serverId": "l0"}))


def test_unregister_loses_no_answer_in_flight(make_gateway, seeds):
    """A backend that unregisters (before it stops) is left like a drained
    one: what it still answers reaches the clients. (l0 sends no heartbeats,
    which would register it again.)"""
    g = make_gateway(args=["--heartbeat-interval", "200", "--server-timeout", "30s"])
    backends = [seeds(g, "l0", "--no-heartbeat", *SLOW_WORK), seeds(g, "l1", *SLOW_WORK)]
    lockstep_move(g, backends, seq_paths(20, "lu"),
                  lambda: drain(g, {"serverId": "l0"}, path="/unregister"))
    assert set(servers(g)) == {"l1"}


def test_drain_api_errors(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "e0")
    url = g.http_url("/drain")
    assert requests.post(url, json={"serverId": "e0"}, timeout=3).status_code == 401
    r = requests.post(url, json={"serverId": "e0"},
                      headers={"Authorization": "Bearer not-the-key-at-all"}, timeout=3)
    assert r.status_code == 401
    assert post(g, "/drain", {"serverId": "nobody"}, headers=bearer(g)).status_code == 404
    assert post(g, "/undrain", {"serverId": "nobody"}, headers=bearer(g)).status_code == 404
    assert post(g, "/drain", {"group": "nobody"}, headers=bearer(g)).status_code == 404
    assert post(g, "/drain", {"serverId": 5}, headers=bearer(g)).status_code == 400
    assert post(g, "/drain", data="{nope", headers=bearer(g)).status_code == 400
    assert servers(g)["e0"]["status"] == "healthy"
    assert run(whoami(g.ws_url("/")))["server"] == "e0"


def test_sticky_clients_do_not_return_to_a_draining_backend(make_gateway, seeds):
    g = make_gateway(args=FAST)
    seeds(g, "x0")
    seeds(g, "x1")

    async def body():
        homes = {f"u{i}": (await whoami(g.ws_url(f"/s?clientId=u{i}")))["server"] for i in range(4)}
        on_x0 = [cid for cid, home in homes.items() if home == "x0"]
        assert on_x0, homes
        drain(g, {"serverId": "x0"})
        for cid in on_x0:
            assert (await whoami(g.ws_url(f"/s?clientId={cid}")))["server"] == "x1", cid

    run(body())


@pytest.mark.timeout(60)
def test_group_drain_moves_blue_to_green(make_gateway, seeds):
    g = make_gateway(args=FAST)
    everyone = [seeds(g, f"{color}{i}", "--group", color, *AT_WORK)
                for color in ("blue", "green") for i in range(2)]
    blue = {b.id for b in everyone if b.id.startswith("blue")}
    green = {b.id for b in everyone if b.id.startswith("green")}
    paths = seq_paths(40, "bg")

    async def body():
        clients, streamer = await streaming(g, paths)
        try:
            on_blue = [c for c in clients if c.echoes()[0][1] in blue]
            await streamer.after_tick()
            answer = drain(g, {"group": "blue"})
            t_drain = time.time()
            assert answer["backends"] == 2 and answer["sessions"] == len(on_blue), answer
            fresh = await new_sessions(g, 6, "fresh")
            await wait_until(lambda: all(c.echoes()[-1][1] in green and c.echoes()[-1][0] > t_drain
                                         for c in clients), 10, "every session to be on green")
            await asyncio.sleep(0.5)
            await streamer.stop()
            return clients, on_blue, fresh
        finally:
            for c in clients:
                c.close()

    clients, on_blue, fresh = run(body(), timeout=45)
    assert set(fresh) <= green, fresh
    assert len(on_blue) == 20
    check_moved(clients, paths, on_blue, blue, green, everyone)
    by_id = servers(g)
    for b in blue:
        assert by_id[b]["status"] == "draining" and by_id[b]["activeConnections"] == 0, by_id[b]

    # Undraining the group brings blue back.
    assert drain(g, {"group": "blue"}, "/undrain")["backends"] == 2
    assert set(run(new_sessions(g, 4, "again"))) == blue | green


@pytest.mark.timeout(60)
def test_drain_mode_finish_waits_for_the_drain_timeout(make_gateway, seeds):
    g = make_gateway(args=FAST + ["--drain-mode", "finish", "--drain-timeout", "1500ms"])
    backends = [seeds(g, "f0", *SLOW_WORK), seeds(g, "f1", *SLOW_WORK)]
    paths = seq_paths(20, "fin")

    async def body():
        clients = await open_clients(g.ws_port, paths)
        try:
            # Request-response traffic: an answer is nearly always on its
            # way when the drain timeout strikes.
            for c in clients:
                c.start_lockstep()
            await wait_until(lambda: all(len(c.echoes()) >= 3 for c in clients), 10,
                             "traffic on every client")
            on_f0 = [c for c in clients if c.echoes()[0][1] == "f0"]
            drain(g, {"serverId": "f0"})
            t_drain = time.time()
            fresh = await new_sessions(g, 4, "fresh")
            # (A session that lost its answer stalls: go on after 4 s and say so.)
            await wait_until(lambda: all(c.echoes()[-1][1] == "f1" for c in on_f0)
                             or time.time() > t_drain + 4, 10, "the drained sessions to move")
            await asyncio.sleep(0.5)
            for c in clients:
                c.stop_lockstep()
            await asyncio.sleep(0.8)
            return clients, on_f0, fresh, t_drain
        finally:
            for c in clients:
                c.close()

    clients, on_f0, fresh, t_drain = run(body(), timeout=45)
    assert set(fresh) == {"f1"}, fresh
    assert len(on_f0) == 10
    check_moved(clients, paths, on_f0, {"f0"}, {"f1"}, backends)
    # They stayed for the drain timeout (1.5 s; the gateway checks every
    # heartbeat interval), then f1 got them.
    arrived = [e["t"] for e in backends[1].events("open") if e["migratedFrom"] == "f0"]
    assert len(arrived) == len(on_f0)
    for t in arrived:
        assert 1.5 - 0.1 <= t - t_drain <= 1.5 + 1.0, f"moved {t - t_drain:.3f} s after the drain"


def test_a_drained_configured_backend_comes_back_drained_not_up(make_gateway, make_backend):
    """Draining a configured backend that fails its health checks, then
    taking it back, leaves it down until its checks pass; drained while
    down, it comes back draining, not taking new sessions."""
    b = make_backend("echo")
    port = b.port
    sid = f"127.0.0.1:{port}"
    g = make_gateway([b], args=["--health-interval", "100ms", "--health-fall", "2",
                                "--health-rise", "2"])
    b.stop()
    wait_for(lambda: servers(g)[sid]["status"] == "down", 5, what="the backend to be down")
    drain(g, {"serverId": sid})
    assert servers(g)[sid]["status"] == "down"
    drain(g, {"serverId": sid}, path="/undrain")
    assert servers(g)[sid]["status"] == "down"
    assert g.get("/readyz").status_code == 503
    drain(g, {"serverId": sid})
    make_backend("echo", args=["--port", port])
    wait_for(lambda: servers(g)[sid]["status"] == "draining", 5, what="checks to pass again")
    assert g.get("/readyz").status_code == 503  # draining: no new sessions
    drain(g, {"serverId": sid}, path="/undrain")
    assert servers(g)[sid]["status"] == "healthy"
    assert run(echo_once(g.ws_url("/"), "back")) == "back"


async def echo_once(url, text):
    async with websockets.connect(url) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 5)

