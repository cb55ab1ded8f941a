"""Write README.md from nbs/index.ipynb.

nbdev's own `nbdev-readme` renders through Quarto, which cannot be installed here (the PyPI package
`quarto-cli` downloads its binary from GitHub when it builds). The landing notebook is all
markdown, so its cells joined in order are the README. `tests/test_readme.py` checks they agree.

    python scripts/readme.py          # rewrite the notebook table in nbs/index.ipynb, then README.md
    python scripts/readme.py --check  # exit 1 if either is out of date

The table under "## Notebooks" has one row per numbered notebook, made from the notebook itself: its name, its module
(`#| default_exp`), its layer (from its number, `dogbreeds.core.layer_of`) and its summary (the `> ` line under its
title). So the map in the README is the notebooks' own first lines, and cannot drift from them.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb=ROOT/'nbs'/'index.ipynb') -> str:
    cells = json.loads(Path(nb).read_text())['cells']
    parts = [''.join(c['source']).strip() for c in cells if c['cell_type'] == 'markdown']
    return '\n\n'.join(p for p in parts if p) + '\n'

HEADER = '| notebook | module | layer | what |\n|---|---|---|---|\n'

def notebook_row(nb:Path) -> str:
    "The table row of notebook `nb`: name, module, layer, summary."
    sys.path.insert(0, str(ROOT))
    from dogbreeds.core import layer_of
    src = [''.join(c['source']) for c in json.loads(nb.read_text())['cells']]
    summary = next((l[1:].strip() for l in src[0].splitlines() if l.startswith('>')), '')
    mod = next((m.group(1) for s in src if (m := re.search(r'^#\| default_exp (\S+)', s, re.M))), None)
    return f"| `{nb.stem}` | {f'`dogbreeds.{mod}`' if mod else '(none)'} | {layer_of(int(nb.stem[:2]))} | {summary} |"

def with_table(nb=ROOT/'nbs'/'index.ipynb') -> dict:
    "The landing notebook with its notebook table made from the notebooks (one row each, in order)."
    d = json.loads(Path(nb).read_text())
    rows = '\n'.join(notebook_row(f) for f in sorted((ROOT/'nbs').glob('[0-9][0-9]_*.ipynb'))) + '\n'
    for c in d['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and HEADER in s:
            head, tail = s.split(HEADER, 1)
            s = head + HEADER + rows + tail[tail.index('\n\n') + 1:] if '\n\n' in tail else head + HEADER + rows
            c['source'] = s.splitlines(keepends=True)
    return d

if __name__ == '__main__':
    index, readme = ROOT/'nbs'/'index.ipynb', ROOT/'README.md'
    nb = json.dumps(with_table(index), indent=1, ensure_ascii=False) + '\n'
    if '--check' in sys.argv:
        if index.read_text() != nb: sys.exit('the notebook table in nbs/index.ipynb is out of step: run python scripts/readme.py')
        if not readme.exists() or readme.read_text() != render():
            sys.exit('README.md is out of step with nbs/index.ipynb: run python scripts/readme.py')
    else: index.write_text(nb); readme.write_text(render())
