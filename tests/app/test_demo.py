"""`make demo`'s command starts the app on embedded defaults, with no MariaDB or Redis needed."""

import os
import socket
import subprocess
import sys
import time

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_serves_the_admin_behind_sign_in(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "RECOUP_DEMO_FREE_PORTS": "1"}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                response = requests.get(f"{base}/admin/", allow_redirects=False, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        else:
            raise AssertionError("the demo did not start within 60 s")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        page = requests.get(f"{base}/login", timeout=5)
        assert page.status_code == 200 and "Sign in to Recoup" in page.text
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/admin/" in output
    assert "demo@recoup.example" in output
