"""Configuration: every option is a flag, an env var and an env-file line;
flag > env > file > default; invalid values stop the start with status 2
and a message naming both names; the auth key rules; --help."""

import re
import socket
import subprocess

import pytest
import websockets

from harness import WSGATE_BIN, clean_env, free_port, free_ports, port_accepts, random_key, run


def wsgate(args=(), env=None, cwd=None, timeout=5):
    """Runs wsgate to completion (for runs that must exit on their own)."""
    return subprocess.run([WSGATE_BIN, *map(str, args)], env=clean_env(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def help_options():
    """(flag, env) for every option --help lists (env None when missing)."""
    text = wsgate(["--help"]).stdout
    lines = text.splitlines()
    opts = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s+(?:-\w, )?(--[a-z0-9-]+)\b", line)
        if not m:
            continue
        block = line + "\n" + (lines[i + 1] if i + 1 < len(lines) else "")
        e = re.search(r"\benv ([A-Z][A-Z0-9_]+)", block)
        opts.append((m.group(1), e.group(1) if e else None))
    return opts


# ---- --help ----------------------------------------------------------------

EXPECTED = {
    "--bind": "WSGATE_BIND",
    "--ws-port": "WS_PORT",
    "--websrv-port": "WEBSRV_PORT",
    "--max-connections": "WSGATE_MAX_CONNECTIONS",
    "--gateway-auth-key": "GATEWAY_AUTH_KEY",
    "--trusted-proxies": "TRUSTED_PROXIES",
    "--backend": "WSGATE_BACKENDS",
    "--handshake-timeout": "HANDSHAKE_TIMEOUT",
    "--upstream-timeout": "UPSTREAM_TIMEOUT",
    "--ping-interval": "PING_INTERVAL",
    "--pong-timeout": "PONG_TIMEOUT",
    "--close-timeout": "CLOSE_TIMEOUT",
    "--slow-consumer-timeout": "SLOW_CONSUMER_TIMEOUT",
    "--shutdown-timeout": "SHUTDOWN_TIMEOUT",
    "--max-message-size": "MAX_MESSAGE_SIZE",
    "--max-header-size": "MAX_HEADER_SIZE",
    "--write-high-water": "WRITE_HIGH_WATER",
    "--log-level": "LOG_LEVEL",
    "--log-format": "LOG_FORMAT",
    "--env-file": "WSGATE_ENV_FILE",
}


def test_help_exits_0_and_lists_every_flag_with_its_env_name():
    r = wsgate(["--help"])
    assert r.returncode == 0, r.stderr
    opts = dict(help_options())
    for flag, env in EXPECTED.items():
        assert flag in opts, f"{flag} missing from --help"
        assert opts[flag] == env, (flag, opts[flag])
    for flag, env in opts.items():
        if flag not in ("--help", "--version"):
            assert env, f"{flag} has no env name in --help"


def test_help_short_form_and_version():
    assert wsgate(["-h"]).returncode == 0
    r = wsgate(["--version"])
    assert r.returncode == 0 and "wsgate" in r.stdout


def test_unknown_option_exits_2():
    r = wsgate(["--no-such-option"])
    assert r.returncode == 2
    assert "--no-such-option" in r.stderr


# ---- invalid values ------------------------------------------------------

VALUED = [(f, e) for f, e in help_options() if e and f not in ("--env-file", "--gateway-auth-key")]


def isolated(flag):
    """Loopback and free ports, except for the option under test: a wrongly
    accepted value must not make a gateway listen on 0.0.0.0:9000."""
    ws_port, http_port = free_ports(2)
    base = {"--bind": "127.0.0.1", "--ws-port": ws_port, "--websrv-port": http_port}
    return [x for k, v in base.items() if k != flag for x in (k, v)]


def assert_names_both(r, flag, env):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert env in r.stderr and flag in r.stderr, r.stderr


@pytest.mark.parametrize("flag,env", VALUED, ids=[f for f, _ in VALUED])
def test_invalid_value_as_flag_exits_2_naming_both(tmp_path, flag, env):
    r = wsgate(["--gateway-auth-key", random_key(), *isolated(flag), flag, "%%bad%%"], cwd=tmp_path)
    assert_names_both(r, flag, env)


@pytest.mark.parametrize("flag,env", VALUED, ids=[e for _, e in VALUED])
def test_invalid_value_in_env_exits_2_naming_both(tmp_path, flag, env):
    r = wsgate(["--gateway-auth-key", random_key(), *isolated(flag)], env={env: "%%bad%%"}, cwd=tmp_path)
    assert_names_both(r, flag, env)


@pytest.mark.parametrize("flag,env", VALUED, ids=[e for _, e in VALUED])
def test_invalid_value_in_env_file_exits_2_naming_both(tmp_path, flag, env):
    f = tmp_path / "bad.env"
    f.write_text(f"{env}=%%bad%%\n")
    r = wsgate(["--gateway-auth-key", random_key(), *isolated(flag), "--env-file", f], cwd=tmp_path)
    assert_names_both(r, flag, env)


@pytest.mark.parametrize("args,env,flag,name", [
    (["--ping-interval", "abc"], {}, "--ping-interval", "PING_INTERVAL"),
    (["--ws-port", "70000"], {}, "--ws-port", "WS_PORT"),
    ([], {"WS_PORT": "0"}, "--ws-port", "WS_PORT"),
    (["--websrv-port", "-1"], {}, "--websrv-port", "WEBSRV_PORT"),
    (["--max-message-size", "12XB"], {}, "--max-message-size", "MAX_MESSAGE_SIZE"),
    ([], {"PONG_TIMEOUT": "soon"}, "--pong-timeout", "PONG_TIMEOUT"),
    (["--log-level", "verbose"], {}, "--log-level", "LOG_LEVEL"),
    (["--backend", "127.0.0.1:99999"], {}, "--backend", "WSGATE_BACKENDS"),
    (["--trusted-proxies", "10.0.0.0/33"], {}, "--trusted-proxies", "TRUSTED_PROXIES"),
    (["--bind", "999.1.1.1"], {}, "--bind", "WSGATE_BIND"),
    ([], {"WSGATE_BIND": "not-an-address"}, "--bind", "WSGATE_BIND"),
], ids=["ping-abc", "ws-port-70000", "WS_PORT=0", "websrv-port--1", "size-12XB", "PONG_TIMEOUT=soon",
        "log-level", "backend-port", "cidr-33", "bind-999", "WSGATE_BIND=name"])
def test_specific_invalid_values(tmp_path, args, env, flag, name):
    r = wsgate(["--gateway-auth-key", random_key(), *isolated(flag), *args], env=env, cwd=tmp_path)
    assert_names_both(r, flag, name)


def test_boolean_option_takes_a_value_as_help_shows(make_gateway, echo_backend):
    """--help documents "--validate-utf8 BOOL": the flag takes a value."""
    g = make_gateway([echo_backend], ["--validate-utf8", "true"])
    assert g.get("/healthz").status_code == 200


def test_boolean_option_in_env(make_gateway, echo_backend):
    g = make_gateway([echo_backend], env={"VALIDATE_UTF8": "true"})
    assert g.get("/healthz").status_code == 200


# ---- the auth key ----------------------------------------------------------


@pytest.mark.parametrize("key", ["short", "a" * 15, "your_secret_key_here", "your_secret_key",
                                 "change-this-secret-key"])
@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_weak_auth_key_exits_2(tmp_path, key, source):
    args, env = [], {}
    if source == "flag":
        args = ["--gateway-auth-key", key]
    elif source == "env":
        env = {"GATEWAY_AUTH_KEY": key}
    else:
        (tmp_path / "k.env").write_text(f"GATEWAY_AUTH_KEY={key}\n")
        args = ["--env-file", tmp_path / "k.env"]
    r = wsgate(args, env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "GATEWAY_AUTH_KEY" in r.stderr


def test_sixteen_character_key_is_accepted(make_gateway, echo_backend):
    g = make_gateway([echo_backend], key="0123456789abcdef")
    assert g.get("/healthz").status_code == 200


def test_unset_key_is_generated_and_shown_once(make_gateway, echo_backend):
    g1 = make_gateway([echo_backend], key=False)
    g2 = make_gateway([echo_backend], key=False)

    async def traffic(g):
        async with websockets.connect(g.ws_url()) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"

    keys = []
    for g in (g1, g2):
        run(traffic(g))
        g.wait_log("connection closed")
        g.signal()
        assert g.wait_exit(10) == 0
        err = g.stderr()
        out = g.stdout_path.read_text()
        warning = [l for l in err.splitlines() if "WARNING" in l]
        assert len(warning) == 1, err
        assert "GATEWAY_AUTH_KEY" in warning[0]
        # The key: the one long random-looking token near the warning.
        start = err.index(warning[0])
        near = err[start:start + 600]
        tokens = [t for t in re.findall(r"[A-Za-z0-9_\-+/=]{32,}", near)]
        assert len(tokens) == 1, near
        key = tokens[0]
        assert (err + out).count(key) == 1, "the generated key appears more than once"
        keys.append(key)
    assert keys[0] != keys[1]


# ---- sources and precedence -------------------------------------------------


def test_env_file_supplies_values_and_flags_beat_env_beat_file(make_gateway, echo_backend, tmp_path):
    file_ws, file_http, env_ws, env_http, flag_http = free_ports(5)
    key = random_key()
    envfile = tmp_path / "gw.env"
    envfile.write_text(
        "# a comment\n"
        f"WS_PORT={file_ws}\n"
        f"WEBSRV_PORT={file_http}\n"
        f"WSGATE_BACKENDS={echo_backend.addr}\n"
        f"GATEWAY_AUTH_KEY={key}\n"
        "WSGATE_BIND=127.0.0.1\n"
        "\n"
        "MAX_MESSAGE_SIZE=1KiB\n"
    )
    g = make_gateway(
        args=["--env-file", envfile, "--websrv-port", flag_http],
        env={"WS_PORT": str(env_ws), "WEBSRV_PORT": str(env_http)},
        standard_flags=False, ws_port=env_ws, http_port=flag_http)
    # env beats file for WS_PORT; the flag beats env and file for WEBSRV_PORT.
    assert g.get("/healthz").status_code == 200
    assert port_accepts(env_ws)
    for p in (file_ws, file_http, env_http):
        assert not port_accepts(p), p

    async def body():
        # The file's backend and message limit are in force.
        async with websockets.connect(g.ws_url(), compression=None) as ws:
            await ws.send("whoami")
            assert '"path": "/"' in await ws.recv()
            await ws.send("a" * 1025)
            try:
                await ws.recv()
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1009

    run(body())


def test_env_file_from_wsgate_env_file_variable(make_gateway, echo_backend, tmp_path):
    ws_port, http_port = free_ports(2)
    f = tmp_path / "via-var.env"
    f.write_text(f"WS_PORT={ws_port}\nWEBSRV_PORT={http_port}\nWSGATE_BIND=127.0.0.1\n"
                 f"GATEWAY_AUTH_KEY={random_key()}\nWSGATE_BACKENDS={echo_backend.addr}\n")
    g = make_gateway(env={"WSGATE_ENV_FILE": str(f)}, standard_flags=False,
                     ws_port=ws_port, http_port=http_port)
    assert g.get("/readyz").status_code == 200


def test_default_env_file_in_working_directory(make_gateway, echo_backend, tmp_path):
    ws_port, http_port = free_ports(2)
    (tmp_path / ".env.gateway").write_text(
        f"WS_PORT={ws_port}\nWEBSRV_PORT={http_port}\nWSGATE_BIND=127.0.0.1\n"
        f"GATEWAY_AUTH_KEY={random_key()}\nWSGATE_BACKENDS={echo_backend.addr}\n")
    g = make_gateway(standard_flags=False, ws_port=ws_port, http_port=http_port)
    assert g.get("/readyz").status_code == 200


def test_env_var_values_work(make_gateway, echo_backend):
    """Env alone configures a working gateway (with durations in units)."""
    ws_port, http_port = free_ports(2)
    g = make_gateway(env={
        "WS_PORT": str(ws_port), "WEBSRV_PORT": str(http_port), "WSGATE_BIND": "127.0.0.1",
        "GATEWAY_AUTH_KEY": random_key(), "WSGATE_BACKENDS": echo_backend.addr,
        "PING_INTERVAL": "10s", "MAX_HEADER_SIZE": "8KiB",
    }, standard_flags=False, ws_port=ws_port, http_port=http_port)

    async def body():
        async with websockets.connect(g.ws_url()) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"

    run(body())


def test_repeated_backend_flags_and_comma_env(make_gateway, make_backend):
    b1, b2 = make_backend("echo", "one"), make_backend("echo", "two")
    g = make_gateway(env={"WSGATE_BACKENDS": f"{b1.addr},{b2.addr}"})
    assert g.health()["backends"] == 2


# ---- ports ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["--ws-port", "--websrv-port"])
def test_port_in_use_exits_nonzero_with_message(tmp_path, which):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        ws_port, http_port = free_ports(2)
        ports = {"--ws-port": ws_port, "--websrv-port": http_port}
        ports[which] = busy
        r = wsgate(["--gateway-auth-key", random_key(), "--bind", "127.0.0.1",
                    "--ws-port", ports["--ws-port"], "--websrv-port", ports["--websrv-port"]],
                   cwd=tmp_path, timeout=10)
    assert r.returncode != 0
    assert str(busy) in r.stderr and "in use" in r.stderr.lower(), r.stderr


def test_port_held_by_another_wsgate_is_in_use(make_gateway, echo_backend, tmp_path):
    """A second wsgate on the port of a running one must not start and
    silently take half of its connections."""
    g = make_gateway([echo_backend])
    try:
        r = wsgate(["--gateway-auth-key", random_key(), "--bind", "127.0.0.1",
                    "--ws-port", g.ws_port, "--websrv-port", free_port(), "--backend", echo_backend.addr],
                   cwd=tmp_path, timeout=3)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a second wsgate started on the busy port {g.ws_port}: "
                    f"{(e.stderr or b'').decode(errors='replace')}")
    assert r.returncode != 0
    assert "in use" in r.stderr.lower(), r.stderr
