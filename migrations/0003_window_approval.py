from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.approval import ReleaseMethod, TaskStatus
from models.cases import CaseAlertLevel, CaseStatus
from models.ratings import ReviewVerdict, ServedAs
from models.window import CommitmentCheck
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_trust_org_messages_online_faults')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CaseCommitment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.OneToOneField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='commitment', on_delete=OnDelete.CASCADE)),
                ('materials', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('text', fields.TextField(unique=False)),
                ('signer_masked', fields.CharField(max_length=64)),
                ('signed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('recorded_by', fields.ForeignKeyField('models.User', source_field='recorded_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('check_due', fields.DateField(db_index=True)),
                ('check_status', fields.CharEnumField(default=CommitmentCheck.pending, description='pending: pending\nverified: verified\nfalse: false', enum_type=CommitmentCheck, max_length=16)),
                ('checked_by', fields.ForeignKeyField('models.User', source_field='checked_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('checked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finding', fields.CharField(default='', max_length=500)),
            ],
            options={'table': 'case_commitments', 'app': 'models', 'pk_attr': 'id', 'table_description': "告知承诺制: the applicant's signed commitment in place of materials, and its 核查."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CaseOwner',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='owners', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.User', source_field='staff_id', db_constraint=True, to_field='id', related_name='owned_cases', on_delete=OnDelete.RESTRICT)),
                ('active_case_id', fields.BigIntField(null=True, unique=True)),
                ('since', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('handed_over_by', fields.ForeignKeyField('models.User', source_field='handed_over_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('note', fields.CharField(default='', max_length=500)),
            ],
            options={'table': 'case_owners', 'app': 'models', 'pk_attr': 'id', 'table_description': '首问负责: the staff member accountable for a request, from the first staff member who'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CaseRefusal',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.OneToOneField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='refusal', on_delete=OnDelete.CASCADE)),
                ('ground', fields.CharField(max_length=500)),
                ('legal_basis', fields.TextField(unique=False)),
                ('note', fields.CharField(default='', max_length=500)),
                ('refused_by', fields.ForeignKeyField('models.User', source_field='refused_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('refused_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'case_refusals', 'app': 'models', 'pk_attr': 'id', 'table_description': "不予受理: the ground (one of the item's refusal grounds), its legal basis, who, when."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CaseRelease',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.OneToOneField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='release', on_delete=OnDelete.CASCADE)),
                ('method', fields.CharEnumField(description='window: window\nmail: mail', enum_type=ReleaseMethod, max_length=16)),
                ('address_enc', fields.TextField(null=True, unique=False)),
                ('address_masked', fields.CharField(default='', max_length=128)),
                ('recipient_phone_masked', fields.CharField(default='', max_length=16)),
                ('recipient_phone_enc', fields.TextField(null=True, unique=False)),
                ('chosen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('tracking_no', fields.CharField(null=True, max_length=32)),
                ('collected_person', fields.ForeignKeyField('models.Person', source_field='collected_person_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('verified_by', fields.CharField(default='', max_length=16)),
                ('released_by', fields.ForeignKeyField('models.User', source_field='released_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('released_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'case_releases', 'app': 'models', 'pk_attr': 'id', 'table_description': '统一窗口出件: how the applicant takes the result, and who handed it over.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CaseTask',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='tasks', on_delete=OnDelete.CASCADE)),
                ('department', fields.CharField(db_index=True, max_length=64)),
                ('hall_code', fields.CharField(db_index=True, max_length=32)),
                ('items', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(default=TaskStatus.pending, description='pending: pending\nclaimed: claimed\napproved: approved\nrejected: rejected\nreturned: returned', enum_type=TaskStatus, max_length=16)),
                ('promised_days', fields.IntField(default=0)),
                ('due_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.ForeignKeyField('models.User', source_field='claimed_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decided_by', fields.ForeignKeyField('models.User', source_field='decided_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('opinion', fields.CharField(default='', max_length=500)),
                ('version', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'case_tasks', 'app': 'models', 'unique_together': (('case', 'department'),), 'indexes': [Index(fields=['department', 'status'])], 'pk_attr': 'id', 'table_description': "One department's part of a case: a single item has one, a 一件事 bundle one per"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RatingReview',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('rating', fields.OneToOneField('models.Rating', source_field='rating_id', db_constraint=True, to_field='id', related_name='review', on_delete=OnDelete.CASCADE)),
                ('verdict', fields.CharEnumField(description='valid: valid\ninvalid: invalid', enum_type=ReviewVerdict, max_length=16)),
                ('reason', fields.CharField(max_length=500)),
                ('reviewed_by', fields.ForeignKeyField('models.User', source_field='reviewed_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('reviewed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('appeal_reason', fields.CharField(null=True, max_length=500)),
                ('appealed_by', fields.ForeignKeyField('models.User', source_field='appealed_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('appealed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('final_verdict', fields.CharEnumField(null=True, description='valid: valid\ninvalid: invalid', enum_type=ReviewVerdict, max_length=16)),
                ('final_reason', fields.CharField(null=True, max_length=500)),
                ('final_by', fields.ForeignKeyField('models.User', source_field='final_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('final_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('version', fields.IntField(default=0)),
            ],
            options={'table': 'rating_reviews', 'app': 'models', 'pk_attr': 'id', 'table_description': "差评核实: a supervisor's verdict on a bad rating, and one appeal (申诉复核) by a rated staff"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RatingStaff',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('rating', fields.ForeignKeyField('models.Rating', source_field='rating_id', db_constraint=True, to_field='id', related_name='staff', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('served_as', fields.CharEnumField(description='clerk: clerk\napprover: approver\nhelper: helper', enum_type=ServedAs, max_length=16)),
                ('department', fields.CharField(db_index=True, max_length=64)),
                ('hall_code', fields.CharField(db_index=True, max_length=32)),
            ],
            options={'table': 'rating_staff', 'app': 'models', 'unique_together': (('rating', 'user', 'served_as'),), 'pk_attr': 'id', 'table_description': 'A staff member the rating is about: one rating reaches everyone who served the case.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ToleratedMaterial',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.ForeignKeyField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='tolerated', on_delete=OnDelete.CASCADE)),
                ('material', fields.CharField(max_length=128)),
                ('reason', fields.CharField(default='', max_length=500)),
                ('supply_by', fields.DateField()),
                ('accepted_by', fields.ForeignKeyField('models.User', source_field='accepted_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('supplied_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('received_by', fields.ForeignKeyField('models.User', source_field='received_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('alerted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'case_tolerated_materials', 'app': 'models', 'unique_together': (('case', 'material'),), 'pk_attr': 'id', 'table_description': "容缺受理: a non-key material accepted missing, with the applicant's deadline."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WalkIn',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('case', fields.OneToOneField('models.Case', source_field='case_id', db_constraint=True, to_field='id', related_name='walk_in', on_delete=OnDelete.CASCADE)),
                ('clerk', fields.ForeignKeyField('models.User', source_field='clerk_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.RESTRICT)),
                ('appointment_id', fields.BigIntField(null=True, unique=True)),
                ('registered_person', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'case_walk_ins', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A case a clerk opened for the person at the desk. ``appointment_id`` is unique, so one'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Case',
            name='applicant',
            field=fields.ForeignKeyField('models.User', source_field='applicant_id', null=True, db_constraint=True, to_field='id', related_name='cases', on_delete=OnDelete.RESTRICT),
        ),
        ops.AlterField(
            model_name='Case',
            name='status',
            field=fields.CharEnumField(default=CaseStatus.submitted, description='submitted: submitted\naccepted: accepted\nunder_review: under_review\nsupplement_requested: supplement_requested\nresubmitted: resubmitted\napproved: approved\nrejected: rejected\nresult_delivered: result_delivered\nclosed: closed\nwithdrawn: withdrawn\nmaterials_pending: materials_pending\nnot_accepted: not_accepted\nreturned: returned', enum_type=CaseStatus, max_length=32),
        ),
        ops.AlterField(
            model_name='CaseAlert',
            name='level',
            field=fields.CharEnumField(description='due_soon: due_soon\noverdue: overdue\nmaterials_late: materials_late', enum_type=CaseAlertLevel, max_length=16),
        ),
    ]
