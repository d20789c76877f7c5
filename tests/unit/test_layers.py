"""The layering rules of docs/conventions.md, checked on the source so they stay true:
handlers in ``api/`` parse, call a service and shape the answer (no ORM queries); services
never import Sanic.

Static checks over the syntax tree, no database: a handler that queries a model fails here
even if no test reaches it.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

from tortoise.models import Model

ROOT = Path(__file__).resolve().parents[2]

# Tortoise's query API on a model class (``User.filter(...)``, ``Case.get_or_none(...)``).
MODEL_QUERY_METHODS = frozenset({
    "filter", "exclude", "get", "get_or_none", "all", "first", "create", "exists", "count",
    "select_for_update", "bulk_create", "bulk_update", "update_or_create", "get_or_create",
    "select_related", "prefetch_related", "annotate", "values", "values_list", "raw",
    "in_bulk",
})
# Loading relations of a model instance: the names are Tortoise's own, so any receiver counts.
INSTANCE_QUERY_METHODS = frozenset({"fetch_related", "refresh_from_db"})
# Tortoise modules a handler may import: exception types, to map them to error answers.
ALLOWED_TORTOISE_IMPORTS = frozenset({"tortoise.exceptions"})


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _is_model(module: str, name: str) -> bool:
    """Whether ``from module import name`` brings in a Tortoise model or a models module
    (enums, label tables and constants from ``models`` are fine in a handler)."""
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        # Unknown here (e.g. a made-up source in the detector's own test): assume a model.
        return True
    return isinstance(obj, types.ModuleType) or (isinstance(obj, type)
                                                 and issubclass(obj, Model))


def _model_names(tree: ast.Module) -> set[str]:
    """Names bound to Tortoise models (or models modules) imported from ``models``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "models" or node.module.startswith("models.")):
            names.update(a.asname or a.name for a in node.names
                         if _is_model(node.module, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "models" or a.name.startswith("models."):
                    names.add(a.asname or a.name.split(".")[0])
    return names


def _receiver_root(expr: ast.expr) -> str | None:
    """``models.users.User`` -> ``models``; ``User`` -> ``User``; anything else -> None."""
    while isinstance(expr, ast.Attribute):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def orm_queries(source: str, filename: str = "<api>") -> list[str]:
    """Every ORM query in one module's source, as ``line: call`` strings."""
    tree = ast.parse(source, filename)
    models = _model_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "tortoise" or node.module.startswith("tortoise.")) and \
                node.module not in ALLOWED_TORTOISE_IMPORTS:
            found.append(f"{node.lineno}: from {node.module} import ...")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        on_model = method in MODEL_QUERY_METHODS and _receiver_root(node.func.value) in models
        if on_model or method in INSTANCE_QUERY_METHODS:
            found.append(f"{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_handlers_make_no_orm_queries() -> None:
    offenders = {str(p.relative_to(ROOT)): hits for p in _modules("api")
                 if (hits := orm_queries(p.read_text(encoding="utf-8"), str(p)))}
    assert offenders == {}, (
        "api/ handlers must call a service instead of querying models: " + repr(offenders))


def test_the_check_sees_each_kind_of_query() -> None:
    # The detector itself, on small sources: each of these is a query a handler must not make.
    leaks = {
        "from models.users import User\nasync def h():\n    await User.filter(id=1)\n": 1,
        "from models.cases import Case as C\nasync def h():\n    await C.get_or_none(id=1)\n": 1,
        "import models.users\nasync def h():\n    await models.users.User.all().limit(2)\n": 1,
        "from models.users import User\nasync def h():\n"
        "    await User.all().select_related('person')\n": 1,
        "from models.org import Region\nasync def h():\n"
        "    return await Region.exists(code='1') or await Region.create(code='2')\n": 2,
        "from models.feedback import Feedback\nasync def h():\n"
        "    return await Feedback.filter(id=1).count()\n": 1,
        "async def h(a):\n    await a.fetch_related('helper')\n": 1,
        "from tortoise.expressions import Q\n": 1,
        "from tortoise.transactions import in_transaction\n": 1,
    }
    for source, count in leaks.items():
        assert len(orm_queries(source)) == count, source
    # ...and these are not: a service's function of the same name, an enum, a dict, a
    # blueprint route, a pydantic model, and exception types.
    fine = (
        "from services import users\nasync def h():\n    await users.get_user(1)\n",
        "from models.users import Role\ndef h():\n    return Role('staff')\n",
        "def h(d):\n    return d.get('x'), d.values()\n",
        "from sanic import Blueprint\nbp = Blueprint('x')\n@bp.get('/')\nasync def h(): ...\n",
        "from models.users import Role\ndef h(q):\n    return q.model_fields.values()\n",
        "from models.approval import TASK_STATUS_LABELS\ndef h(s):\n"
        "    return TASK_STATUS_LABELS.get(s)\n",
        "from tortoise.exceptions import ValidationError\n",
    )
    for source in fine:
        assert orm_queries(source) == [], source


def test_services_never_import_sanic() -> None:
    offenders: dict[str, list[int]] = {}
    for p in _modules("services"):
        tree = ast.parse(p.read_text(encoding="utf-8"), str(p))
        lines = [n.lineno for n in ast.walk(tree)
                 if (isinstance(n, ast.ImportFrom) and n.module
                     and n.module.split(".")[0] in ("sanic", "sanic_ext"))
                 or (isinstance(n, ast.Import)
                     and any(a.name.split(".")[0] in ("sanic", "sanic_ext") for a in n.names))]
        if lines:
            offenders[str(p.relative_to(ROOT))] = lines
    assert offenders == {}, "services/ must not import Sanic: " + repr(offenders)
