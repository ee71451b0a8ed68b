"""Fixtures: every gateway and backend a test starts is stopped at
teardown, and a gateway that does not exit cleanly on SIGTERM (or that
printed a sanitizer report) fails the test."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import WSGATE_BIN, Backend, Gateway  # noqa: E402

DEFAULT_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test limit (pytest-timeout)")


def pytest_collection_modifyitems(items):
    # Nothing may hang: every test gets a limit unless it sets its own.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def pytest_sessionstart(session):
    if not os.access(WSGATE_BIN, os.X_OK):
        pytest.exit(f"wsgate binary not found at {WSGATE_BIN}; build it or set WSGATE_BIN", 2)


@pytest.fixture
def make_backend(tmp_path):
    started = []

    def make(mode="echo", name=None, args=()):
        b = Backend(tmp_path, mode, name or f"{mode}{len(started) + 1}", args)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def make_gateway(tmp_path):
    started = []

    def make(backends=(), args=(), env=None, key=None, start=True, **kw):
        g = Gateway(tmp_path, backends, args, env, key, name=f"gw{len(started) + 1}", **kw)
        started.append(g)
        return g.start() if start else g

    yield make
    problems = []
    for g in started:
        problems += g.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def echo_backend(make_backend):
    return make_backend("echo")


@pytest.fixture
def gateway(make_gateway, echo_backend):
    """A gateway in front of one echo backend, default settings."""
    return make_gateway([echo_backend])
