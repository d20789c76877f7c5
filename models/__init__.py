"""Tortoise models, one module per domain. ``MODEL_MODULES`` is what the ORM and migrations load."""

MODEL_MODULES: list[str] = [
    "models.users",
    "models.audit",
    "models.enterprises",
    "models.notifications",
    "models.idempotency",
    "models.catalogue",
    "models.feedback",
    "models.ratings",
    "models.guide",
    "models.policies",
    "models.cases",
    "models.codes",
    "models.appointments",
    "models.verification",
    "models.messages",
    "models.org",
    "models.onbehalf",
    "models.online",
    "models.outbox",
    "models.window",
]
