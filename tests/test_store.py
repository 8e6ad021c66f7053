"""The store holds the SQL: no module outside ``mailflow/store/`` runs a statement."""

from __future__ import annotations

import ast

from mailflow.store.states import Respondent

from .conftest import ROOT

PACKAGE = ROOT / "mailflow"
SQL_CALLS = {"execute", "executemany", "executescript", "query"}


def _executors(tree: ast.Module) -> set[str]:
    """Names bound to a command ``Executor``, whose ``execute`` carries out a command."""
    return {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "Executor"
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _is_executor(receiver: ast.expr, executors: set[str]) -> bool:
    if isinstance(receiver, ast.Name):
        return receiver.id in executors
    return (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Name)
        and receiver.func.id == "Executor"
    )


def sql_calls(source: str) -> list[int]:
    """The lines of ``source`` that call ``.execute(``, ``.executemany(`` or ``.query(``."""
    tree = ast.parse(source)
    executors = _executors(tree)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SQL_CALLS
        and not _is_executor(node.func.value, executors)
    ]


def _modules() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if not name.startswith("store/"):
            found.append((name, path.read_text()))
    return found


def test_the_check_finds_sql_and_leaves_commands_alone() -> None:
    source = (
        "db.execute('select 1')\n"
        "engine.db.execute(f'select {x}', [])\n"
        "d.conn.executemany(SQL, rows)\n"
        "db.query('select 2')\n"
        "executor = Executor(mailer, workflows, vocabulary)\n"
        "executor.execute(request)\n"
        "Executor(mailer, workflows, vocabulary).execute(request)\n"
    )
    assert sql_calls(source) == [1, 2, 3, 4]


def test_no_sql_outside_the_store() -> None:
    modules = _modules()
    assert len(modules) > 50  # the walk found the package
    found = {name: lines for name, source in modules if (lines := sql_calls(source))}
    assert found == {}


def test_a_respondent_says_what_it_names() -> None:
    defi = Respondent.defi("bulletins")
    staff = Respondent.staff("Soizic@Programme.test")
    person = Respondent.person("jean@mentors.test")
    assert defi == "d-bulletins" and defi.defi_id == "bulletins" and defi.answers
    assert staff == Respondent.staff("soizic@programme.test") and staff.is_staff
    assert staff.defi_id is None and staff.answers
    assert person.startswith("p-") and not person.answers and person.defi_id is None
    assert Respondent("d-bulletins").defi_id == "bulletins"  # as read back from the store
