import pytest

from app.gateways.nmi import NmiGateway
from sandbox.nmi.server import NmiSimulator

SIGNING_KEY = "whsec-test-signing-key"


@pytest.fixture(scope="module")
def nmi_sim():
    with NmiSimulator(seed=7, webhook_signing_key=SIGNING_KEY) as sim:
        yield sim


@pytest.fixture
def sim(nmi_sim):
    nmi_sim.clear()
    nmi_sim.reset()
    yield nmi_sim
    nmi_sim.clear()
    nmi_sim.reset()


def make_gateway(sim, **overrides):
    options = {
        "security_key": sim.security_key,
        "api_url": f"{sim.url}/api",
        "webhook_signing_key": SIGNING_KEY,
        "timeout": (1.0, 1.5),  # generous: CI shares two cores; the injected stalls last longer
        "max_attempts": 4,
        "backoff": 0.01,
        "max_backoff": 0.05,
        "max_retry_after": 0.05,
        "page_size": 50,
    }
    options.update(overrides)
    return NmiGateway(**options)


@pytest.fixture
def gateway(sim):
    gw = make_gateway(sim)
    yield gw
    gw.close()
