"""docs/operations.md's backup and restore, done for real on MariaDB: ``flask audit checkpoint``, ``mariadb-dump
--single-transaction``, the dump loaded into a new database with the ``mariadb`` client, ``flask audit verify`` on the
copy (a subprocess each), and the dispatcher resuming on the copy: what was due goes once, what was sent before the
backup is not sent again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import backends

pytestmark = pytest.mark.mysql

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def tools() -> tuple[str, str]:
    dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    client = shutil.which("mariadb") or shutil.which("mysql")
    if not (dump and client):
        if backends.IN_CI:
            pytest.fail("CI=true but mariadb-dump / mariadb are not installed: the backup procedure cannot be tested")
        pytest.skip("mariadb-dump or the mariadb client is not installed")
    return dump, client


def connection_args(url: str) -> tuple[list[str], str]:
    parts = sa.engine.make_url(url)
    args = [f"--host={parts.host or '127.0.0.1'}", f"--port={parts.port or 3306}", f"--user={parts.username or 'root'}"]
    if parts.password:
        args.append(f"--password={parts.password}")
    return args, str(parts.database)


def flask_cli(url: str, checkpoint: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RECOUP_CONFIG": "default", "DATABASE_URL": url, "SECRET_KEY": "testing-secret",
           "RECOUP_AUDIT_CHECKPOINT": str(checkpoint)}
    for name in ("RECOUP_AUDIT_KEY", "REDIS_URL", "RECOUP_LOG_FORMAT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_a_dump_restored_into_a_new_database_verifies_and_the_dispatcher_resumes_without_duplicates(
        pytestconfig, sims, tmp_path):
    if not pytestconfig._recoup_mysql:
        pytest.skip("MariaDB/MySQL not available")
    dump, client = tools()
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.audit import record
    from app.extensions import db
    from app.models import OutboxMessage
    from app.outbox.run import dispatch_due
    from config import TestingConfig
    from tests.builders import make_message

    checkpoint = tmp_path / "audit-checkpoint.json"
    with backends.temporary_mysql_database("recoup_backup") as source_url, \
            backends.temporary_mysql_database("recoup_restored") as restored_url:
        source = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=source_url)
        with source.app_context():
            upgrade()
            sims.reset()
            sims.configure(source)
            create_user("ops@example.com", "correct horse battery", ["admin"])
            record("ops@example.com", "backup.test", "system", None, {"step": "before the backup"})
            sent_before = [make_message(channel="email", scheduled_for=NOW - timedelta(minutes=1)).id for _ in range(2)]
            due_after = make_message(channel="email", scheduled_for=NOW + timedelta(hours=1)).id
            db.session.commit()
            assert dispatch_due(now=NOW)["sent"] == 2
            db.session.remove()
            db.engine.dispose()

        # the procedure of docs/operations.md
        wrote = flask_cli(source_url, checkpoint, "audit", "checkpoint")
        assert wrote.returncode == 0, wrote.stderr
        args, name = connection_args(source_url)
        dump_file = tmp_path / "recoup.sql"
        with dump_file.open("w") as out:
            dumped = subprocess.run([dump, "--single-transaction", "--routines", "--triggers", "--hex-blob",
                                     "--default-character-set=utf8mb4", *args, name], stdout=out,
                                    stderr=subprocess.PIPE, text=True, timeout=300)
        assert dumped.returncode == 0, dumped.stderr
        assert "CREATE TABLE `outbox_messages`" in dump_file.read_text()
        args, restored_name = connection_args(restored_url)
        with dump_file.open() as dump_in:
            loaded = subprocess.run([client, "--default-character-set=utf8mb4", *args, restored_name], stdin=dump_in,
                                    stderr=subprocess.PIPE, text=True, timeout=300)
        assert loaded.returncode == 0, loaded.stderr

        verified = flask_cli(restored_url, checkpoint, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert "audit log intact" in verified.stdout

        restored = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=restored_url)
        with restored.app_context():
            sims.configure(restored)
            report = dispatch_due(now=NOW + timedelta(hours=2))
            assert report["sent"] == 1, report
            assert dispatch_due(now=NOW + timedelta(hours=3))["claimed"] == 0
            states = {m.id: m.state for m in db.session.scalars(sa.select(OutboxMessage))}
            assert states == {sent_before[0]: "sent", sent_before[1]: "sent", due_after: "sent"}
            # the copy is a database of its own: a change there leaves the original alone, and its chain goes on
            record("ops@example.com", "backup.test", "system", None, {"step": "after the restore"})
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        for mid in (*sent_before, due_after):
            assert sims.smtp.count(f"m{mid}") == 1, mid  # each once, across the backup and the restore
        assert flask_cli(restored_url, checkpoint, "audit", "verify").returncode == 0

        # a check that can fail: an entry rewritten in the copy is named
        engine = sa.create_engine(restored_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET action = 'backup.forged' WHERE action = 'backup.test' "
                                 "ORDER BY id LIMIT 1"))
        engine.dispose()
        broken = flask_cli(restored_url, checkpoint, "audit", "verify")
        assert broken.returncode == 1 and "audit log BROKEN at entry" in broken.stderr
