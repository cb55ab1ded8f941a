"""Build the documentation site into `_docs/` from the notebooks, without Quarto (`make docs`).

nbdev renders its sites with Quarto, whose PyPI package downloads its binary when it installs: that cannot
run here. This script keeps nbdev's own processing and hands the result to Sphinx + myst-nb:

1. **execute** each notebook as `nbdev-test` does (execnb's `CaptureShell`, in `nbs/`, leaving out the cells
   flagged with `tst_flags`, i.e. `#| slow`, and `#| eval: false` ones), after nbdev's `add_show_docs` has
   added a `show_doc` cell after each exported definition, so the API documentation is computed in the same
   run. The executed notebook is cached under `_proc/cache/`, keyed on the notebook and the library modules it can
   import (those of lower-numbered notebooks): a rebuild executes only the notebooks a change can affect.
2. **process** it with nbdev's processors (`nbdev.processors.FilterDefaults`, what `nbdev.serve.proc_nbs`
   runs, less `exec_show_docs` whose work step 1 did): front matter, `#| hide` and `#| export` cells removed,
   `show_doc` input hidden, backticked names linked. A last processor (`to_myst`) turns the Quarto options
   nbdev leaves (`#| echo: false`, `#| output: false`, `#| include: false`, `#| code-fold`) into the cell
   tags myst-nb reads, and the front matter into the page's title.
3. **generate** the reference pages: the CLI (walking each command's argparse parser), the settings
   (`config.SETTINGS`) and the HTTP API (the FastAPI app's OpenAPI schema).
4. **render** with Sphinx (`docs/conf.py`): myst-nb reads the processed notebooks without executing them.
5. **finish**: links to the published site become relative, each page also gets its markdown twin
   (`inference.html.md`, what the modules' `Docs:` URLs name), and every internal link and anchor is checked.

    python scripts/docsite.py                         # the whole site into _docs/
    python scripts/docsite.py --only 00_core 31_inference --out /tmp/site   # a subset (the tests' build)
"""
from __future__ import annotations
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit, unquote

ROOT = Path(__file__).resolve().parent.parent
NBS, CONF = ROOT / 'nbs', ROOT / 'docs'
SITE_URL = 'https://dogbreeds.github.io/dogbreeds/'   # where .github/workflows/docs.yml publishes (GitHub Pages)
GENERATED = ('cli_reference', 'settings', 'http_api')  # pages this script writes (step 3)


# ---------------------------------------------------------------------------------------------------- the pages
def notebooks(only=()) -> list[Path]:
    "The notebooks of the site: `nbs/*.ipynb` in the layers' order (index first), then `nbs/guides/*.ipynb`."
    nbs = sorted(NBS.glob('[0-9]*.ipynb')) + sorted((NBS / 'guides').glob('*.ipynb'))
    nbs = [NBS / 'index.ipynb'] + nbs
    if only: nbs = [p for p in nbs if p.stem in only or p.name in only or p.stem == 'index']
    return nbs


def page_of(nb: Path) -> str:
    "The page a notebook becomes, as nbdev names it (`nbs/31_inference.ipynb` -> `inference`), guides under `guides/`."
    from nbdev.config import nbpath2html
    rel = nb.relative_to(NBS)
    return str(nbpath2html(rel).with_suffix(''))


# ---------------------------------------------------------------------------------------------- 1: execution
def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts: h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:16]


EXECUTION = 1   # raise when `execute` changes what it writes: the cached executions are then redone
_re_src_nb = re.compile(r'File to edit: \.\./nbs/(\d+)_\w+\.ipynb')


def _number(nb_path: Path) -> int | None:
    m = re.match(r'(\d+)_', nb_path.name)
    return int(m[1]) if m and nb_path.parent == NBS else None


def build_key(upto: int | None = None) -> str:
    """What an executed notebook depends on besides itself: `pyproject.toml` and the library modules it may import.
    A numbered notebook builds only on lower-numbered ones (tests/test_layers.py), so notebook `upto` depends on
    the modules of notebooks numbered up to `upto`; the home page and the guides (`upto=None`) on all of them."""
    files = []
    for f in sorted((ROOT / 'dogbreeds').glob('*.py')):
        m = _re_src_nb.search(f.read_text()[:2000])
        if upto is None or not m or int(m[1]) <= upto: files.append(f)
    return _digest(EXECUTION, *[f.read_bytes() for f in files + [ROOT / 'pyproject.toml']])


def execute(nb_path: Path, dest: Path) -> Path:
    "Run `nb_path` as nbdev-test would, with a `show_doc` cell after each exported definition; write it to `dest`."
    from fastcore.nbio import write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.processors import add_show_docs
    from nbdev.test import _skip_cell
    flags = get_config().tst_flags
    flags = flags.split() if isinstance(flags, str) else list(flags or [])
    nb = NBProcessor(nb_path, procs=[add_show_docs], rm_directives=False, process=True).nb
    os.environ['IN_TEST'] = '1'
    k = CaptureShell(nb_path)
    k.run_cell('from nbdev.showdoc import show_doc')
    with working_directory(nb_path.parent):
        k.run_all(nb, exc_stop=True, preproc=_skip_cell(nb, flags), cell_timeout=600)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dest)
    return dest


def executed(nb_path: Path, cache: Path) -> Path:
    "The executed copy of `nb_path` from the cache, running it first if the notebook or what it builds on changed."
    rel = nb_path.relative_to(NBS).with_suffix('')
    key = build_key(_number(nb_path))
    dest = cache / f"{str(rel).replace(os.sep, '__')}-{_digest(nb_path.read_bytes(), key)}.ipynb"
    if dest.exists(): return dest
    t = time.time()
    tmp = execute(nb_path, dest.with_suffix('.partial'))
    for old in cache.glob(f"{dest.name.rsplit('-', 1)[0]}-*.ipynb"): old.unlink()
    tmp.rename(dest)
    print(f"  executed {rel} in {time.time() - t:.0f}s", flush=True)
    return dest


# ---------------------------------------------------------------------------------------------- 2: processing
_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_TAGS = {('echo', 'false'): 'remove-input', ('output', 'false'): 'remove-output',
         ('include', 'false'): 'remove-cell', ('code-fold', 'true'): 'hide-input', ('code-fold', 'show'): 'hide-input'}


def _myst_heading(fm: dict) -> str:
    md = f"# {fm.get('title', '')}\n"
    if fm.get('description'): md += f"\n> {fm['description']}\n"
    return md


def to_myst(nb):
    "nbdev's processor protocol: Quarto's front matter and cell options as myst-nb reads them."
    from fastcore.nbio import mk_cell
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.lstrip().startswith('---'):
            import yaml
            fm = yaml.safe_load(c.source.strip().strip('-')) or {}
            nb.cells[i] = mk_cell(_myst_heading(fm), 'markdown')
            nb.metadata['dogbreeds_page'] = fm.get('output-file', '')
            break
    for c in nb.cells:
        if c.cell_type != 'code' or not c.get('source'): continue
        lines, tags = c.source.splitlines(), set(c.metadata.get('tags', []))
        while lines and (m := _re_opt.match(lines[0])):
            tag = _TAGS.get((m[1], m[2].strip('"\'').lower()))
            if tag: tags.add(tag)
            lines.pop(0)
        c.source = '\n'.join(lines)
        for o in c.get('outputs', []):   # show_doc opens with a rule (`---`): docutils allows it between sections only
            md = o.get('data', {}).get('text/markdown')
            if md is None: continue
            md = re.sub(r'^\s*---\s*\n', '', ''.join(md))
            o['data']['text/markdown'] = re.sub(r'\{target="_blank"[^}]*\}', '{.showdoc-source target="_blank"}', md)
        if tags: c.metadata['tags'] = sorted(tags)
        if not c.source.strip() and not c.get('outputs'): c.source = None
    nb.cells = [c for c in nb.cells if c.get('source') is not None]


def process(executed_nb: Path, nb_path: Path, dest: Path):
    "nbdev's doc processing (`FilterDefaults`, less `exec_show_docs`: step 1 ran it) then `to_myst`; write `dest`."
    from fastcore.nbio import read_nb, write_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import FilterDefaults, add_show_docs, exec_show_docs
    nb = read_nb(executed_nb)
    nb.path_ = str(nb_path)   # front matter's `output-file` comes from the notebook's own name
    procs = [p for p in FilterDefaults().procs() if p not in (exec_show_docs, add_show_docs)]
    NBProcessor(nb=nb, procs=procs, rm_directives='quarto').process()
    to_myst(nb)
    for c in nb.cells:   # add_show_docs' marker and execnb's timings (numbers, where nbformat wants strings): not kept
        c.pop('has_sd', None); c.get('metadata', {}).pop('execution', None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dest)


def stage_notebook(nb_path: Path, src: Path, cache: Path) -> str:
    "Execute (or take from the cache) and process one notebook into the Sphinx source folder `src`; its page."
    page = page_of(nb_path)
    process(executed(nb_path, cache), nb_path, src / f'{page}.ipynb')
    return page


def _stage_one(args):
    nb_path, src, cache = args
    try: return stage_notebook(nb_path, src, cache), None
    except BaseException as e: return page_of(nb_path), f"{nb_path.name}: {type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------ 3: generated pages
_re_env = re.compile(r'\$([A-Z][A-Z0-9_]+)')


def _cell(s) -> str: return str(s).replace('|', '\\|').replace('\n', ' ')


def command_parsers() -> dict:
    "`{command: (argparse parser, help)}` for every `dogbreeds` command, built as `dogbreeds.cli.main` builds them."
    import importlib
    from fastcore.script import anno_parser
    from dogbreeds.cli import COMMANDS
    out = {}
    for cmd, (target, hlp) in COMMANDS.items():
        mod, fn = target.split(':')
        func = getattr(importlib.import_module(mod), fn)
        func = getattr(func, '__wrapped__', func)
        out[cmd] = (anno_parser(func, prog=f'dogbreeds {cmd}'), hlp)
    return out


def cli_reference() -> str:
    "The CLI reference page: for each command its usage, every flag with its default, and the variables it reads."
    import argparse as ap
    from dogbreeds.config import SETTINGS
    md = ["# CLI reference", "",
          "> Every `dogbreeds` command and flag, generated from the commands' own argparse parsers "
          "(`scripts/docsite.py:cli_reference`).", "",
          "`dogbreeds <command> --help` prints the same. A flag left out takes its default; where the default "
          "comes from an environment variable the table names it (see [the settings](settings.md)).", ""]
    md += ["| command | what it does |", "|---|---|"]
    parsers = command_parsers()
    md += [f"| [`{c}`](#dogbreeds-{c}) | {_cell(h)} |" for c, (_, h) in parsers.items()]
    for cmd, (p, hlp) in parsers.items():
        md += ["", f"(dogbreeds-{cmd})=", f"## dogbreeds {cmd}", "", hlp[0].upper() + hlp[1:] + '.', "",
               "```text", p.format_usage().strip(), "```", ""]
        rows, env = [], []
        for a in p._actions:
            if isinstance(a, ap._HelpAction) or a.help == ap.SUPPRESS: continue   # fastcore's hidden --pdb, --xtra
            name = ', '.join(a.option_strings) or a.dest
            default = '' if a.default in (None, ap.SUPPRESS) or a.option_strings == [] else f'`{a.default!r}`'
            kind = 'flag' if a.nargs == 0 else getattr(a.type, '__name__', str(a.type or 'str'))
            vars_ = [v for v in _re_env.findall(a.help or '') if v in SETTINGS or v.isupper()]
            env += vars_
            envs = ' '.join(f'`{v}`' for v in vars_)
            rows.append(f"| `{name}` | {kind} | {default} | {envs} | {_cell(a.help or '')} |")
        md += ["| flag | type | default | environment | what |", "|---|---|---|---|---|", *rows]
        reads = [s.name for s in SETTINGS.values()
                 if re.search(rf'\b{re.escape(cmd)}\b', s.used_by) and s.name not in env]
        if reads: md += ["", "Also reads: " + ', '.join(f'[`{n}`](settings.md)' for n in reads) + '.']
    return '\n'.join(md) + '\n'


def settings_page() -> str:
    "The settings page: `dogbreeds.config.settings_table()`, the table `config.SETTINGS` makes."
    from dogbreeds.config import settings_table
    return ("# Settings\n\n> Every environment variable dogbreeds reads, from `dogbreeds.config.SETTINGS`.\n\n"
            "A flag given on the command line wins over its variable; the variable over the default. "
            "Older names in the first column are still read when the first is unset.\n\n" + settings_table() + '\n')


def _schema_ref(s: dict) -> str:
    if '$ref' in s: n = s['$ref'].rsplit('/', 1)[-1]; return f'[{n}](#schema-{n.lower()})'
    if 'anyOf' in s: return ' or '.join(_schema_ref(x) for x in s['anyOf'])
    if s.get('type') == 'array': return f"array of {_schema_ref(s.get('items', {}))}"
    return s.get('type', 'any')


def http_api_page() -> str:
    "The HTTP API page: the operations and schemas of `dogbreeds serve`'s FastAPI app, from its OpenAPI schema."
    from dogbreeds.serve import make_app
    spec = _openapi(make_app)
    md = ["# HTTP API", "", f"> `dogbreeds serve` (the SageMaker container): OpenAPI {spec.get('openapi', '')}, "
          "generated from the FastAPI app (`dogbreeds.serve.make_app().openapi()`).", "",
          "A running server shows the same schema at `/docs` (Swagger UI) and `/openapi.json`. "
          f"The schema as JSON: [openapi.json]({SITE_URL}_static/openapi.json).", ""]
    for path, ops in spec.get('paths', {}).items():
        for method, op in ops.items():
            md += [f"## {method.upper()} {path}", "", op.get('summary', ''), "", op.get('description', ''), ""]
            params = op.get('parameters', [])
            if params:
                md += ["| parameter | in | type | required | what |", "|---|---|---|---|---|"]
                md += [f"| `{p['name']}` | {p['in']} | {_schema_ref(p.get('schema', {}))} | {p.get('required', False)} "
                       f"| "
                       f"{_cell(p.get('description', ''))} |" for p in params]
                md.append("")
            body = op.get('requestBody', {}).get('content', {})
            if body: md += ["Request body: " + ', '.join(f'`{t}`' for t in body), ""]
            md += ["| status | what | content |", "|---|---|---|"]
            for st, r in op.get('responses', {}).items():
                cts = ', '.join(f"`{t}` {_schema_ref(c.get('schema', {}))}" for t, c in r.get('content', {}).items())
                md.append(f"| {st} | {_cell(r.get('description', ''))} | {cts} |")
            md.append("")
    schemas = spec.get('components', {}).get('schemas', {})
    if schemas: md += ["## Schemas", ""]
    for n, s in schemas.items():
        md += [f"(schema-{n.lower()})=", f"### {n}", "", _cell(s.get('description', '')), "",
               "| field | type | required | what |", "|---|---|---|---|"]
        req = set(s.get('required', []))
        md += [f"| `{f}` | {_schema_ref(v)} | {f in req} | {_cell(v.get('description', v.get('title', '')))} |"
               for f, v in s.get('properties', {}).items()]
        md.append("")
    return '\n'.join(md) + '\n'


def _openapi(make_app) -> dict:
    "The app's OpenAPI schema, built without a model (the schema does not depend on one)."
    import inspect
    kw = {'model': None} if 'model' in inspect.signature(make_app).parameters else {}
    try: app = make_app(**kw)
    except TypeError: app = make_app(None)
    return app.openapi()


def write_generated(src: Path):
    (src / 'cli_reference.md').write_text(cli_reference())
    (src / 'settings.md').write_text(settings_page())
    try:
        (src / 'http_api.md').write_text(http_api_page())
        from dogbreeds.serve import make_app
        (src / 'openapi.json').write_text(json.dumps(_openapi(make_app), indent=1))   # copied to _static/ after Sphinx
    except ImportError as e:   # the serve-http extra is not installed
        (src / 'http_api.md').write_text(f"# HTTP API\n\nNot generated: {e}\n")


# ------------------------------------------------------------------------------------------- the table of contents
def toc(pages: list[str], nbs: list[Path]) -> str:
    "The site's navigation, a hidden MyST toctree per section: guides, reference, then the notebooks by layer."
    from dogbreeds.core import LAYERS
    by_page = dict(zip(pages, nbs))
    guides = [p for p in pages if p.startswith('guides/')]
    out = []
    def tree(caption, items):
        if items: out.append(f"```{{toctree}}\n:hidden:\n:caption: {caption}\n\n" + '\n'.join(items) + "\n```")
    tree('Guides', guides)
    tree('Reference', [*GENERATED])
    for layer, numbers in LAYERS.items():
        tree(f'API: {layer}', [p for p in pages if not p.startswith('guides/') and p != 'index'
                               and int(by_page[p].name.split('_')[0]) in numbers])
    return '\n\n'.join(out)


def add_toc(src: Path, pages: list[str], nbs: list[Path]):
    from fastcore.nbio import mk_cell, read_nb, write_nb
    nb = read_nb(src / 'index.ipynb')
    nb.cells.append(mk_cell(toc(pages, nbs), 'markdown'))
    write_nb(nb, src / 'index.ipynb')


# ---------------------------------------------------------------------------------------------------- 5: finishing
class _Links(HTMLParser):
    "The ids and the links (`href`, `src`) of one HTML page."
    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids.update(a[k] for k in ('id', 'name') if a.get(k))
        if tag == 'link' and a.get('rel') != 'stylesheet': return   # canonical, search, prev/next: not the page's links
        self.links += [a[k] for k in ('href', 'src') if a.get(k)]


def relative_links(out: Path):
    "Links to the published site (`SITE_URL...`) as links within the built site, so it reads the same offline."
    pat = re.compile(r'(href|src)="' + re.escape(SITE_URL) + r'([^"#]*)')
    for f in out.rglob('*.html'):
        up = '../' * (len(f.relative_to(out).parts) - 1)
        t = f.read_text()
        new = pat.sub(lambda m: f'{m[1]}="{up}{m[2] or "index.html"}', t)
        if new != t: f.write_text(new)


def _pages(out: Path) -> dict:
    pages = {}
    for f in out.rglob('*.html'):
        p = _Links(); p.feed(f.read_text(errors='replace')); pages[f.resolve()] = p
    return pages


def _resolve(f: Path, link: str, pages: dict):
    "`(target file, fragment)` of an internal `link` on page `f`; None for an external one."
    u = urlsplit(link)
    if u.scheme or link.startswith('//'): return None
    target = f if not u.path else (f.parent / unquote(u.path)).resolve()
    if target.is_dir(): target = target / 'index.html'
    return target, unquote(u.fragment)


def member_links(out: Path):
    """A link to a member nbdev indexes but no `show_doc` shows (`inference.html#predictor.load`: a method defined
    in its class's cell) goes to the nearest documented owner (`#predictor`), as a reader would look for it."""
    pages = _pages(out)
    for f, p in pages.items():
        t = f.read_text()
        for link in set(p.links):
            r = _resolve(f, link, pages)
            if not r or r[0] not in pages or not r[1] or r[1] in pages[r[0]].ids: continue
            frag = r[1]
            while '.' in frag and frag not in pages[r[0]].ids: frag = frag.rsplit('.', 1)[0]
            if frag in pages[r[0]].ids: t = t.replace(f'href="{link}"', f'href="{link.split("#")[0]}#{frag}"')
        f.write_text(t)


def broken_links(out: Path, skip_missing_pages: bool = False) -> list[str]:
    """Every internal link or anchor in the site at `out` that does not resolve: `page: link` lines (empty: none).
    `skip_missing_pages`: a subset build leaves out pages; links to them are not counted."""
    pages, bad = _pages(out), []
    for f, p in pages.items():
        for link in p.links:
            at = f"{f.relative_to(out.resolve())}: {link}"
            if link.startswith(SITE_URL): bad.append(f"{at} (absolute)")
            r = _resolve(f, link, pages)
            if not r: continue
            target, frag = r
            if not target.exists():
                if not (skip_missing_pages and target.suffix == '.html'): bad.append(at)
                continue
            if frag and target.suffix == '.html' and frag not in pages[target].ids: bad.append(f"{at} (no such anchor)")
    return sorted(set(bad))


def markdown_twin(nb_file: Path) -> str:
    "The page as markdown (`X.html.md`, what nbdev's `Docs:` URLs point at): prose, code and text outputs."
    nb = json.loads(nb_file.read_text())
    md = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        tags = set(c.get('metadata', {}).get('tags', []))
        if c['cell_type'] == 'markdown':
            if not src.startswith('```{toctree}'): md.append(src)
            continue
        if c['cell_type'] != 'code' or 'remove-cell' in tags: continue
        if 'remove-input' not in tags and src.strip(): md.append(f"```python\n{src}\n```")
        if 'remove-output' in tags: continue
        for o in c.get('outputs', []):
            d = o.get('data', {})
            if 'text/markdown' in d: md.append(''.join(d['text/markdown']))
            elif o.get('output_type') == 'stream': md.append(f"```\n{''.join(o['text']).rstrip()}\n```")
            elif 'text/plain' in d: md.append(f"```\n{''.join(d['text/plain']).rstrip()}\n```")
    return '\n\n'.join(md) + '\n'


def write_twins(src: Path, out: Path):
    for f in src.rglob('*.ipynb'):
        rel = f.relative_to(src)
        if rel.parts[0] in ('cache', '_build'): continue
        (out / rel.with_suffix('.html.md')).write_text(markdown_twin(f))
    for f in src.glob('*.md'):
        shutil.copy(f, out / f.with_suffix('.html.md').name)


def docs_urls() -> dict:
    "`{module file: its Docs: URL}` for every module of the library (nbdev writes the URL into the module's docstring)."
    out = {}
    for f in sorted((ROOT / 'dogbreeds').glob('*.py')):
        if m := re.search(r'^Docs: (\S+)"""', f.read_text(), re.M): out[f.name] = m[1]
    return out


def missing_docs_pages(out: Path) -> list[str]:
    "The `Docs:` URLs (module: URL) that name no file of the site at `out`."
    return [f"{mod}: {url}" for mod, url in docs_urls().items()
            if not url.startswith(SITE_URL) or not (out / url[len(SITE_URL):]).exists()]


# ---------------------------------------------------------------------------------------------------- the build
def build(only=(), out: Path = ROOT / '_docs', work: Path = ROOT / '_proc', jobs: int = 2, check: bool = True,
          cache: Path | None = None) -> Path:
    """Build the site (or the pages of the notebooks in `only`, plus the home page and generated pages) into `out`,
    staging in `work`; executed notebooks are kept in `cache` (default `work/cache`)."""
    from fastcore.parallel import parallel
    t0 = time.time()
    out, work = Path(out), Path(work)
    src, cache = work / 'src', Path(cache or work / 'cache')
    if src.exists(): shutil.rmtree(src)
    src.mkdir(parents=True); cache.mkdir(parents=True, exist_ok=True)
    nbs = notebooks(only)
    print(f"docs: {len(nbs)} notebooks, {jobs} at a time", flush=True)
    res = parallel(_stage_one, [(nb, src, cache) for nb in nbs], n_workers=jobs, method='spawn', progress=False)
    errors = [e for _, e in res if e]
    if errors: raise SystemExit("notebooks failed:\n" + '\n'.join(errors))
    pages = [p for p, _ in res]
    print(f"docs: notebooks ready in {time.time() - t0:.0f}s", flush=True)
    write_generated(src)
    add_toc(src, pages, nbs)
    # docs/'s pictures where the notebooks' links find them: `docs/demo.png` (the home page, written for the README at
    # the repository's root) and `../docs/x.png` (a notebook in nbs/, whose parent is the repository's root)
    for d in (src / 'docs', work / 'docs'):
        if d.exists(): shutil.rmtree(d)
        shutil.copytree(CONF, d, ignore=shutil.ignore_patterns('*.py', '_static'))
    if out.exists(): shutil.rmtree(out)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(CONF), '-q', '-W', '--keep-going', '-j', str(jobs),
           str(src), str(out),
           '-d', str(work / 'doctrees')]
    scratch = out.parent / 'jupyter_execute'   # myst-nb writes the notebooks it renders there, beside the output
    had_scratch = scratch.exists()
    subprocess.run(cmd, check=True)
    if not had_scratch: shutil.rmtree(scratch, ignore_errors=True)
    if (src / 'openapi.json').exists(): shutil.copy(src / 'openapi.json', out / '_static' / 'openapi.json')
    relative_links(out)
    member_links(out)
    write_twins(src, out)
    (out / '.nojekyll').touch()   # GitHub Pages serves _static/ as it is
    print(f"docs: site in {out} after {time.time() - t0:.0f}s", flush=True)
    if check and (bad := broken_links(out, skip_missing_pages=bool(only))):
        raise SystemExit("broken links:\n" + '\n'.join(bad))
    if check and not only and (bad := missing_docs_pages(out)):
        raise SystemExit("Docs: URLs with no page:\n" + '\n'.join(bad))
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', nargs='*', default=(), help="notebooks to build (stems: 00_core ...); default: all")
    ap.add_argument('--out', default=str(ROOT / '_docs'), help='where the site goes')
    ap.add_argument('--work', default=str(ROOT / '_proc'), help='staging and execution cache')
    ap.add_argument('--jobs', type=int, default=2, help='notebooks executed at a time')
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import docsite   # the workers (spawned) find the functions they run by this module's name, not __main__
    docsite.build(a.only, Path(a.out), Path(a.work), a.jobs)
