"""The database connection's TLS: none to a MariaDB on this host (PyMySQL would otherwise build a TLS context, the
system's CA certificates read, for every connection it opens, to offer TLS over loopback, where it protects
nothing); a server elsewhere, or a URL that asks for TLS, keeps PyMySQL's own choice."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import _loopback_without_tls_options, create_app


@pytest.mark.parametrize("url", ["mysql+pymysql://root:@127.0.0.1:3306/recoup", "mysql+pymysql://u:p@localhost/r",
                                 "mysql+pymysql://u:p@[::1]:3306/r",
                                 "mysql+pymysql://u:p@/recoup?unix_socket=/run/mysqld/mysqld.sock"])
def test_a_server_on_this_host_without_tls_options_gets_no_tls(url):
    assert _loopback_without_tls_options(url)
    options = create_app({"SQLALCHEMY_DATABASE_URI": url}).config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"] == {"ssl_disabled": True}


@pytest.mark.parametrize("url", ["mysql+pymysql://u:p@db.internal:3306/recoup",
                                 "mysql+pymysql://u:p@10.0.0.5/recoup",
                                 "mysql+pymysql://u:p@127.0.0.1/recoup?ssl_ca=/etc/ssl/ca.pem",
                                 "mysql+pymysql://u:p@localhost/recoup?ssl_verify_cert=true"])
def test_a_server_elsewhere_or_a_url_asking_for_tls_keeps_pymysqls_choice(url):
    assert not _loopback_without_tls_options(url)
    options = create_app({"SQLALCHEMY_DATABASE_URI": url}).config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "ssl_disabled" not in options.get("connect_args", {})


def test_connect_args_given_in_the_configuration_win():
    app = create_app({"SQLALCHEMY_DATABASE_URI": "mysql+pymysql://u:p@127.0.0.1/r",
                      "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"ssl_disabled": False, "connect_timeout": 3}}})
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] == {"ssl_disabled": False, "connect_timeout": 3}


def test_the_real_server_is_reached_without_a_tls_context(app, backend):
    if backend != "mysql":
        pytest.skip("MariaDB only")
    from app.extensions import db
    from app.writes import autocommit_engine

    with app.app_context():
        for engine in (db.engine, autocommit_engine()):
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                raw = conn.connection.dbapi_connection
                assert raw.ssl is False and getattr(raw, "ctx", None) is None
