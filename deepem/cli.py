"""The ``deepem`` command: one subcommand per module in ``deepem.commands``.

Each subcommand module has a docstring (its help text, with an example), ``add_args(parser)``
and ``main(args)``. A ``DeepEMError`` is printed as one line and exits with status 2. An
argument ``@FILE`` stands for the lines of FILE, one argument per line (blank lines skipped; a line
is never itself read as ``@FILE``): the workflow passes its lists of files so, which can outgrow the
system's limit on a command line. A file whose name starts with ``@`` is given as ``./@name``. Run
records (``run.json``) hold the command with its argument files expanded.
"""

import argparse
import importlib
import sys
from pathlib import Path

from deepem import __version__
from deepem.errors import DeepEMError

COMMANDS = [
    "simulate", "preprocess", "extract", "train", "pick", "gather", "verify", "evaluate", "rounds", "provenance", "show",
    "histogram", "convert",
]


def build_parser(only=None):
    """The parser for every subcommand, or for ``only`` that one (its module alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="deepem", description="Pick particles in cryo-EM micrographs with DeepEM's convolutional network."
    )
    parser.add_argument("--version", action="version", version=f"deepem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        module = importlib.import_module(f"deepem.commands.{name}")
        doc = module.__doc__ or ""
        p = sub.add_parser(
            name, help=doc.strip().splitlines()[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_args(p)
        p.set_defaults(func=module.main)
    return parser


def expand_argument_files(argv, parser):
    """``argv`` with each ``@FILE`` replaced by the non-blank lines of FILE."""
    expanded = []
    for arg in argv:
        if not arg.startswith("@"):
            expanded.append(arg)
            continue
        try:
            text = Path(arg[1:]).read_text(encoding=sys.getfilesystemencoding(), errors=sys.getfilesystemencodeerrors())
            lines = text.splitlines()
        except OSError as exc:
            parser.error(f"cannot read the argument file {arg[1:]!r} ({exc}); an input whose name starts with '@' is given as ./@NAME")
        expanded += [line for line in lines if line]
    return expanded


def main(argv=None):
    program, argv = (sys.argv[0], sys.argv[1:]) if argv is None else ("deepem", argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    argv = expand_argument_files(argv, parser)
    args = parser.parse_args(argv)
    args.command_line = [program, *argv]
    try:
        args.func(args)
    except DeepEMError as exc:
        print(f"deepem {args.command}: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
