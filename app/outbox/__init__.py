"""The outbox: every message Recoup sends is a row here first, and goes out once.

A dispatch run (:mod:`.run`) claims due rows atomically (:mod:`.claim`), checks they may still go (:mod:`.check`),
consolidates a customer's open cases (:mod:`.consolidate`), renders them (:mod:`.compose`) and moves the batch to
``sending`` (:mod:`.prepare`), sends on threads (:mod:`.send`) and records what came back (:mod:`.record`).
Rows a dead worker left and outcomes nobody recorded are settled by :mod:`.reconcile`, or by a person
(:mod:`.review`). The states and the moves between them are a table the code enforces (:mod:`.states`); what a
batch carries and writes is in :mod:`.batch`, the settings in :mod:`.settings`.

States of an outbox row (``rules/`` has no notion of them; :data:`.states.TRANSITIONS` is the table)::

                       +-------------------- lease expired: nothing was sent ---------------------+
                       v                                                                          |
    scheduled --claim--> claimed --attempt recorded--> sending ----checkpoint----> delivering      |
        ^   |                |                            |                                 |      |
        |   |                +----------------------------+---------------------------------| -----+
        |   +--> cancelled | skipped | merged                                               v
        |                                   sent -> delivered -> read | failed | undelivered
        |                                                 ^                                 |
        |           (sms/whatsapp: lease expired after    |     (email: lease expired after |
        +--- not at the provider --------------------- unknown    the checkpoint, or lost   |
                                                          |       after the dot)           v
                                                          +-- cannot tell in time ----> review

* **claim** is a conditional UPDATE (``state='scheduled'`` → ``claimed``, with the run's token), after a
  ``SELECT ... FOR UPDATE SKIP LOCKED`` of the candidates on MariaDB, so two workers never claim one row and
  rarely collide. Candidates are taken most urgent first on every claim, and a run claims small batches as its
  threads free up, so ``urgent`` work waits for at most one send slot, never behind a ``low`` backlog.
* **lease**: ``claimed_at`` is the time of the owner's last heartbeat (a thread of each run renews it every
  quarter of ``DISPATCH_LEASE_SECONDS``). A row in ``claimed``/``sending``/``delivering`` whose lease expired
  belongs to a dead (or cut-off) worker and is taken over by :func:`.reconcile.reclaim_stale`. Every step a worker
  takes on a row is conditional on still holding it (row lock + token check), so a worker that lost its lease stops.
* **attempt**: when a batch is handed to the sending threads its rows move to ``sending`` and an ``attempt`` event
  is stored with what reconciliation needs (channel, to, from, the SMS body, the time).
* **checkpoint**: right before the provider may have a message (an SMS or WhatsApp request is written, an email's
  final dot) its sending thread moves the row to ``delivering``, committed, if the row is still its own (else it
  sends nothing). So a row a dead worker left in ``sending`` (waiting for a thread, or being built) was certainly
  not sent, and is due again; only ``delivering`` rows are in doubt.
* **check at send time**: a claimed row is sent only if its case is open and not paused (else ``cancelled``, or
  ``paused`` until an operator resumes it: ``app.recovery.case_actions``) and the contact rules allow it now; else it is
  ``scheduled`` again for the first allowed moment, with a ``deferred`` event naming each reason and the rule behind
  it. The rules are the planner's (``rules.contact_rules.contact_rules_for``) with the override the row carries
  (``contact_override``: a policy's urgent override, an operator's "send now"), so a late worker never undoes them.

Why a row left by a dead worker is safe to resolve, per channel (:mod:`.reconcile`):

* **email** (SMTP). A server takes a message only when it has read the end-of-data dot; a connection lost before
  it aborts the transaction (RFC 5321 4.1.1.4), and a killed process's sockets are closed by the kernel. The
  sender records a checkpoint (``sending`` → ``delivering``) *before* writing the dot. So: ``sending`` → nothing
  was delivered → ``scheduled`` again. ``delivering`` → the server may have it and SMTP offers no way to ask
  (no message lookup; a success DSN, RFC 3461, is not relayed by most providers) → ``review``: a person decides
  (:func:`.review.resolve_review`). The uncertain window is only the server's end-of-data processing plus one commit.
* **SMS** (Twilio). A row left in ``sending`` is due again; one left in ``delivering`` is ``unknown``. The
  Messages API lists what was created: after the lease expired (so any request the dead worker had in flight has
  been processed), ``GET Messages.json?To=&From=`` is searched for our exact body (it
  holds a one-off payment link, so it is unique) since the attempt. Found → ``sent`` with its SID; not found →
  ``scheduled`` again; lookup failing → stays ``unknown`` and is retried on the next pass.
* **WhatsApp** (Cloud API). A row left in ``sending`` is due again; one left in ``delivering`` is ``unknown``.
  There is no message lookup, but every status webhook echoes our reference
  (``biz_opaque_callback_data``): any status for the row settles it (``app.outbox.delivery.apply_status``), usually
  within seconds. With no status after ``WHATSAPP_RECONCILE_SECONDS`` while webhooks arrived for *other* WhatsApp
  messages sent after that wait (the pipe works and has caught up past ours), the row goes to ``review``: Meta may
  or may not hold it and cannot be asked, so it is never sent again by itself (a status arriving later still
  settles it). Before, such a row was sent again, and a status lost or late for a message Meta did hold made a
  duplicate.
* Anything still ``unknown`` after ``UNKNOWN_REVIEW_HOURS`` goes to ``review``. Nothing is ever re-sent blindly.

Each step's channel order is a fallback sequence: a synchronous failure (opted out, invalid address, permanent
provider error) moves on to the next channel at once; an asynchronous one (a failed/undelivered status, or a
WhatsApp message not delivered within ``WHATSAPP_DELIVERY_TIMEOUT_MINUTES``) becomes a new row for the next
channel (:func:`app.outbox.delivery.fall_back_later`). Several open cases of one customer due within
``CONSOLIDATE_WINDOW_HOURS`` go as one email or SMS listing the open amounts; the others are ``merged``.

Beside ``scheduled`` wait ``held`` (planned, but the contact rules found no moment yet) and ``paused`` (its case is
paused by an operator). A payment's receipt is a row too (template ``receipt``, :mod:`app.payments.receipts`): the
customer's
request queues it and asks for it to be sent at once (:func:`.run.send_now`, claimed like any row, so the periodic
run and the request never both send it); it goes whatever its case's state, the customer's opt-outs and the contact
rules, and counts against no cadence cap.
"""
