import pytest

from app.gateways.nmi import NmiGateway

SIGNING_KEY = "whsec-test-signing-key"  # the NMI simulator's default (``nmi_sim`` in tests/app/conftest.py)


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
        "max_window_seconds": 40 * 86400,  # the tests' 31-day window is one window, halved while it is full
    }
    options.update(overrides)
    return NmiGateway(**options)


@pytest.fixture
def gateway(sim):
    gw = make_gateway(sim)
    yield gw
    gw.close()
