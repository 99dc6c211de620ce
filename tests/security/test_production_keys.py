"""Finding 3 (and the low one on the database URL): production refuses to start with a guessable SECRET_KEY, without an
encryption key of its own for stored secrets, or without a database it was told about; stored secrets rotate from one
key to the next; development needs no configuration and still reads what it stored before."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app import create_app
from app.accounts.secrets import SecretsError, decrypt_credentials, encrypt_credentials, rotate_credentials
from app.models import ChannelAccount, GatewayAccount
from config import DEV_SECRET_KEY, Config, InsecureConfiguration, ProductionConfig, production_problems
from tests.builders import make_gateway_account

STRONG = "k7Qz-4mW9xR2pL8vN3bT6yH1jF5cD0sA"  # 32 characters, many different
KEY = Fernet.generate_key().decode()


def _production(tmp_path, **overrides):  # type: ignore[no-untyped-def]
    settings = {"SECRET_KEY": STRONG, "ENCRYPTION_KEYS": (KEY,), "CREDENTIALS_KEY": None, "REDIS_URL": None,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'prod.db'}", "AUDIT_KEYS": (STRONG[::-1],),
                "PUBLIC_BASE_URL": "https://pay.acme.example"}
    settings.update(overrides)
    return create_app(ProductionConfig, **settings)


def test_production_refuses_the_development_secret_key(tmp_path):
    with pytest.raises(InsecureConfiguration, match="SECRET_KEY must be set"):
        _production(tmp_path, SECRET_KEY=DEV_SECRET_KEY)


@pytest.mark.parametrize("weak", ["", "short-but-random-9x", "a" * 40])
def test_production_refuses_a_short_or_trivial_secret_key(tmp_path, weak):
    with pytest.raises(InsecureConfiguration, match="SECRET_KEY"):
        _production(tmp_path, SECRET_KEY=weak)


def test_production_refuses_to_start_without_an_encryption_key_of_its_own(tmp_path):
    with pytest.raises(InsecureConfiguration, match="RECOUP_ENCRYPTION_KEY must be set"):
        _production(tmp_path, ENCRYPTION_KEYS=())
    with pytest.raises(InsecureConfiguration, match="not a Fernet key"):
        _production(tmp_path, ENCRYPTION_KEYS=("not a key",))


def test_production_refuses_to_start_without_an_audit_key(tmp_path):
    with pytest.raises(InsecureConfiguration, match="RECOUP_AUDIT_KEY must be set"):
        _production(tmp_path, AUDIT_KEYS=())
    with pytest.raises(InsecureConfiguration, match="RECOUP_AUDIT_KEY must differ"):
        _production(tmp_path, AUDIT_KEYS=(STRONG,))


def test_production_refuses_to_start_without_a_database_url(tmp_path):
    with pytest.raises(InsecureConfiguration, match="DATABASE_URL must be set"):
        _production(tmp_path, SQLALCHEMY_DATABASE_URI="")
    with pytest.raises(InsecureConfiguration, match="root user with no password"):
        _production(tmp_path, SQLALCHEMY_DATABASE_URI="mysql+pymysql://root:@127.0.0.1/recoup?charset=utf8mb4")


@pytest.mark.parametrize("public", ["http://pay.acme.example", "http://127.0.0.1:5000", "", "pay.acme.example"])
def test_production_refuses_a_public_url_that_is_not_https(tmp_path, public):
    """Issue 16, point 5: customers' one-click unsubscribe (RFC 8058) and payment links are built from the public URL,
    so production refuses to start unless it is https (even on loopback: production is not the sandbox)."""
    with pytest.raises(InsecureConfiguration, match="RECOUP_PUBLIC_URL must be an https:// URL"):
        _production(tmp_path, PUBLIC_BASE_URL=public)


def test_production_refuses_its_default_public_url():
    problems = production_problems({"PUBLIC_BASE_URL": ProductionConfig.PUBLIC_BASE_URL})
    assert any("RECOUP_PUBLIC_URL" in p for p in problems)


def test_the_production_class_has_no_default_database(monkeypatch):
    assert "root:@" not in ProductionConfig.SQLALCHEMY_DATABASE_URI


def test_every_problem_is_named_at_once():
    problems = production_problems({"SECRET_KEY": DEV_SECRET_KEY, "SQLALCHEMY_DATABASE_URI": ""})
    assert len(problems) >= 3 and all(isinstance(p, str) for p in problems)


def test_production_starts_with_strong_keys(tmp_path):
    app = _production(tmp_path)
    assert app.config["ENV_NAME"] == "production"


def test_development_needs_no_configuration(tmp_path):
    app = create_app(Config, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'dev.db'}", SECRET_KEY=DEV_SECRET_KEY,
                     ENCRYPTION_KEYS=(), CREDENTIALS_KEY=None, REDIS_URL=None)
    token = encrypt_credentials(app.config, {"k": "v"})
    assert decrypt_credentials(app.config, token) == {"k": "v"}


# -- keys for stored secrets ---------------------------------------------------------------------------------------
def test_a_configured_key_is_not_derived_from_the_secret_key():
    config = {"SECRET_KEY": STRONG, "ENCRYPTION_KEYS": (KEY,)}
    token = encrypt_credentials(config, {"k": "v"})
    assert Fernet(KEY).decrypt(token)  # the configured key encrypted it
    with pytest.raises(SecretsError):  # and knowing SECRET_KEY alone does not read it
        decrypt_credentials({"SECRET_KEY": STRONG}, token)


def test_secrets_stored_with_the_old_derived_key_still_decrypt_once_a_key_is_configured():
    old = encrypt_credentials({"SECRET_KEY": STRONG}, {"k": "before"})
    assert decrypt_credentials({"SECRET_KEY": STRONG, "ENCRYPTION_KEYS": (KEY,)}, old) == {"k": "before"}


def test_rotation_the_first_key_encrypts_every_key_decrypts():
    new = Fernet.generate_key().decode()
    old_token = encrypt_credentials({"SECRET_KEY": STRONG, "ENCRYPTION_KEYS": (KEY,)}, {"k": "v"})
    rotated = {"SECRET_KEY": STRONG, "ENCRYPTION_KEYS": (new, KEY)}
    assert decrypt_credentials(rotated, old_token) == {"k": "v"}
    assert Fernet(new).decrypt(encrypt_credentials(rotated, {"k": "v"}))


def test_rotate_re_encrypts_every_stored_secret_with_the_first_key(app, db, runner):
    derived_only = {"SECRET_KEY": app.config["SECRET_KEY"]}
    account = make_gateway_account(credentials_encrypted=encrypt_credentials(derived_only, {"security_key": "s3"}))
    db.session.add(ChannelAccount(name="mail", channel="email", enabled=True,
                                  credentials_encrypted=encrypt_credentials(derived_only, {"smtp_url": "smtp://x"})))
    db.session.commit()
    new = Fernet.generate_key().decode()
    app.config["ENCRYPTION_KEYS"] = (new,)
    try:
        result = runner.invoke(args=["secrets", "rotate"])
        assert result.exit_code == 0, result.output
        assert "re-encrypted 2" in result.output
        db.session.expire_all()
        for model in (GatewayAccount, ChannelAccount):
            for token in db.session.scalars(sa.select(model.credentials_encrypted)):
                Fernet(new).decrypt(token)  # readable with the new key alone
        assert decrypt_credentials({"SECRET_KEY": "x", "ENCRYPTION_KEYS": (new,)},
                                   db.session.get(GatewayAccount, account.id).credentials_encrypted) == {
            "security_key": "s3"}
    finally:
        app.config["ENCRYPTION_KEYS"] = ()


def test_rotate_refuses_when_a_secret_cannot_be_read(app, db):
    make_gateway_account(credentials_encrypted=Fernet(Fernet.generate_key()).encrypt(b"{}"))
    db.session.commit()
    with pytest.raises(SecretsError, match="nothing was re-encrypted"):
        rotate_credentials(app.config)


def test_the_demo_refuses_to_run_under_the_production_configuration(tmp_path):
    """Finding 9: `flask demo` seeded the demo admin with its published password under RECOUP_CONFIG=production."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    database = tmp_path / "prod.db"
    env = {**os.environ, "RECOUP_CONFIG": "production", "SECRET_KEY": STRONG, "RECOUP_ENCRYPTION_KEY": KEY,
           "RECOUP_AUDIT_KEY": STRONG[::-1], "DATABASE_URL": f"sqlite:///{database}", "RECOUP_DEMO_FREE_PORTS": "1",
           "RECOUP_PUBLIC_URL": "https://pay.acme.example"}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "demo", "--no-serve"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "does not run under the production configuration" in done.stderr, done.stderr[-2000:]
    if database.exists():  # nobody was seeded
        engine = sa.create_engine(f"sqlite:///{database}")
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            assert "users" not in tables or conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == 0
        engine.dispose()
