"""Write README.md from nbs/index.ipynb.

nbdev's own `nbdev-readme` renders through Quarto, which cannot be installed here (the PyPI package
`quarto-cli` downloads its binary from GitHub when it builds). The landing notebook is all
markdown, so its cells joined in order are the README. `tests/test_readme.py` checks they agree.

    python scripts/readme.py          # rewrite README.md
    python scripts/readme.py --check  # exit 1 if README.md is out of date
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def render(nb=ROOT/'nbs'/'index.ipynb') -> str:
    cells = json.loads(Path(nb).read_text())['cells']
    parts = [''.join(c['source']).strip() for c in cells if c['cell_type'] == 'markdown']
    return '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run python scripts/readme.py')
    else: readme.write_text(text)
