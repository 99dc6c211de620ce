import pytest

from tests.app.channels.receiver import Receiver


@pytest.fixture(scope="module")
def _receiver_server():
    with Receiver() as server:
        yield server


@pytest.fixture
def receiver(_receiver_server):
    """Our webhook endpoints' stand-in; one server per module, emptied per test."""
    _receiver_server.reset()
    yield _receiver_server
