# The retention sweep (services/housekeeping.py) deletes Idempotency-Key replies by age.
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_notice_place')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='IdempotencyRecord',
            index=Index(fields=['created_at']),
        ),
    ]
