"""One vocabulary: no code in app/ or admin/ spells a channel, a priority, a case state or an outbox task as a bare
string where it compares, filters, lists or stores one; it says ``Channel.SMS``, ``Priority.URGENT``,
``CaseState.OPEN``, ``rules.case_states.ACTIVE``, ``OutboxTask.ESCALATION`` (``rules.vocabulary``,
``rules.case_states``).

The scan reads the source (``ast``), and looks only where a word is used as one of these values: a comparison or an
``in`` test, a tuple, list, set or dict-key literal made only of such words, a ``state=``, ``channel=`` or
``priority=`` argument, and an assignment to an attribute of those names. The same words in text for people, log
lines, template names or dictionary lookups are not its business. (Outbox states: tests/app/outbox/test_states.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from rules.case_states import CaseState
from rules.vocabulary import Channel, OutboxTask, Priority

ROOT = Path(__file__).resolve().parents[1]

#: each word and what it is
VOCABULARY: dict[str, str] = {
    **{c.value: "Channel" for c in Channel},
    **{p.value: "Priority" for p in Priority},
    **{s.value: "CaseState" for s in CaseState},
    **{t.value: "OutboxTask" for t in OutboxTask},
}
#: the names under which an argument or an attribute holds one of these values
HOLDERS = frozenset({"state", "channel", "priority"})

#: files that may spell the words, and why
ALLOWED: dict[str, str] = {
    # owned by a concurrent change (issue 14); converted next
    "app/ingest/customers.py": "owned by a concurrent change; converted next",  # ("email", ...) as a matching key
    "app/queue.py": "owned by a concurrent change; converted next",  # RQ queue names are the priorities
}


def _words(node: ast.AST) -> list[str]:
    """The vocabulary words ``node`` spells: a string, or a collection literal made only of such strings (a tuple
    of ordinary words with one vocabulary word among them is not a list of channels)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value in VOCABULARY else []
    if isinstance(node, ast.IfExp):
        return _words(node.body) + _words(node.orelse)
    members: list[ast.expr | None] = []
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        members = list(node.elts)
    elif isinstance(node, ast.Dict):
        members = list(node.keys)
    if not members or not all(isinstance(m, ast.Constant) and isinstance(m.value, str) for m in members):
        return []
    words = [m.value for m in members if isinstance(m, ast.Constant)]
    return words if all(w in VOCABULARY for w in words) else []


def _holder(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in HOLDERS


def bare_words(source: str) -> list[tuple[int, str]]:
    """(line, word) for each vocabulary word spelled as a string where it is used as a value of its kind."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        words: list[str] = []
        if isinstance(node, ast.Compare):
            words = [w for side in (node.left, *node.comparators) for w in _words(side)]
        elif isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
            words = _words(node)
        elif isinstance(node, ast.Call):
            words = [w for k in node.keywords if k.arg in HOLDERS for w in _words(k.value)]
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("in_", "notin_", "not_in"):
                words += [w for arg in node.args for w in _words(arg)]
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (zip(target.elts, node.value.elts, strict=False)
                         if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                         else [(target, node.value)])
                words += [w for t, v in pairs if _holder(t) for w in _words(v)]
        found += [(getattr(node, "lineno", 0), w) for w in words]
    return sorted(set(found))


def test_the_scan_finds_bare_words_where_they_are_values():
    module = "\n".join([
        'PERSON = ("email", "sms", "whatsapp")',  # 1: a list of channels
        'if row.channel == "sms": pass',  # 2: a comparison
        'if case.state in ("open", "contacting"): pass',  # 3: a membership test
        'q.where(OutboxMessage.channel.in_(["escalation"]))',  # 4: an SQL IN
        'OutboxMessage(priority="urgent", state="open")',  # 5: keyword arguments
        'message.channel, message.priority = "sms", "low"',  # 6: assignments to attributes
        'ORDER = {"urgent": 0, "high": 1}',  # 7: dict keys
        'task.state = "assigned" if assignee else "open"',  # 8: either way
    ])
    assert bare_words(module) == [(1, "email"), (1, "sms"), (1, "whatsapp"), (2, "sms"), (3, "contacting"),
                                  (3, "open"), (4, "escalation"), (5, "open"), (5, "urgent"), (6, "low"),
                                  (6, "sms"), (7, "high"), (7, "urgent"), (8, "open")]


def test_the_scan_leaves_ordinary_words_alone():
    module = "\n".join([
        'log.info("the case is open; sending the email now")',  # text for people and logs
        'render("email", source)',  # a positional argument: a template kind, a lookup
        'FIELDS = ("id", "name", "email", "phone")',  # a tuple of field names, one of them spelled like a channel
        'row = {"email": customer.email, "phone": customer.phone}',  # a dict with other keys too
        'senders["sms"].send(x)',  # a lookup
        'x = Channel.SMS if row.channel == Channel.SMS else None',  # the enum
        'MessageEvent(kind="cancelled", state=OutboxState.CANCELLED)',  # other keywords, enum values
    ])
    assert bare_words(module) == []


def test_no_bare_vocabulary_word_is_left_in_app_or_admin():
    offenders = []
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "admin").rglob("*.py")]):
        name = path.relative_to(ROOT).as_posix()
        if name in ALLOWED:
            continue
        offenders += [f"{name}:{line}: {word!r} (say {VOCABULARY[word]}.{word.upper()})"
                      for line, word in bare_words(path.read_text())]
    assert not offenders, "use the enums of rules.vocabulary and rules.case_states:\n" + "\n".join(offenders)


def test_allowed_files_still_need_it():
    """A file cleaned of its bare words leaves ALLOWED, so the scan covers it from then on."""
    for name in ALLOWED:
        assert bare_words((ROOT / name).read_text()), f"{name} spells no word bare now: remove it from ALLOWED"
