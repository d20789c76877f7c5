# Who served an appointment at the window (the clerk who checked the resident in), so its
# rating reaches them like a case's (services/approval/served.py).
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_idempotency_age_index')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Appointment',
            name='served_by',
            field=fields.ForeignKeyField('models.User', source_field='served_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL),
        ),
    ]
