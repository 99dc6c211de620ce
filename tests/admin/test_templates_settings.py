"""Templates (preview, SMS segments, versions, refusal) and settings (validation with clear errors), and Spanish."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from app.extensions import db
from app.models import MessageTemplate


def test_template_preview_counts_sms_segments(client, auth, world):
    auth.login("author")
    short = client.post("/admin/templates/preview", json={"channel": "sms", "locale": "en",
                                                            "body": "Hi {{ customer.first_name }}: {{ payment_link }}"})
    data = short.get_json()
    assert data["segments"] == 1 and "Ana" in data["text"] and "STOP" in data["text"]
    long = client.post("/admin/templates/preview", json={"channel": "sms", "body": "ł" * 200}).get_json()
    assert long["segments"] >= 3 and long["encoding"].lower().startswith("ucs")
    broken = client.post("/admin/templates/preview", json={"channel": "email", "subject": "x",
                                                            "body": "{{ customer.password }}"}).get_json()
    assert broken["problems"] and "text" not in broken


def test_templates_are_versioned_and_refused_when_broken(client, auth, world):
    auth.login("author")
    url = "/admin/templates/edit?name=payment_failed&channel=email&locale=en"
    client.post(url, data={"subject": "{{ brand }}: payment", "body": "Please pay: {{ payment_link }}"})
    template = db.session.scalar(sa.select(MessageTemplate).where(MessageTemplate.name == "payment_failed"))
    # a new version; with four-eyes on (the default) a draft, so customers keep receiving version 1
    assert template.versions[-1].number == 2 and template.current_version.number == 1
    refused = client.post(url, data={"subject": "x", "body": "{{ customer.ssn }}"}).get_data(as_text=True)
    assert "Not saved" in refused
    db.session.expire_all()
    assert [v.number for v in db.session.get(MessageTemplate, template.id).versions] == [1, 2]
    page = client.get("/admin/templates/edit?name=vip_personal&channel=whatsapp&locale=en").get_data(as_text=True)
    assert "not submitted" in page  # WhatsApp approval status


def test_the_admin_speaks_spanish(client, auth, world):
    auth.login("auditor")
    page = client.get("/admin/policies/edit/standard", headers={"Accept-Language": "es-ES,es;q=0.9"})
    text = page.get_data(as_text=True)
    assert "Política «standard»: borrador" in text and "Simular" in text
    client.post("/admin/profile/language", data={"locale": "es"})
    assert "Verificar la cadena" in client.get("/admin/audit_log/").get_data(as_text=True)


def test_every_message_has_a_spanish_translation_and_the_catalog_is_compiled():
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2] / "app" / "translations"
    pot = read_po((root / "messages.pot").open("rb"))
    po = read_po((root / "es" / "LC_MESSAGES" / "messages.po").open("rb"))
    mo = read_mo((root / "es" / "LC_MESSAGES" / "messages.mo").open("rb"))
    missing = [m.id for m in pot if m.id and not (po.get(m.id) and po.get(m.id).string)]
    assert not missing, missing
    def text(string):  # a plural's forms: a tuple in a .po, a list in a .mo
        return tuple(string) if isinstance(string, list | tuple) else string

    stale = [m.id for m in po if m.id and (mo.get(m.id) is None or text(mo.get(m.id).string) != text(m.string))]
    assert not stale, "messages.mo is older than messages.po: run pybabel compile"


def test_the_catalog_holds_every_message_the_code_has_now(tmp_path):
    """The extraction command (first line of app/translations/babel.cfg) run afresh finds no message the committed
    messages.pot lacks: a string moved to a module the command does not list (the receipt's, when it moved to
    app/payments/receipts.py) would otherwise lose its Spanish at the next update."""
    import shlex
    import subprocess
    import sys

    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2]
    command = (root / "app" / "translations" / "babel.cfg").read_text().splitlines()[0].lstrip("# ")
    args = shlex.split(command)
    assert args[0].endswith("pybabel") and args[1] == "extract", command
    out = tmp_path / "fresh.pot"
    args[args.index("-o") + 1] = str(out)
    done = subprocess.run([sys.executable, "-m", "babel.messages.frontend", *args[1:]], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = {m.id for m in read_po(out.open("rb")) if m.id}
    committed = {m.id for m in read_po((root / "app" / "translations" / "messages.pot").open("rb")) if m.id}
    assert not fresh - committed, sorted(map(str, fresh - committed))[:10]
