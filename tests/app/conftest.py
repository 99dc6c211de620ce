"""Fixtures shared by the app's tests: the channel simulators and the NMI simulator (one per module, reset per
test). A module picks its NMI simulator's seed and webhook signing key with ``NMI_SEED`` and ``NMI_SIGNING_KEY``."""

import pytest

from sandbox.nmi.server import NmiSimulator
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


@pytest.fixture(scope="module")
def nmi_sim(request):
    seed = getattr(request.module, "NMI_SEED", 7)
    key = getattr(request.module, "NMI_SIGNING_KEY", "whsec-test-signing-key")
    with NmiSimulator(seed=seed, webhook_signing_key=key) as sim:
        yield sim


@pytest.fixture
def sim(nmi_sim):
    nmi_sim.clear()
    nmi_sim.reset()
    yield nmi_sim
    nmi_sim.clear()
    nmi_sim.reset()
