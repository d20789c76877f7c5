"""Schema migrations, Tortoise ORM native (see docs/migrations.md)."""
