"""No SQL text outside its homes (issue 18): the statements (`src/mcsync/queries/`), the SQL
templates (`source_sql.py`) and the migrations (`sql/*.sql`). A store or a shell that needs a
statement names one of `mcsync.queries` (rendered once per schema, every catalog call
`pg_catalog.`-qualified); `mcsync sql`'s script is assembled from the same statements
(`install_store`'s `*_script`).

Read from the AST: every string literal, and every f-string's text with its holes as names, that
begins like a SQL statement (an upper-case keyword followed by the shape of its statement: the
codebase writes SQL keywords upper-case). Docstrings are prose and are not read, nor is a message
that quotes SQL after its prose (source_keys.py's fixes, shown to the user to run on their own
table). What is left is a short list, each entry with the reason it is not a statement mcsync
runs; an entry nothing needs any more fails too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mcsync"

HOMES = ("queries/", "source_sql.py")  # and the migrations, which are not Python

_NAME = r"[\w\"]+(?:\.[\w\"]+)?"
STATEMENT = re.compile(
    r"^\s*(?:"
    r"SELECT\s+(?:DISTINCT\s+)?[\w\"'(*$%]"
    r"|INSERT\s+INTO\s"
    rf"|UPDATE\s+{_NAME}(?:\s+(?:AS\s+)?\w+)?\s+SET\s"
    r"|DELETE\s+FROM\s"
    r"|CREATE\s+(?:OR\s+REPLACE\s+|TEMP(?:ORARY)?\s+|UNIQUE\s+|UNLOGGED\s+)*"
    r"(?:TABLE|SCHEMA|INDEX|VIEW|FUNCTION|PROCEDURE|TRIGGER|ROLE|POLICY|EXTENSION|TYPE|SEQUENCE)\b"
    r"|ALTER\s+(?:TABLE|SCHEMA|ROLE|FUNCTION|PROCEDURE|VIEW|INDEX|SEQUENCE|DEFAULT|DATABASE)\b"
    r"|DROP\s+(?:TABLE|SCHEMA|INDEX|VIEW|FUNCTION|PROCEDURE|TRIGGER|ROLE|POLICY|TYPE|OWNED)\b"
    r"|(?:GRANT|REVOKE)\s+[A-Z][A-Z ,()\w]*\s+(?:ON|TO|FROM)\s"
    r"|SET\s+(?:LOCAL\s+|SESSION\s+)?[\w.]+\s*(?:=|TO\s)"
    r"|(?:LISTEN|UNLISTEN)\s+[\w\"]+\s*;?\s*$"
    r"|NOTIFY\s+[\w\"]+\s*(?:,|;|$)"
    r"|WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s+(?:NOT\s+)?(?:MATERIALIZED\s+)?\("
    r"|CALL\s+[\w.\"]+\s*\("
    r"|TRUNCATE\s"
    r"|DO\s+\$"
    r"|COMMENT\s+ON\s"
    r")"
)

# (module, how the text begins): why it is not a statement mcsync runs.
ALLOWED = {
    ("doctor/__init__.py", 'CREATE TRIGGER "?(\\w+)"?'): (
        "a regular expression reading trigger names out of the text source_sql.py generated"
    ),
}


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of every module's, class's and function's docstring node."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _texts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal and f-string, docstrings left out. An f-string's
    holes read as a name (`x`); its literal parts are read as a whole, not one by one."""
    skip = _docstrings(tree)
    inside_fstrings = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
            out.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip | inside_fstrings
        ):
            out.append((node.lineno, node.value))
    return out


def sql_outside_homes(
    package: Path = PACKAGE, used: set[tuple[str, str]] | None = None
) -> list[str]:
    """`module:line: text` for every SQL-looking string outside the homes and the allowlist
    (the allowlist's entries that matched are added to `used`)."""
    used = set() if used is None else used
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        if module.startswith(HOMES):
            continue
        for line, text in _texts(ast.parse(path.read_text(), str(path))):
            if not STATEMENT.match(text):
                continue
            allowed = [(m, b) for m, b in ALLOWED if m == module and text.lstrip().startswith(b)]
            if allowed:
                used.update(allowed)
                continue
            found.append(f"{module}:{line}: {text.strip()[:60]!r}")
    return found


def test_no_sql_text_outside_the_statements_the_templates_and_the_migrations() -> None:
    used: set[tuple[str, str]] = set()
    found = sql_outside_homes(used=used)
    assert not found, (
        "SQL belongs in src/mcsync/queries/ (a named statement, run by a store) or in "
        f"source_sql.py's templates: {found}"
    )
    assert used == set(ALLOWED), f"allowed but no longer there: {set(ALLOWED) - used}"


def test_the_check_finds_statements_and_leaves_prose_alone(tmp_path: Path) -> None:
    """The rule itself: each kind of statement is caught, in a plain string, a triple-quoted
    one and an f-string; prose, messages and docstrings are not."""
    caught = [
        "SELECT 1",
        "\nSELECT user_id FROM mcsync.t",
        "INSERT INTO mcsync.t (a) VALUES (1)",
        "UPDATE mcsync.t SET a = 1",
        "DELETE FROM mcsync.t",
        "CREATE TEMP TABLE q ON COMMIT DROP AS SELECT 1",
        "CREATE SCHEMA staging",
        "ALTER TABLE t ADD COLUMN c int",
        "DROP SCHEMA staging",
        "GRANT USAGE ON SCHEMA mcsync TO r",
        "REVOKE ALL ON SCHEMA mcsync FROM PUBLIC",
        "SET LOCAL search_path = pg_catalog, pg_temp",
        "LISTEN mcsync",
        "NOTIFY mcsync",
        "WITH due AS (SELECT 1) SELECT * FROM due",
        "CALL mcsync.lock_down()",
        "TRUNCATE contacts",
        "DO $$ BEGIN END $$",
    ]
    prose = [
        "set MCSYNC_ENCRYPTION_KEYS to one or more Fernet keys",
        "Create a Mailchimp account (dc us1)",
        " with a non-JSON body",
        "LISTEN on a channel of its own, NOTIFY it",
        "Revoke from PUBLIC and strangers what a generation created",
        "UPDATE the app, then run mcsync migrate",
    ]
    lines = (
        [(True, f"A{i} = {t!r}") for i, t in enumerate(caught)]
        + [(True, f"F{i} = f{t + '{x}'!r}") for i, t in enumerate(caught)]
        + [(False, f"P{i} = {t!r}") for i, t in enumerate(prose)]
        + [(False, f"Q{i} = f{'{x} ' + t!r}") for i, t in enumerate(caught)]  # a hole first
        + [(False, 'def f() -> None:\n    """SELECT 1 FROM a docstring: prose."""')]
    )
    package = tmp_path / "mcsync"
    (package / "queries").mkdir(parents=True)
    (package / "queries" / "home.py").write_text("HOME = 'SELECT 1'\n")
    (package / "shell.py").write_text("x = 1\n" + "\n".join(line for _, line in lines) + "\n")
    found = {int(f.split(":")[1]) for f in sql_outside_homes(package)}
    assert found == {n + 2 for n, (sql, _) in enumerate(lines) if sql}
