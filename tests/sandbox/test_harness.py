import json

import pytest
import requests
from werkzeug.wrappers import Response

from sandbox.harness import SimulatorServer


class Echo(SimulatorServer):
    name = "echo"

    def handle(self, request):
        return Response(request.get_data(), status=200)


@pytest.fixture
def echo():
    with Echo() as sim:
        yield sim


def test_serves_on_a_free_loopback_port_and_journals(echo):
    r = requests.post(f"{echo.url}/api/x", data=b"hello", timeout=5)
    assert r.status_code == 200 and r.content == b"hello"
    assert echo.port > 0
    [seen] = echo.received("/api/x")
    assert seen.body == b"hello" and seen.method == "POST"


def test_counted_fault_fires_exactly_count_times(echo):
    echo.inject("http_429", count=2, path="/api/x")
    codes = [requests.get(f"{echo.url}/api/x", timeout=5).status_code for _ in range(3)]
    assert codes == [429, 429, 200]
    assert requests.get(f"{echo.url}/api/other", timeout=5).status_code == 200


def test_rate_fault_is_reproducible_with_a_seed(echo):
    echo.inject("http_500", rate=0.5, seed=3)
    first = [requests.get(f"{echo.url}/a", timeout=5).status_code for _ in range(20)]
    echo.reset()
    echo.inject("http_500", rate=0.5, seed=3)
    second = [requests.get(f"{echo.url}/a", timeout=5).status_code for _ in range(20)]
    assert first == second and 500 in first and 200 in first


def test_timeout_fault_stalls_past_the_client_timeout(echo):
    echo.inject("timeout", seconds=1.0)
    with pytest.raises(requests.Timeout):
        requests.get(f"{echo.url}/slow", timeout=0.2)


def test_control_api_arms_faults_and_lists_requests(echo):
    r = requests.post(f"{echo.url}/_control/faults", json={"kind": "http_503", "count": 1}, timeout=5)
    assert r.status_code == 201
    assert requests.get(f"{echo.url}/p", timeout=5).status_code == 503
    listed = requests.get(f"{echo.url}/_control/requests", timeout=5).json()
    assert [x["path"] for x in listed] == ["/p"]
    bad = requests.post(f"{echo.url}/_control/faults", data="nope", timeout=5)
    assert bad.status_code == 400 and "kind" in json.loads(bad.content)["error"]
    requests.post(f"{echo.url}/_control/reset", timeout=5)
    assert requests.get(f"{echo.url}/_control/requests", timeout=5).json() == []
