import pytest

from app.accounts.secrets import SecretsError, decrypt_credentials, encrypt_credentials, mask
from tests.builders import make_gateway_account


def test_credentials_are_stored_encrypted_and_read_back(app, db):
    token = encrypt_credentials(app.config, {"security_key": "6457Thfj624V5r7WUwc5v6a68Zsd6YEm"})
    account = make_gateway_account(credentials_encrypted=token)
    db.session.commit()
    raw = db.session.execute(
        db.text("SELECT credentials_encrypted FROM gateway_accounts WHERE id=:i"), {"i": account.id}
    ).scalar()
    assert b"6457Thfj" not in bytes(raw)
    assert decrypt_credentials(app.config, bytes(raw)) == {"security_key": "6457Thfj624V5r7WUwc5v6a68Zsd6YEm"}


def test_a_changed_key_is_a_clear_error(app):
    token = encrypt_credentials(app.config, {"k": "v"})
    with pytest.raises(SecretsError, match="SECRET_KEY"):
        decrypt_credentials({"SECRET_KEY": "another"}, token)


def test_mask_shows_only_the_last_four():
    assert mask("6457Thfj624V5r7WUwc5v6a68Zsd6YEm") == "••••••••6YEm"
    assert mask("abc") == "•••"
    assert mask(None) == ""
