"""Fixtures shared by the dispatcher's tests: the channel simulators (one set per module, reset per test)."""

import pytest

from tests.providers import ChannelSimulators


@pytest.fixture(scope="module")
def sims():
    s = ChannelSimulators().start()
    yield s
    s.stop()


@pytest.fixture
def channels(app, sims):
    sims.reset()
    sims.configure(app)
    return sims
