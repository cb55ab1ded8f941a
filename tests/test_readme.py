"README.md is generated from nbs/index.ipynb and starts with the two commands that do everything."
import subprocess, sys

from conftest import ROOT


def test_readme_in_step_with_index():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_run_and_test():
    lines = [l for l in (ROOT / 'README.md').read_text().splitlines() if l.startswith('make ')]
    assert [l.split()[:2] for l in lines[:2]] == [['make', 'run'], ['make', 'test']]
    makefile = (ROOT / 'Makefile').read_text()
    assert '\nrun:' in makefile and '\ntest:' in makefile
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()


def test_readme_shows_every_setting():
    "The settings table in the README is `dogbreeds.config.settings_table()` as it is now (edit 01_config, paste into index)."
    from dogbreeds.config import settings_table
    assert settings_table() in (ROOT / 'README.md').read_text()
