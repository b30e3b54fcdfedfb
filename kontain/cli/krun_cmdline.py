"""krun's command line, parsed as runc's is: global options, a command, its options and
operands.

A small parser of its own rather than argparse, which brings re, enum and gettext with
it: ~9 ms of every krun start, and container engines start krun for each container.

    krun [GLOBAL OPTIONS] COMMAND [OPTIONS] OPERANDS...

Options are `--name VALUE`, `--name=VALUE`, `-n VALUE` or `-nVALUE`; a flag is `--name`
(or `--name=true|false`). A command's options may come before or among its operands
(engines put them first), except for a command that ends with the rest of the line
(`exec ID COMMAND...`): after its last operand, everything is that command's. `--`
ends the options.
"""

from __future__ import annotations


class UsageError(Exception):
    """A command line krun cannot make sense of (status 2, as argparse's)."""


class Option:
    """One option: its spellings, where it goes (dest) and what it takes."""

    def __init__(self, *names: str, kind: str = "value", default: object = None,
                 choices: tuple[str, ...] = (), convert=str) -> None:
        self.names = names
        self.dest = names[-1].lstrip("-").replace("-", "_")
        #: flag (True when given), value (the last given), append (a list of each)
        self.kind = kind
        self.default = [] if kind == "append" and default is None else default
        self.choices = choices
        self.convert = convert

    def take(self, namespace: Namespace, value: str | None) -> None:
        if self.kind == "flag":
            if value not in (None, "true", "false"):
                raise UsageError(f"option {self.names[-1]} takes no value")
            setattr(namespace, self.dest, value != "false")
            return
        if self.choices and value not in self.choices:
            raise UsageError(f"option {self.names[-1]}: {value!r} is not one of "
                             f"{', '.join(self.choices)}")
        try:
            converted = self.convert(value)
        except ValueError:
            raise UsageError(f"option {self.names[-1]}: bad value {value!r}") from None
        if self.kind == "append":
            getattr(namespace, self.dest).append(converted)
        else:
            setattr(namespace, self.dest, converted)


class Command:
    """A command: what runs it, its options, its operands (name, or name=default for
    an optional one), and whether the rest of the line after them is its own (rest)."""

    def __init__(self, name: str, handler, help_text: str, operands: tuple[str, ...] = (),
                 options: tuple[Option, ...] = (), rest: str | None = None) -> None:
        self.name, self.handler, self.help = name, handler, help_text
        self.operands, self.options, self.rest = operands, options, rest

    def usage(self) -> str:
        words = ["krun", self.name] + [f"[{o.names[-1]}]" for o in self.options]
        for operand in self.operands:
            name, optional, _default = operand.partition("=")
            words.append(f"[{name.upper()}]" if optional else name.upper())
        if self.rest:
            words.append(f"{self.rest.upper()}...")
        return " ".join(words)


class Namespace:
    """The parsed line: every option's and operand's dest as an attribute."""

    def __repr__(self) -> str:
        return f"Namespace({vars(self)!r})"


def parse(argv: list[str], options: tuple[Option, ...],
          commands: dict[str, Command]) -> Namespace:
    """The global options, then the command's; namespace.command is None without one
    (and namespace.help is set by -h/--help anywhere before the operands)."""
    namespace = Namespace()
    namespace.help = False
    _defaults(namespace, options)
    words = list(argv)
    _take_options(words, options, namespace, stop_at_operand=True)
    namespace.command = None
    if not words:
        return namespace
    name = words.pop(0)
    command = commands.get(name)
    if command is None:
        raise UsageError(f"unknown command {name!r}")
    namespace.command = name
    namespace.handler = command.handler
    _defaults(namespace, command.options)
    operands = _take_options(words, command.options, namespace,
                             stop_at_operand=command.rest is not None,
                             operands_wanted=len(command.operands))
    if namespace.help:
        return namespace
    for operand in command.operands:
        dest, optional, default = operand.partition("=")
        if operands:
            setattr(namespace, dest, operands.pop(0))
        elif optional:
            setattr(namespace, dest, default)
        else:
            raise UsageError(f"{name}: {dest.upper()} is missing ({command.usage()})")
    if command.rest is not None:
        setattr(namespace, command.rest, operands)
    elif operands:
        raise UsageError(f"{name}: unexpected {operands[0]!r} ({command.usage()})")
    return namespace


def _defaults(namespace: Namespace, options: tuple[Option, ...]) -> None:
    for option in options:
        default = list(option.default) if option.kind == "append" else option.default
        setattr(namespace, option.dest, False if option.kind == "flag" else default)


def _take_options(words: list[str], options: tuple[Option, ...], namespace: Namespace,
                  stop_at_operand: bool, operands_wanted: int = 0) -> list[str]:
    """Consume options from words (in place); returns the operands met. With
    stop_at_operand, the first operand ends the options (a global option list before
    the command) or the operands_wanted-th does (exec ID COMMAND...)."""
    by_name = {name: option for option in options for name in option.names}
    operands: list[str] = []
    while words:
        word = words[0]
        if word == "--":
            words.pop(0)
            operands += words
            words.clear()
            break
        if word in ("-h", "--help"):
            namespace.help = True
            words.pop(0)
            continue
        if not word.startswith("-") or word == "-":
            if stop_at_operand and len(operands) >= operands_wanted:
                break
            operands.append(words.pop(0))
            continue
        words.pop(0)
        name, equals, value = word.partition("=")
        if name not in by_name and not word.startswith("--") and word[:2] in by_name:
            name, value, equals = word[:2], word[2:], "="  # -nVALUE (-eA=1 included)
        option = by_name.get(name)
        if option is None:
            raise UsageError(f"unknown option {name}")
        if option.kind != "flag" and not equals:
            if not words:
                raise UsageError(f"option {name} needs a value")
            value = words.pop(0)
        option.take(namespace, value if equals or option.kind != "flag" else None)
    if stop_at_operand and operands_wanted == 0:
        words[:0] = operands  # the global list: the command and what follows stay
        return []
    if stop_at_operand:
        operands += words
        words.clear()
    return operands
