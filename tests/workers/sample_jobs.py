"""Jobs used by the queue tests: they write to the database, so a test can see that they really ran."""

from app.extensions import db
from app.models import Setting
from workers.context import job_context


def write_setting(key: str, value: str) -> str:
    with job_context():
        db.session.merge(Setting(key=key, value=value))
        db.session.commit()
    return value
