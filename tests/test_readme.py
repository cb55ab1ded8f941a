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


def test_readme_points_to_the_site():
    "The settings table, the guides and the references live on the documentation site (tests/test_docs.py builds and"
    " checks it); the README links there, and the site's address is the one pyproject.toml and the modules name."
    readme = (ROOT / 'README.md').read_text()
    site = 'https://dogbreeds.github.io/dogbreeds/'
    for page in ('settings.html', 'cli_reference.html', 'http_api.html', 'guides/train_to_registry.html', 'guides/deploy.html',
                 'guides/batch.html', 'guides/place_prior.html', 'guides/monitoring.html', 'guides/sagemaker_sdk.html'):
        assert f'({site}{page})' in readme, page
    assert f'Documentation = "{site}"' in (ROOT / 'pyproject.toml').read_text()
