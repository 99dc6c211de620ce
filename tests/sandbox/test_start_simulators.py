"""The simulators are started by app.demo.simulators, which the demo and `flask sandbox` share: no runtime module of the
app imports the CLI."""

import pathlib
import re

import requests

from app.demo.simulators import start_simulators
from sandbox.twilio.server import TwilioSimulator
from sandbox.whatsapp.server import WhatsAppSimulator

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_named_simulators_start_on_free_ports_with_their_options():
    sims = start_simulators(["twilio", "whatsapp"], fixed_ports=False, twilio={"from_number": "+15550001111"})
    try:
        assert set(sims) == {"twilio", "whatsapp"}
        assert isinstance(sims["twilio"], TwilioSimulator) and isinstance(sims["whatsapp"], WhatsAppSimulator)
        assert sims["twilio"].from_number == "+15550001111"
        for sim in sims.values():
            assert requests.get(f"{sim.url}/inbox", timeout=5).status_code == 200
    finally:
        for sim in sims.values():
            sim.stop()


def test_no_app_module_but_the_cli_imports_the_cli_commands():
    importing = re.compile(r"^\s*(from app\.cli\.ops import|from app\.cli import ops|import app\.cli\.ops)", re.M)
    found = sorted(
        str(path.relative_to(ROOT))
        for folder in ("app", "admin", "workers")
        for path in (ROOT / folder).rglob("*.py")
        if importing.search(path.read_text(encoding="utf-8"))
    )
    assert found == ["app/cli/__init__.py"]
