"""Operations: what tells an operator how Recoup is doing (health and readiness, metrics, logs, the job queues).

No Flask here: the web layer (app.web.ops, admin.queues) and the workers call these with what they need."""
