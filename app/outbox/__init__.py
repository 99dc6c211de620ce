"""The outbox: every message Recoup sends is a row here first (see :mod:`app.outbox.states`)."""
