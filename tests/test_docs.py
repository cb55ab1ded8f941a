"""The documentation site (`make docs`, scripts/docsite.py): a representative subset built with the same machinery
(notebooks executed as nbdev-test runs them, nbdev's processors, Sphinx + myst-nb), then its pages, API entries,
links, search and `Docs:` URLs checked; the generated references; the Pages workflow through actionlint; a
screenshot in headless Chromium."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'scripts'))
import docsite  # noqa: E402

# a page of each kind: the home page, a base-layer notebook, the settings' notebook, Predictor's notebook, a guide
# with a slow (skipped) cell, a guide with a plot
SUBSET = ('00_core', '01_config', '31_inference', '01_train_to_registry', '05_monitoring')
CHROMIUM = os.environ.get('DOGBREEDS_CHROMIUM', '/usr/bin/chromium')


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The subset's site; executed notebooks are shared with `make docs` through _proc/cache (keyed on their content)."
    work = tmp_path_factory.mktemp('docs')
    return docsite.build(SUBSET, out=work / 'site', work=work, cache=ROOT / '_proc' / 'cache')


def text(html: str) -> str: return re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', html))


def test_a_page_per_notebook(site):
    nbs = docsite.notebooks(SUBSET)
    assert [n.stem for n in nbs] == ['index', *SUBSET]
    for nb in nbs:
        page = site / f'{docsite.page_of(nb)}.html'
        title = next(c['source'] for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
        title = ''.join(title).splitlines()[0].lstrip('# ').strip()
        assert page.exists(), page
        assert re.search(rf'<title>{re.escape(title)}', page.read_text()), (page, title)
    for p in docsite.GENERATED: assert (site / f'{p}.html').exists()
    # the home page: what it is, the two commands, the picture; the navigation in the layers' order
    home = (site / 'index.html').read_text()
    assert 'make run' in text(home) and 'make test' in text(home)
    assert re.search(r'<img [^>]*src="_images/demo.png"', home)
    assert (site / '_images' / 'demo.png').exists()
    nav = re.findall(r'class="reference internal" href="([\w/]+)\.html"', home)
    order = ['guides/train_to_registry', 'cli_reference', 'core', 'config', 'inference']
    assert [nav.index(p) for p in order] == sorted(nav.index(p) for p in order)


def test_pages_show_what_the_notebooks_print_and_plot(site):
    "Executed at build time: printed results, tables and plots show; slow cells are left out as nbdev-test does."
    guide = text((site / 'guides' / 'train_to_registry.html').read_text())
    train_cell = guide[guide.index('run = train ('):guide.index('import toy_model')]
    assert 'show_run ( run . run_dir )' in train_cell and 'accuracy' not in train_cell, "the slow cell is not run"
    assert re.search(r"\[\('[\w ]+', 0\.\d+\), \('[\w ]+', 0\.\d+\)", guide.replace('&#39;', "'")), "predictions shown"
    monitoring = (site / 'guides' / 'monitoring.html').read_text()
    assert 'drift' in text(monitoring) and re.search(r'<img [^>]*src="\.\./_images/[^"]+\.png"', monitoring)
    core = (site / 'core.html').read_text()
    assert '#| export' not in core and '#| hide' not in core and 'from fastcore.test import' not in core


def test_predictor_page_documents_its_parameters(site):
    html = (site / 'inference.html').read_text()
    for anchor in ('predictor', 'predictor.load', 'predictor.predict', 'prediction'): assert f'id="{anchor}"' in html
    load = html[html.index('id="predictor.load"'):]
    load = text(load[:load.index('</section>')]).replace('&#39;', "'")
    # show_doc writes each parameter with its type, default and docment (nbdev 3 puts them in the signature)
    for param, says in [('src', 'registry URI'), ("backend:str='auto'", 'torchscript'), ('verify:bool=True', 'sha256'),
                        ('threads:int | None=None', 'threads per inference')]:
        flat = load.replace(' ', '')
        assert re.search(re.escape(param.replace(' ', '') + ',#') + '[^#]*' + re.escape(says.replace(' ', '')), flat), \
            (param, load[:900])
    assert 'Load a model folder or registry URI' in load
    src = 'https://github.com/dogbreeds/dogbreeds/blob/main/dogbreeds/inference.py'
    assert re.search(rf'<a class="showdoc-source reference external" href="{re.escape(src)}#L\d+"', html)


def test_no_broken_links(site):
    assert docsite.broken_links(site, skip_missing_pages=True) == []
    # the links nbdev writes to the published site were made relative, and they were checked
    html = (site / 'inference.html').read_text()
    assert docsite.SITE_URL not in html and 'href="core.html#' in html


def test_the_link_check_finds_what_is_broken(tmp_path):
    (tmp_path / 'a.html').write_text('<h1 id="top">A</h1><a href="b.html#there">ok</a><a href="b.html#nowhere">x</a>'
                                     '<a href="missing.html">y</a><a href="#top">ok</a>'
                                     f'<a href="https://example.org/">ext</a><a href="{docsite.SITE_URL}a.html">abs</a>')
    (tmp_path / 'b.html').write_text('<section id="there">B</section><img src="_images/gone.png">')
    bad = ['a.html: b.html#nowhere (no such anchor)', f'a.html: {docsite.SITE_URL}a.html (absolute)',
           'b.html: _images/gone.png']
    assert docsite.broken_links(tmp_path) == sorted(bad + ['a.html: missing.html'])
    assert docsite.broken_links(tmp_path, skip_missing_pages=True) == sorted(bad)


def test_every_docs_url_lands_on_a_page(site):
    "Each module's `Docs:` URL is its notebook's page as markdown (`X.html.md`); for the subset's, the file is built."
    built = {docsite.page_of(n) for n in docsite.notebooks(SUBSET)}
    checked = 0
    for f in sorted((ROOT / 'dogbreeds').glob('*.py')):
        src = f.read_text()
        if not (m := re.search(r'^Docs: (\S+)"""', src, re.M)): continue
        nb = ROOT / 'nbs' / re.search(r'File to edit: \.\./nbs/(\S+\.ipynb)', src)[1]
        page = docsite.page_of(nb)
        assert m[1] == f'{docsite.SITE_URL}{page}.html.md', (f.name, m[1])
        if page in built:
            twin = (site / f'{page}.html.md').read_text()
            assert (site / f'{page}.html').exists() and twin.startswith('# ') and 'show_doc' not in twin
            checked += 1
    assert checked == 3   # core, config, inference
    assert len(docsite.docs_urls()) >= 35
    assert docsite.missing_docs_pages(site) == [f"{m}: {u}" for m, u in docsite.docs_urls().items()
                                                if m not in ('core.py', 'config.py', 'inference.py')]
    toml = (ROOT / 'pyproject.toml').read_text()
    assert f'Documentation = "{docsite.SITE_URL}"' in toml


def test_cli_reference_has_every_command_flag_default_and_variable():
    from dogbreeds.cli import COMMANDS
    page = docsite.cli_reference()
    parsers = docsite.command_parsers()
    assert list(parsers) == list(COMMANDS)
    for cmd, (p, _) in parsers.items():
        section = page.split(f'## dogbreeds {cmd}\n')[1].split('\n## ')[0]
        for a in p._actions:
            if a.help == '==SUPPRESS==': continue   # fastcore's hidden --pdb and --xtra
            for o in a.option_strings:
                if o not in ('-h', '--help'): assert f'`{o}' in section or f', {o}' in section, (cmd, o)
    serve = page.split('## dogbreeds serve\n')[1].split('\n## ')[0]
    assert re.search(r"\| `--log-level` \| str \| `'info'` \|", serve)
    assert '--pdb' not in serve and '--xtra' not in serve   # fastcore's hidden flags
    assert re.search(r"\| `--model` \| str \|  \| `MODEL_URI` \|", serve)   # its default comes from $MODEL_URI


def test_cli_reference_is_what_help_prints(capsys):
    "`dogbreeds serve --help` (argparse, through `dogbreeds.cli.main`) names the flags the page lists, no more."
    from dogbreeds.cli import main
    with pytest.raises(SystemExit) as e: main(['serve', '--help'])
    assert e.value.code == 0
    flags = set(re.findall(r'(--[\w-]+)', capsys.readouterr().out)) - {'--help'}
    serve = docsite.cli_reference().split('## dogbreeds serve\n')[1].split('\n## ')[0]
    assert flags and flags == set(re.findall(r'\| `(--[\w-]+)', serve))


def test_settings_and_http_api_pages(site):
    from dogbreeds.config import SETTINGS
    settings = text((site / 'settings.html').read_text())
    for name in SETTINGS: assert name in settings
    from dogbreeds.serve import make_app
    spec = make_app().openapi()
    api = text((site / 'http_api.html').read_text())
    for path, ops in spec['paths'].items():
        for method in ops: assert f'{method.upper()} {path}' in api
    assert json.loads((site / '_static' / 'openapi.json').read_text()) == spec
    # the bodies are declared (Pydantic models), the coordinates documented, and no 422 that is never returned
    inv = spec['paths']['/invocations']['post']
    assert inv['responses']['200']['content']['application/json']['schema'] == {'$ref': '#/components/schemas/Answer'}
    assert {p['name'] for p in inv['parameters']} == {'lat', 'lon'}
    assert all('422' not in op['responses'] for ops in spec['paths'].values() for op in ops.values())
    assert {'Answer', 'Error', 'Feedback', 'FeedbackAnswer'} <= set(spec['components']['schemas'])
    for name in ('Answer', 'Feedback', 'FeedbackAnswer', 'predictions', 'photo_id', 'POST /feedback'): assert name in api


def test_pages_workflow_passes_actionlint(tmp_path):
    wf = ROOT / '.github' / 'workflows' / 'docs.yml'
    actionlint = shutil.which('actionlint') or str(Path(sys.executable).parent / 'actionlint')
    r = subprocess.run([actionlint, str(wf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'make docs' in wf.read_text() and 'path: _docs' in wf.read_text()
    bad = tmp_path / '.github' / 'workflows' / 'docs.yml'
    bad.parent.mkdir(parents=True)
    bad.write_text(wf.read_text().replace('steps.deployment.outputs.page_url', 'steps.deploymnt.outputs.page_url'))
    r = subprocess.run([actionlint, str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and 'deploymnt' in r.stdout


def test_a_page_and_search_in_chromium(site, tmp_path):
    "Predictor's page in headless Chromium (screenshot kept as docs/site.png), and Sphinx's search finding it."
    if not Path(CHROMIUM).exists(): pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get)")
    from playwright.sync_api import sync_playwright
    shot = tmp_path / 'site.png'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=30_000,
                                     args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                                           '--allow-file-access-from-files'])
        page = browser.new_page(viewport={'width': 1200, 'height': 900})
        page.set_default_timeout(30_000)
        try:
            page.goto((site / 'inference.html').as_uri() + '#predictor.load')
            page.wait_for_load_state('load')  # the theme scrolls smoothly: wait until the jump to the anchor has ended
            page.wait_for_function("(() => { const t = document.getElementById('predictor-load').getBoundingClientRect().top;"
                                   " return t >= 0 && t < 900; })()", timeout=15_000)
            assert page.locator('h1').first.inner_text().startswith('Inference')
            assert page.locator('#predictor\\.load').count() == 1 and page.locator('#predictor-load').is_visible()
            top = page.evaluate("document.getElementById('predictor-load').getBoundingClientRect().top")
            assert 0 <= top < 900   # scrolled to the anchor: in the viewport (it is thousands of pixels down the page)
            page.screenshot(path=str(shot))
            page.goto((site / 'search.html').as_uri() + '?q=Predictor')
            page.locator('ul.search li a[href*="inference.html"]').first.wait_for()
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 20_000
    if dest := os.environ.get('DOGBREEDS_DOCS_SCREENSHOT'): shutil.copy(shot, dest)  # how docs/site.png is made


def test_serve_docs_work_offline(tmp_path):
    """`dogbreeds serve`'s /docs in headless Chromium (no internet here): Swagger UI renders the operations from the
    app's own assets (swagger-ui-bundle), none from a CDN."""
    if not Path(CHROMIUM).exists(): pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get)")
    from playwright.sync_api import sync_playwright
    from dogbreeds.testing import ServeProcess, toy_model
    model = toy_model(tmp_path / 'model')
    with ServeProcess(model) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=30_000,
                                     args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        asked = []
        page.on('request', lambda r: asked.append(r.url))
        try:
            page.goto(server.url + '/docs')
            page.locator('.swagger-ui .opblock-summary-path', has_text='/invocations').first.wait_for()
            paths = page.locator('.swagger-ui .opblock-summary-path').all_inner_texts()
        finally:
            browser.close()
    assert {'/ping', '/invocations', '/feedback'} <= {p.strip().replace('\u200b', '') for p in paths}, paths
    assert asked and all(u.startswith(server.url) for u in asked), [u for u in asked if not u.startswith(server.url)]


def test_the_guides_and_readme_commands_parse():
    "Every `dogbreeds ...` line of the guides' and the README's shell blocks parses with that command's own parser."
    import contextlib, io, shlex
    parsers, seen = docsite.command_parsers(), 0
    for p in sorted((ROOT / 'nbs' / 'guides').glob('*.ipynb')) + [ROOT / 'README.md']:
        text = p.read_text() if p.suffix == '.md' else '\n'.join(''.join(c['source']) for c in json.loads(p.read_text())['cells'])
        for block in re.findall(r'```(?:sh|bash)\n(.*?)```', text, re.S):
            for line in block.replace('\\\n', ' ').splitlines():
                line = line.split(' #')[0].strip()
                if not line.startswith('dogbreeds '): continue
                args = shlex.split(line)[1:]
                assert args[0] in parsers, (p.name, line)
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    try: parsers[args[0]][0].parse_args(args[1:])
                    except SystemExit: pytest.fail(f"{p.name}: {line}: {err.getvalue().strip()}")
                seen += 1
    assert seen >= 15
