"""Every `dogbreeds ...` command the docs show parses with the CLI's own parsers (`dogbreeds.cli.parser`), without running.

Collected from README.md and the notebooks' markdown cells:
- shell code blocks: each line that starts with `dogbreeds` (or `$ dogbreeds`), backslash continuations joined, `# comments`
  dropped. These are whole commands: they must parse as they are, required arguments included.
- inline code that starts with `dogbreeds <command>` and has an option (` -`). Prose names a command with the options it is
  about (`dogbreeds deploy --alarms`), so an inline mention may leave out required arguments; every option it shows must
  exist, with a value its type takes.

A placeholder stands for a value of any type: an upper-case word (`RUN`, `PCT`, `I/N`), `...`, or a word with `<...>` in it."""
import json, re, shlex
from pathlib import Path

import pytest

from dogbreeds.cli import COMMANDS, parser

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"^(\.\.\.|.*<[^>]+>.*|[A-Z][A-Z0-9_]*([/:@.,-][A-Z0-9_]+)*(\.\.\.)?)$")
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`(dogbreeds [^`]+)`")
SHELLS = {'', 'bash', 'sh', 'shell', 'console', 'zsh'}
SHELL_OPS = {'>', '>>', '2>', '<', '|', '&&', '||', ';', '&'}


def sources():
    "(where, markdown text) of README.md and of each markdown cell of the notebooks."
    yield 'README.md', (ROOT/'README.md').read_text()
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            if c['cell_type'] == 'markdown': yield f"{nb.relative_to(ROOT)} cell {i}", ''.join(c['source'])


def commands(text:str):
    "(kind, command line) of the `dogbreeds` commands in markdown `text`: 'block' from shell blocks, 'inline' from inline code."
    lang, pending, prose = None, '', []
    for line in text.splitlines():
        if m := FENCE.match(line.strip()):
            lang = m.group(1).lower() if lang is None else None
            prose.append('')
            continue
        if lang is None: prose.append(line); continue
        if lang not in SHELLS: continue
        s = (pending + ' ' + line.strip()).strip() if pending else line.strip().removeprefix('$ ')
        if s.endswith('\\'): pending = s[:-1].rstrip(); continue
        pending = ''
        if s.startswith('dogbreeds ') or s == 'dogbreeds': yield 'block', s
    for cmd in INLINE.findall('\n'.join(prose)):  # inline code may run over a line break
        if ' -' in (cmd := ' '.join(cmd.split())): yield 'inline', cmd


DOCUMENTED = [(where, kind, cmd) for where, text in sources() for kind, cmd in commands(text)]


class Refused(Exception): pass


def _lenient(t):
    "An argparse `type` that also takes a placeholder."
    def parse(v): return v if PLACEHOLDER.match(v) else t(v)
    parse.__name__ = getattr(t, '__name__', 'value')
    return parse


def check(line:str, whole:bool=True):
    "Parse a documented `dogbreeds` line with its command's parser; raise `Refused` with argparse's message if it refuses it."
    argv = shlex.split(line, comments=True)[1:]
    argv = [a.strip('[]') for a in argv if a.strip('[]')]  # a usage synopsis's optional parts: `[--source S]`
    argv = argv[:next((i for i, a in enumerate(argv) if a in SHELL_OPS), len(argv))]  # up to a redirection or a pipe
    if not argv: return
    if argv[0] in ('--version', '-h', '--help'): return
    if PLACEHOLDER.match(argv[0]):  # `dogbreeds COMMAND --help`: what follows must suit every command
        for cmd in COMMANDS: check(' '.join(['dogbreeds', cmd, *map(shlex.quote, argv[1:])]), whole)
        return
    if argv[0] not in COMMANDS: raise Refused(f"unknown command {argv[0]!r}")
    p = parser(argv[0])
    for a in p._actions:
        if a.type is not None: a.type = _lenient(a.type)
    def error(msg):
        if whole or not msg.startswith('the following arguments are required'): raise Refused(msg)
    p.error = error
    try: p.parse_args(argv[1:])
    except SystemExit as e:  # --help prints and exits 0
        if e.code: raise Refused(f"exit {e.code}") from None


def test_the_docs_show_commands():
    kinds = {k for _, k, _ in DOCUMENTED}
    assert len(DOCUMENTED) > 40 and kinds == {'block', 'inline'}, DOCUMENTED
    shown = {shlex.split(c, comments=True)[1] for _, _, c in DOCUMENTED if len(shlex.split(c, comments=True)) > 1}
    assert {'train', 'predict', 'deploy', 'retrain', 'pull'} <= shown, shown


def test_a_refused_line_fails():
    "The check itself: lines the CLI refuses are caught, those it takes pass."
    check('dogbreeds deploy NAME --image-uri ... --role-arn ...')
    check('dogbreeds predict photos/ --out r.csv -k 3 --batch-size 8')
    check('dogbreeds deploy --alarms', whole=False)
    check('dogbreeds iam lambda --trust > trust.json')
    check('dogbreeds COMMAND --help')
    check('dogbreeds geo feedback list --since 2h [--source S]')
    for bad in ('dogbreeds deploy NAME --image ... --role ...', 'dogbreeds geo stats [--db D]', 'dogbreeds train --epochs three', 'dogbreeds fly --far',
                'dogbreeds deploy --alarms', 'dogbreeds deploy N --image-uri I --role R --capture 5', 'dogbreeds COMMAND --out x'):
        with pytest.raises(Refused): check(bad)
    assert [c for _, c in commands("```bash\ndogbreeds predict SRC \\\n  --out r.csv  # a comment\n```\n`dogbreeds serve` and "
                                    "`dogbreeds export RUN\n--int8`")] == ['dogbreeds predict SRC --out r.csv  # a comment',
                                                                             'dogbreeds export RUN --int8']


@pytest.mark.parametrize('where,kind,line', DOCUMENTED, ids=[f"{w}: {c[:60]}" for w, _, c in DOCUMENTED])
def test_documented_command_parses(where, kind, line):
    try: check(line, whole=kind == 'block')
    except Refused as e: pytest.fail(f"{where} shows `{line}`, which dogbreeds refuses: {e}")


def test_the_product_speaks_of_itself():
    "Docs, code and tests say what a thing is, not which ticket brought it."
    root = Path(__file__).parents[1]
    files = [p for d in ('nbs', 'dogbreeds', 'tests', 'benchmarks', 'scripts', 'deploy', 'docker') for p in (root / d).rglob('*')
             if p.is_file() and p.suffix in ('.py', '.ipynb', '.md', '.yml', '.yaml', '.toml', '.sql', '') and 'results' not in p.parts]
    files += [root / 'README.md', root / 'pyproject.toml', root / 'Makefile']
    pat = re.compile(r'\bissues? #?\d+', re.I)
    said = [f"{p.relative_to(root)}: {m[0]}" for p in files for m in pat.finditer(p.read_text(errors='ignore'))
            if p.name != 'test_documented_commands.py']
    assert not said, said
