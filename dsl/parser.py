"""Policy text -> syntax tree (dsl.nodes), with every syntax error explained in plain words.

Lark's LALR parser does the grammar work. When a line is wrong, the parser reports it, blanks that line and
parses again, so one pass reports every independent mistake (up to MAX_ERRORS); a mistake in the block
structure (a missing ``end``) stops the search, because what follows it would only be noise.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr
from lark.tree import Meta

from dsl import nodes as n
from dsl.errors import Diagnostic, PolicySyntaxError, did_you_mean, one_of
from dsl.limits import MAX_CONDITION_DEPTH, MAX_POLICY_CHARS
from rules.durations import DurationError, parse_short

MAX_ERRORS = 20
GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

# What each kind of token is, in a business user's words.
TERMINAL_WORDS = {
    "NAME": "a name",
    "STRING": 'a quoted text like "payment_failed"',
    "TIME": "a time like 09:00",
    "DURATION": "a duration like 15m, 2h, 3d or 1w",
    "PERCENT": "a percentage like 50%",
    "NUMBER": "a number",
    "CURRENCY": "a currency code like USD",
    "FIELD": "a fact like customer.country",
    "DAY": "a weekday like mon",
    "BOOL": "true or false",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)",
    "SKIP_ITEM": "holidays or weekends",
    "PERIOD": "hour, day or week",
    "_NL": "the end of the line",
    "$END": "the end of the policy",
}
POLICY_LINES = (
    "segment",
    "business hours",
    "quiet hours",
    "skip",
    "cadence",
    "override",
    "holdout",
    "offers",
    "plan",
    "experiment",
)
PLAN_LINES = ("priority", "step", "escalate", "give up")
OPERAND_TERMINALS = {"FIELD", "NUMBER", "STRING", "DURATION", "PERCENT", "TIME", "DAY", "BOOL"}
# Where a keyword that is out of place belongs.
BELONGS = {
    "step": "steps belong inside a plan ... end block",
    "priority": "priority belongs inside a plan ... end block",
    "escalate": "escalate belongs inside a plan ... end block",
    "give": "give up belongs inside a plan ... end block",
    "when": "offer rules belong inside an offers ... end block",
    "otherwise": "offer rules belong inside an offers ... end block",
    "segment": "segments are written at the top level of the policy, not inside a block",
    "plan": "a plan cannot start inside another block: is an end missing above?",
    "offers": "offers cannot start inside another block: is an end missing above?",
    "arm": "arms belong inside an experiment block, and an arm with statements of its own closes them with end: "
    "is one missing above?",
    "guardrail": "guardrails belong inside an experiment ... end block, after its arms",
    "experiment": "an experiment cannot start inside another block: is an end missing above?",
}
BLOCK_OPENERS = ("plan", "offers", "policy", "experiment")


@cache
def _lark() -> Lark:
    return Lark(
        GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
    )


@cache
def _keyword_of() -> dict[str, str]:
    """Terminal name -> the literal keyword text, for terminals that are a fixed word or symbol."""
    return {t.name: t.pattern.value for t in _lark().terminals if isinstance(t.pattern, PatternStr)}


def parse(text: str, filename: str = "<policy>") -> n.Policy:
    """Parse policy text. Raises PolicySyntaxError carrying every syntax error found."""
    del filename  # errors carry positions; callers format them with the file name
    if len(text) > MAX_POLICY_CHARS:
        raise PolicySyntaxError([_too_long(text)])
    lines = text.splitlines()
    work = text
    diagnostics: list[Diagnostic] = []
    while True:
        try:
            tree = _lark().parse(work)
        except UnexpectedInput as exc:
            diag, recoverable = _explain(exc, work, lines)
            diagnostics.append(diag)
            if not recoverable or len(diagnostics) >= MAX_ERRORS:
                break
            blanked = _blank_line(work, diag.line)
            if blanked == work:
                break
            work = blanked
            continue
        if diagnostics:
            break
        too_deep = _too_deep(tree, lines)
        if too_deep is not None:  # before the (recursive) transform: nesting is bounded from here on
            raise PolicySyntaxError([too_deep])
        try:
            policy: n.Policy = _ToNodes().transform(tree)
        except VisitError as exc:  # a value the grammar accepts but that means nothing (e.g. 25:00)
            if isinstance(exc.orig_exc, _BadValue):
                bad = exc.orig_exc
                raise PolicySyntaxError([_diag(bad.line, bad.col, bad.message, lines)]) from None
            raise
        except _BadValue as bad:
            raise PolicySyntaxError([_diag(bad.line, bad.col, bad.message, lines)]) from None
        return _with_comments(policy, lines)
    diagnostics.sort(key=lambda d: (d.line, d.col))
    raise PolicySyntaxError(diagnostics)


# --- errors ------------------------------------------------------------------------------------------------


def _diag(line: int, col: int, message: str, lines: list[str]) -> Diagnostic:
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    return Diagnostic(line=line, col=col, message=message, source_line=source)


def _too_long(text: str) -> Diagnostic:
    """Where the text passes the size cap (the policy is not read any further)."""
    line = text.count("\n", 0, MAX_POLICY_CHARS) + 1
    col = MAX_POLICY_CHARS - (text.rfind("\n", 0, MAX_POLICY_CHARS) + 1) + 1
    source = text[text.rfind("\n", 0, MAX_POLICY_CHARS) + 1 : MAX_POLICY_CHARS]
    message = (
        f"the policy is too long ({len(text):,} characters): a policy may have at most {MAX_POLICY_CHARS:,}; "
        "split it or shorten its conditions"
    )
    return Diagnostic(line=line, col=col, message=message, source_line=source)


# Conditions nest through these rules: ``not`` and a parenthesised ``(... or ...)`` group.
_NESTING_RULES = frozenset({"not_", "or_"})


def _too_deep(tree: Tree[Token], lines: list[str]) -> Diagnostic | None:
    """The first condition nested deeper than MAX_CONDITION_DEPTH, walked without recursion."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_CONDITION_DEPTH:
                at = _pos(node.meta)
                message = (
                    f"this condition is nested too deeply: at most {MAX_CONDITION_DEPTH} levels of "
                    "parentheses and not; write it flatter"
                )
                return _diag(at["line"] or 1, at["col"] or 1, message, lines)
        stack.extend((child, depth) for child in reversed(node.children) if isinstance(child, Tree))
    return None


def _blank_line(text: str, line: int) -> str:
    parts = text.split("\n")
    if not 0 < line <= len(parts):
        return text
    parts[line - 1] = " " * len(parts[line - 1].rstrip("\r"))
    return "\n".join(parts)


def _first_word(lines: list[str], line: int) -> str:
    if not 0 < line <= len(lines):
        return ""
    words = lines[line - 1].split()
    return words[0] if words else ""


def _describe_expected(expected: set[str]) -> str:
    keywords = _keyword_of()
    names = set(expected)
    if {"SEGMENT", "PLAN", "OFFERS", "ARM"} <= names:
        return f"the next arm, a guardrail, a line of this arm ({', '.join(POLICY_LINES)}) or end"
    if {"SEGMENT", "PLAN", "OFFERS"} <= names:
        return f"a policy line ({', '.join(POLICY_LINES)}) or end"
    if {"PRIORITY", "STEP"} <= names:
        return f"a plan line ({', '.join(PLAN_LINES)}) or end"
    if {"ARM", "GUARDRAIL", "END"} <= names:
        return "an experiment line (arm NAME 50%, guardrail METRIC 1%) or end"
    if {"WHEN", "OTHERWISE", "END"} <= names:
        return "an offer rule (when ... offer ..., otherwise offer ...) or end"
    if {"FIELD", "LPAR", "NOT"} <= names:
        return 'a condition like customer.country == "US"'
    words: list[str] = []
    operands = names & OPERAND_TERMINALS
    if len(operands) >= 4:
        words.append('a fact like customer.country or a value like 500 USD, 3, "text", 2d or 50%')
        names -= OPERAND_TERMINALS
    if "POLICY" in names:
        return 'a first line like: policy "standard"'
    if "COMPARE" in names:  # after a value, LALR's follow set is wide; keep what a person would type next
        names -= {"COMMA", "RPAR", "RSQB", "CURRENCY"}
    if {"COMPARE", "IN", "HAS", "BETWEEN"} <= names:
        words.append("a comparison (==, !=, <, <=, >, >=, in, has, between)")
        names -= {"COMPARE", "IN", "HAS", "BETWEEN", "NOT"}
    if {"AND", "OR"} <= names:
        words.append("and / or")
        names -= {"AND", "OR"}
    for name in sorted(names, key=lambda t: (t.startswith("_") or t == "$END", t)):
        if name in TERMINAL_WORDS:
            words.append(TERMINAL_WORDS[name])
        elif name in keywords:
            words.append(f'"{keywords[name]}"')
        else:
            words.append(name.lower())
    return one_of(words)


def _describe_found(token: Token) -> str:
    if token.type == "$END":
        return "the end of the policy"
    if token.type == "_NL":
        return "the end of the line"
    return f'"{token.value}"'


def _block_left_open(lines: list[str]) -> tuple[str, int, int] | None:
    """The block (plan, offers, policy) that the text opens and never closes: (keyword, line, column).

    A line scan that trusts indentation: an ``end`` closes the opener indented like it, and any opener
    indented deeper than that ``end`` was left open.
    """
    stack: list[tuple[str, int, int]] = []
    unclosed: tuple[str, int, int] | None = None
    for number, line in enumerate(lines, start=1):
        words = _strip_comment(line).split()
        if not words:
            continue
        indent = len(line) - len(line.lstrip())
        if words[0] in BLOCK_OPENERS or (words[0] == "arm" and _deeper_below(lines, number, indent)):
            stack.append((words[0], number, indent + 1))
        elif words[0] == "end" and stack:
            while len(stack) > 1 and stack[-1][2] > indent + 1:
                unclosed = unclosed or stack[-1]
                stack.pop()
            stack.pop()
    if unclosed:
        return unclosed
    return stack[-1] if stack else None


def _deeper_below(lines: list[str], number: int, indent: int) -> bool:
    """Whether the next line with code is indented deeper than ``indent``: an arm with statements of its own."""
    for line in lines[number:]:
        if _strip_comment(line).strip():
            return len(line) - len(line.lstrip()) > indent
    return False


def _explain(exc: UnexpectedInput, text: str, original: list[str]) -> tuple[Diagnostic, bool]:
    """Turn Lark's exception into one plain-words diagnostic; say whether parsing may go on past it."""
    lines = text.split("\n")
    if isinstance(exc, UnexpectedToken | UnexpectedEOF) and (
        isinstance(exc, UnexpectedEOF) or exc.token.type == "$END"
    ):
        if not _strip_comment(text).strip() and not any(_strip_comment(line).strip() for line in lines):
            return _diag(
                1, 1, 'the policy is empty: start with a line like: policy "standard"', original
            ), False
        last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=1)
        opened = _block_left_open(lines)
        if opened:
            kind, at, col = opened
            what = "policy" if kind == "policy" else f"{kind} block"
            return _diag(at, col, f'this {what} has no "end"', original), False
        end_col = len(original[last - 1]) + 1 if last <= len(original) else 1
        return _diag(last, end_col, "the policy ends too early", original), False

    if isinstance(exc, UnexpectedCharacters):
        line, col = exc.line, exc.column
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        if char == "=":
            message = 'use "==" to compare two values'
        elif char == '"':
            message = "this quoted text is not closed on the same line"
        elif char == "'":
            message = 'use double quotes for text, like "payment_failed"'
        elif char == "$" or char == "€" or char == "£":
            message = "write amounts with a currency code after them, like 500 USD"
        elif exc.allowed:
            message = f'expected {_describe_expected(set(exc.allowed))}, but found "{char}"'
        else:
            message = f'"{char}" is not allowed here'
        word = _first_word(lines, line)
        return _diag(line, col, message, original), word not in (*BLOCK_OPENERS, "arm")

    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    line, col = token.line or 1, token.column or 1
    glued = _glued_word(lines, line, col)
    if glued is not None:  # a keyword ran into more letters: "skipp" lexes as "skip" + "p"
        start, word = glued
        words = sorted({v for v in _keyword_of().values() if v.isalpha()})
        message = f'"{word}" is not a word this language knows{did_you_mean(word, words)}'
        return _diag(line, start, message, original), _first_word(lines, line) not in BLOCK_OPENERS
    expected = _describe_expected(set(exc.expected))
    message = f"expected {expected}, but found {_describe_found(token)}"
    value = str(token.value)
    if token.type == "_NL":
        line, col = _end_of_line(lines, token)
        if "RPAR" in exc.expected:
            message = 'a "(" on this line is not closed: add ")"'
    elif token.type == "NAME" and "FIELD" in exc.expected:
        message = (
            f'"{value}" is not a fact: facts are written with their group, '
            f"like customer.{value} or transaction.{value}"
        )
    elif value in BELONGS and token.type not in ("NAME", "STRING") and "POLICY" not in exc.expected:
        message += f" ({BELONGS[value]})"
    elif "CURRENCY" in exc.expected and token.type == "NAME" and len(value) == 3 and value.isalpha():
        message = f"write the currency code in capitals, like {value.upper()}"
    elif "DURATION" in exc.expected and token.type == "NUMBER":
        message += " (durations are written as one word, like 2d)"
    elif "TIME" in exc.expected and token.type in ("NUMBER", "DURATION"):
        message = f'expected a time like 09:00, but found "{value}"'
    if token.type == "NAME":
        keywords = _keyword_of()
        candidates = [keywords[t] for t in exc.expected if t in keywords and keywords[t].isalpha()]
        message += did_you_mean(value, candidates)
    word = _first_word(lines, line)
    structural = (
        word in BLOCK_OPENERS
        or word == "end"
        or word == "arm"
        or value in ("end", "plan", "offers", "experiment", "arm")
        or "POLICY" in exc.expected
    )
    return _diag(line, col, message, original), not structural


def _glued_word(lines: list[str], line: int, col: int) -> tuple[int, str] | None:
    """(start column, whole word) when the token at ``col`` continues a word begun before it."""
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    i = col - 1
    if not (0 < i < len(source)) or not _wordish(source[i - 1]) or not _wordish(source[i]):
        return None
    start = i
    while start > 0 and _wordish(source[start - 1]):
        start -= 1
    end = i
    while end < len(source) and _wordish(source[end]):
        end += 1
    return start + 1, source[start:end]


def _wordish(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _end_of_line(lines: list[str], token: Token) -> tuple[int, int]:
    line = token.line or 1
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    code = _strip_comment(source).rstrip()
    return line, len(code) + 1


def _strip_comment(line: str) -> str:
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif ch == "#" and not in_string:
            return line[:i]
    return line


# --- comments (kept so that `fmt` does not lose them) ------------------------------------------------------


def _with_comments(policy: n.Policy, lines: list[str]) -> n.Policy:
    comments: list[n.Comment] = []
    for number, line in enumerate(lines, start=1):
        code = _strip_comment(line)
        if len(code) < len(line):
            comments.append(n.Comment(number, line[len(code) :].rstrip(), trailing=bool(code.strip())))
    if not comments:
        return policy
    return n.Policy(
        policy.name,
        policy.statements,
        line=policy.line,
        col=policy.col,
        end_line=policy.end_line,
        comments=tuple(comments),
    )


# --- tree -> nodes -----------------------------------------------------------------------------------------


class _BadValue(Exception):
    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.line = token.line or 1
        self.col = token.column or 1
        self.message = message


def _end_token(children: list[Any]) -> Token:
    return next(c for c in reversed(children) if isinstance(c, Token) and c.type == "END")


class _Pos(TypedDict):
    line: int
    col: int


def _pos(meta: Meta | Token) -> _Pos:
    if isinstance(meta, Token):
        return {"line": meta.line or 0, "col": meta.column or 0}
    if getattr(meta, "empty", True):
        return {"line": 0, "col": 0}
    return {"line": meta.line, "col": meta.column}


def _duration(token: Token) -> n.Duration:
    try:
        return parse_short(str(token))
    except DurationError as exc:
        raise _BadValue(token, str(exc)) from None


def _time(token: Token) -> n.TimeLit:
    hours, minutes = str(token).split(":")
    hour, minute = int(hours), int(minutes)
    if hour > 24 or minute > 59 or (hour == 24 and minute != 0):
        raise _BadValue(
            token, f'"{token}" is not a time of day: write hours 00-23 and minutes 00-59, like 09:00'
        )
    return n.TimeLit(hour, minute, **_pos(token))


def _unquote(token: Token) -> str:
    return str(token)[1:-1]


def _decimal(token: Token) -> Decimal:
    text = str(token).rstrip("%")
    if len(text) > 30:
        raise _BadValue(token, f'"{token}" is too large a number')
    return Decimal(text)


@v_args(meta=True)
class _ToNodes(Transformer[Token, Any]):
    """Lark tree -> dsl.nodes. Each method gets the rule's position and its children."""

    def start(self, meta: Meta, children: list[Any]) -> n.Policy:
        policy: n.Policy = children[-1]
        return policy

    def policy(self, meta: Meta, children: list[Any]) -> n.Policy:
        name = _unquote(children[0])
        end = _end_token(children)
        statements = tuple(c for c in children[1:] if not isinstance(c, Token))
        return n.Policy(name, statements, end_line=end.line or 0, **_pos(meta))

    # conditions
    def field(self, meta: Meta, c: list[Token]) -> n.FieldRef:
        return n.FieldRef(str(c[0]), **_pos(c[0]))

    def money(self, meta: Meta, c: list[Token]) -> n.MoneyLit:
        return n.MoneyLit(_decimal(c[0]), str(c[1]), **_pos(c[0]))

    def number(self, meta: Meta, c: list[Token]) -> n.NumberLit:
        return n.NumberLit(_decimal(c[0]), **_pos(c[0]))

    def string(self, meta: Meta, c: list[Token]) -> n.StringLit:
        return n.StringLit(_unquote(c[0]), **_pos(c[0]))

    def duration(self, meta: Meta, c: list[Token]) -> n.DurationLit:
        return n.DurationLit(_duration(c[0]), **_pos(c[0]))

    def percent(self, meta: Meta, c: list[Token]) -> n.PercentLit:
        return n.PercentLit(_decimal(c[0]), **_pos(c[0]))

    def time(self, meta: Meta, c: list[Token]) -> n.TimeLit:
        return _time(c[0])

    def day(self, meta: Meta, c: list[Token]) -> n.DayLit:
        return n.DayLit(str(c[0]), **_pos(c[0]))

    def boolean(self, meta: Meta, c: list[Token]) -> n.BoolLit:
        return n.BoolLit(str(c[0]) == "true", **_pos(c[0]))

    def compare(self, meta: Meta, c: list[Any]) -> n.Compare:
        return n.Compare(c[0], str(c[1]), c[2], **_pos(meta))

    def in_list(self, meta: Meta, c: list[Any]) -> n.InList:
        return n.InList(c[0], tuple(c[1]), **_pos(meta))

    def not_in_list(self, meta: Meta, c: list[Any]) -> n.InList:
        return n.InList(c[0], tuple(c[1]), negated=True, **_pos(meta))

    def value_list(self, meta: Meta, c: list[Any]) -> list[Any]:
        return c

    def has(self, meta: Meta, c: list[Any]) -> n.Has:
        return n.Has(c[0], c[1], **_pos(meta))

    def between(self, meta: Meta, c: list[Any]) -> n.Between:
        return n.Between(c[0], c[1], c[2], **_pos(meta))

    def truthy(self, meta: Meta, c: list[Any]) -> n.Truthy:
        return n.Truthy(c[0], **_pos(meta))

    def not_(self, meta: Meta, c: list[Any]) -> n.Not:
        return n.Not(c[0], **_pos(meta))

    def and_(self, meta: Meta, c: list[Any]) -> Any:
        return c[0] if len(c) == 1 else n.And(tuple(c), **_pos(meta))

    def or_(self, meta: Meta, c: list[Any]) -> Any:
        return c[0] if len(c) == 1 else n.Or(tuple(c), **_pos(meta))

    def condition(self, meta: Meta, c: list[Any]) -> Any:
        return c[0]

    # statements
    def segment(self, meta: Meta, c: list[Any]) -> n.Segment:
        return n.Segment(n.Name(str(c[0]), **_pos(c[0])), c[1], **_pos(meta))

    def segment_otherwise(self, meta: Meta, c: list[Any]) -> n.Segment:
        return n.Segment(n.Name(str(c[0]), **_pos(c[0])), None, **_pos(meta))

    def regions(self, meta: Meta, c: list[Token]) -> tuple[n.Text, ...]:
        return tuple(n.Text(_unquote(t), **_pos(t)) for t in c)

    def hours_entry(self, meta: Meta, c: list[Token]) -> n.HoursEntry:
        first = n.DayLit(str(c[0]), **_pos(c[0]))
        last = n.DayLit(str(c[1]), **_pos(c[1])) if len(c) == 4 else None
        return n.HoursEntry(first, last, _time(c[-2]), _time(c[-1]), **_pos(meta))

    def business_hours(self, meta: Meta, c: list[Any]) -> n.BusinessHours:
        regions: tuple[n.Text, ...] = c[0] if isinstance(c[0], tuple) else ()
        entries = tuple(x for x in c if isinstance(x, n.HoursEntry))
        return n.BusinessHours(regions, entries, **_pos(meta))

    def quiet_hours(self, meta: Meta, c: list[Any]) -> n.QuietHours:
        regions: tuple[n.Text, ...] = c[0] if isinstance(c[0], tuple) else ()
        return n.QuietHours(regions, _time(c[-2]), _time(c[-1]), **_pos(meta))

    def skip(self, meta: Meta, c: list[Token]) -> n.Skip:
        return n.Skip(tuple(n.Name(str(t), **_pos(t)) for t in c), **_pos(meta))

    def cadence_max(self, meta: Meta, c: list[Token]) -> n.CadenceMax:
        return n.CadenceMax(_decimal(c[0]), str(c[1]), **_pos(meta))

    def cadence_gap(self, meta: Meta, c: list[Token]) -> n.CadenceGap:
        return n.CadenceGap(_duration(c[0]), **_pos(meta))

    def across(self, meta: Meta, c: list[Any]) -> bool:
        return True

    def cadence(self, meta: Meta, c: list[Any]) -> n.Cadence:
        items = tuple(x for x in c if isinstance(x, n.CadenceMax | n.CadenceGap))
        return n.Cadence(items, any(x is True for x in c), **_pos(meta))

    def ignore_business_hours(self, meta: Meta, c: list[Any]) -> n.Name:
        return n.Name("business_hours", **_pos(meta))

    def ignore_quiet_hours(self, meta: Meta, c: list[Any]) -> n.Name:
        return n.Name("quiet_hours", **_pos(meta))

    def ignore_calendar(self, meta: Meta, c: list[Token]) -> n.Name:
        return n.Name(str(c[0]), **_pos(c[0]))

    def ignore_cadence(self, meta: Meta, c: list[Any]) -> n.Name:
        return n.Name("cadence", **_pos(meta))

    def override(self, meta: Meta, c: list[Any]) -> n.Override:
        return n.Override(c[0], tuple(c[1:]), **_pos(meta))

    def holdout_retries(self, meta: Meta, c: list[Any]) -> bool:
        return True

    def holdout(self, meta: Meta, c: list[Any]) -> n.Holdout:
        percent = n.PercentLit(_decimal(c[0]), **_pos(c[0]))
        return n.Holdout(percent, with_retries=any(x is True for x in c[1:]), **_pos(meta))

    def offer(self, meta: Meta, c: list[Token]) -> n.Offer:
        term = _duration(c[1]) if len(c) > 1 else None
        return n.Offer(str(c[0]), term, **_pos(c[0]))

    def offer_when(self, meta: Meta, c: list[Any]) -> n.OfferRule:
        return n.OfferRule(c[0], tuple(c[1:]), **_pos(meta))

    def offer_otherwise(self, meta: Meta, c: list[Any]) -> n.OfferRule:
        return n.OfferRule(None, tuple(c), **_pos(meta))

    def offers(self, meta: Meta, c: list[Any]) -> n.Offers:
        rules = tuple(x for x in c if not isinstance(x, Token))
        return n.Offers(rules, end_line=_end_token(c).line or 0, **_pos(meta))

    def priority(self, meta: Meta, c: list[Token]) -> n.Priority:
        return n.Priority(n.Name(str(c[0]), **_pos(c[0])), **_pos(meta))

    def variant(self, meta: Meta, c: list[Token]) -> n.Variant:
        return n.Variant(str(c[0]), _decimal(c[1]), **_pos(c[0]))

    def variants(self, meta: Meta, c: list[Any]) -> tuple[n.Variant, ...]:
        return tuple(c)

    def message_step(self, meta: Meta, c: list[Any]) -> n.MessageStep:
        after = _duration(c[0])
        channels = tuple(
            n.Name(str(t), **_pos(t)) for t in c[1:] if isinstance(t, Token) and t.type == "NAME"
        )
        template_token = next(t for t in c if isinstance(t, Token) and t.type == "STRING")
        template = n.Text(_unquote(template_token), **_pos(template_token))
        variants: tuple[n.Variant, ...] = next((x for x in c if isinstance(x, tuple)), ())
        rest = c[-1]
        condition = rest if not isinstance(rest, Token | tuple) else None
        return n.MessageStep(after, channels, template, variants, condition, **_pos(meta))

    def retry_step(self, meta: Meta, c: list[Any]) -> n.RetryStep:
        return n.RetryStep(_duration(c[0]), c[1] if len(c) > 1 else None, **_pos(meta))

    def escalate(self, meta: Meta, c: list[Token]) -> n.Escalate:
        return n.Escalate(_duration(c[0]), n.Text(_unquote(c[1]), **_pos(c[1])), **_pos(meta))

    def give_up(self, meta: Meta, c: list[Token]) -> n.GiveUp:
        return n.GiveUp(_duration(c[0]), **_pos(meta))

    def plan_for(self, meta: Meta, c: list[Any]) -> n.Plan:
        segments = tuple(n.Name(str(t), **_pos(t)) for t in c if isinstance(t, Token) and t.type == "NAME")
        items = tuple(x for x in c if not isinstance(x, Token))
        return n.Plan(segments, items, end_line=_end_token(c).line or 0, **_pos(meta))

    def plan_otherwise(self, meta: Meta, c: list[Any]) -> n.Plan:
        items = tuple(x for x in c if not isinstance(x, Token))
        return n.Plan((), items, end_line=_end_token(c).line or 0, **_pos(meta))

    def arm(self, meta: Meta, c: list[Any]) -> n.Arm:
        name, weight = c[0], c[1]
        statements = tuple(x for x in c[2:] if not isinstance(x, Token))
        end = next((t for t in reversed(c) if isinstance(t, Token) and t.type == "END"), None)
        return n.Arm(
            n.Name(str(name), **_pos(name)),
            n.PercentLit(_decimal(weight), **_pos(weight)),
            statements,
            end_line=(end.line or 0) if end is not None else 0,
            **_pos(meta),
        )

    def guardrail(self, meta: Meta, c: list[Token]) -> n.Guardrail:
        metric = n.Name(str(c[0]), **_pos(c[0]))
        return n.Guardrail(metric, n.PercentLit(_decimal(c[1]), **_pos(c[1])), **_pos(meta))

    def experiment(self, meta: Meta, c: list[Any]) -> n.Experiment:
        arms = tuple(x for x in c if isinstance(x, n.Arm))
        guardrails = tuple(x for x in c if isinstance(x, n.Guardrail))
        return n.Experiment(
            _unquote(c[0]), arms, guardrails, end_line=_end_token(c).line or 0, **_pos(meta)
        )
