# Where a notice's business is (hall, department), so delivery figures follow the reader's scope.
# Rows from before carry no place and count only for city-wide staff (docs/notifications.md).
from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_window_approval')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Notification',
            name='department',
            field=fields.CharField(default='', max_length=64),
        ),
        ops.AddField(
            model_name='Notification',
            name='hall_code',
            field=fields.CharField(default='', max_length=32),
        ),
    ]
