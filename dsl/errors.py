"""Diagnostics (errors and warnings) that point at a place in a policy and say what to do, in plain words."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    error = "error"
    warning = "warning"


@dataclass(frozen=True)
class Diagnostic:
    line: int
    col: int
    message: str
    severity: Severity = Severity.error
    source_line: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.error

    def format(self, filename: str = "<policy>") -> str:
        """``FILE:LINE:COL: message`` (warnings say so after the position)."""
        prefix = "warning: " if self.severity is Severity.warning else ""
        return f"{filename}:{self.line}:{self.col}: {prefix}{self.message}"

    def render(self, filename: str = "<policy>") -> str:
        """The one-line form, then the source line and a caret under the column."""
        text = self.format(filename)
        if self.source_line:
            shown = self.source_line.rstrip("\r\n").replace("\t", " ")
            text += f"\n    {shown}\n    {' ' * max(self.col - 1, 0)}^"
        return text


class PolicyError(Exception):
    """The policy cannot be used as written. Carries every diagnostic found, errors first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        self.line = first.line if first else 0
        self.col = first.col if first else 0
        self.message = first.message if first else "the policy is not valid"
        self.source_line = first.source_line if first else ""
        super().__init__(self.format())

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)

    def format(self, filename: str = "<policy>") -> str:
        return "\n".join(d.format(filename) for d in self.diagnostics) or self.message

    def render(self, filename: str = "<policy>") -> str:
        return "\n".join(d.render(filename) for d in self.diagnostics) or self.message


class PolicySyntaxError(PolicyError):
    """The text does not follow the language's grammar."""


class PolicyValidationError(PolicyError):
    """The text is grammatical but does not make sense (unknown names, wrong types, impossible plans)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean "x"?`` when one of ``choices`` is close to ``word``, else an empty string."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' — did you mean "{match[0]}"?' if match else ""


def one_of(words: Sequence[str], conjunction: str = "or") -> str:
    """``a, b or c``."""
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"
