import http.client
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.wrappers import Response

from sandbox.harness import THREADS, SimulatorServer


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


def test_timeout_fault_answers_504_after_its_stall(echo):
    echo.inject("timeout", seconds=0.1)
    r = requests.get(f"{echo.url}/slow", timeout=5)
    assert r.status_code == 504 and r.content == b"late"


def test_a_session_keeps_one_connection_alive_across_requests(echo):
    with requests.Session() as session:
        for path in ("/one", "/two", "/three"):
            r = session.post(f"{echo.url}{path}", data=b"x", timeout=5)
            assert r.status_code == 200 and r.headers.get("Connection") != "close"
    # one client address and port in the journal: one TCP connection
    assert len({seen.remote for seen in echo.received()}) == 1


def test_as_many_requests_as_there_are_threads_are_answered_at_once():
    together = threading.Barrier(THREADS, timeout=5)

    class Gathering(SimulatorServer):
        def handle(self, request):
            together.wait()  # a request left without a thread breaks the barrier: a 500
            return Response("together")

    with Gathering() as sim, ThreadPoolExecutor(THREADS) as pool:
        codes = list(pool.map(lambda _: requests.get(f"{sim.url}/x", timeout=10).status_code, range(THREADS)))
    assert codes == [200] * THREADS


def test_reset_fault_drops_the_connection_without_an_answer(echo):
    echo.inject("reset", count=2, path="/api/x")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{echo.url}/api/x", data=b"alone", timeout=5)
    with requests.Session() as session:
        assert session.get(f"{echo.url}/warm", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):  # on a kept-alive connection too
            session.post(f"{echo.url}/api/x", data=b"kept", timeout=5)
        assert session.post(f"{echo.url}/api/x", data=b"again", timeout=5).status_code == 200
    warm, kept, again = (r for r in echo.received() if r.body != b"alone")
    assert kept.body == b"kept" and kept.remote == warm.remote != again.remote  # a new connection after the reset


def test_stop_closes_every_connection_at_once_and_answers_nothing_more():
    sim = Echo().start()
    kept = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    kept.request("GET", "/warm")
    assert kept.getresponse().read() == b""
    sim.inject("timeout", seconds=5.0, path="/slow")
    outcome = {}

    def wait_for_an_answer():
        try:
            outcome["status"] = requests.get(f"{sim.url}/slow", timeout=10).status_code
        except requests.RequestException as exc:
            outcome["error"] = exc

    waiting = threading.Thread(target=wait_for_an_answer)
    waiting.start()
    deadline = time.monotonic() + 5
    while not sim.received("/slow") and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 1.0, "stop() waited for the stalled request"
    waiting.join(5)
    assert isinstance(outcome.get("error"), requests.ConnectionError), outcome  # no 504 after stop()
    assert kept.sock.recv(1) == b"", "the kept-alive connection is closed by the simulator"
    kept.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}/after", timeout=5)
    sim.stop()  # twice is fine


def test_a_stopped_simulator_starts_again_on_its_port(echo):
    port = echo.port
    with requests.Session() as session:
        assert session.get(f"{echo.url}/before", timeout=5).status_code == 200
        echo.stop()
        echo.start()
        assert echo.port == port
        assert session.get(f"{echo.url}/after", timeout=5).status_code == 200


def test_its_threads_are_daemons_so_a_test_process_can_exit_without_stopping_it():
    before = set(threading.enumerate())
    with Echo() as sim:
        assert requests.get(f"{sim.url}/x", timeout=5).status_code == 200
        started = set(threading.enumerate()) - before
        assert started and all(thread.daemon for thread in started)


def test_errors_go_to_logging_with_their_traceback_and_nothing_to_stderr(caplog, capfd):
    class Broken(SimulatorServer):
        def control(self, request):
            raise RuntimeError("a bug in a control route")

    with Broken() as sim, caplog.at_level(logging.INFO, logger="sandbox.harness"):
        assert requests.get(f"{sim.url}/_control/requests", timeout=5).status_code == 500
        assert requests.get(f"{sim.url}/fine", timeout=5).status_code == 404
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "a bug in a control route" in error.getMessage() and error.exc_info is not None
    assert capfd.readouterr().err == ""


def test_a_bug_in_a_simulators_handler_is_a_500_and_logged_with_its_traceback(caplog):
    class Buggy(SimulatorServer):
        name = "buggy"

        def handle(self, request):
            raise KeyError("a bug in handle")

    with Buggy() as sim, caplog.at_level(logging.INFO, logger="sandbox.harness"):
        answer = requests.post(f"{sim.url}/api/x", data=b"{}", timeout=5)
    assert answer.status_code == 500 and "a bug in handle" in answer.text
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "buggy simulator: POST /api/x failed" in error.getMessage() and error.exc_info is not None
