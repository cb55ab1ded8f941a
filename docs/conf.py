"""Sphinx settings of the documentation site. `scripts/docsite.py` (`make docs`) stages the processed notebooks and
generated pages and runs Sphinx with this folder as its configuration (`-c docs`)."""
import re
from pathlib import Path

project = 'dogbreeds'
author = 'dogbreeds developers'
copyright = '2026, dogbreeds developers'
html_title = 'dogbreeds'
html_baseurl = 'https://dogbreeds.github.io/dogbreeds/'   # GitHub Pages of github.com/dogbreeds/dogbreeds

extensions = ['myst_nb']
html_theme = 'furo'
html_static_path = [str(Path(__file__).parent / '_static')]
html_css_files = ['dogbreeds.css']
# Furo's "view/edit source" buttons would name the page's file (`nbs/inference.ipynb`), not its notebook
# (`nbs/31_inference.ipynb`): left out. show_doc's `source` links point at the code on GitHub.
html_theme_options = {'top_of_page_buttons': []}
html_copy_source = False
html_show_sourcelink = False
exclude_patterns = ['cache', 'doctrees', '**.ipynb_checkpoints']

# The notebooks were executed (and cached) by scripts/docsite.py, as nbdev-test runs them: myst-nb only renders.
nb_execution_mode = 'off'
# show_doc's output is markdown with Quarto/pandoc attributes (`[source](url){target="_blank" ...}`): MyST's
# `attrs_inline` reads them, so outputs are parsed as MyST, not CommonMark.
nb_render_markdown_format = 'myst'
nb_merge_streams = True
myst_enable_extensions = ['attrs_inline', 'attrs_block', 'colon_fence', 'deflist', 'dollarmath', 'strikethrough']
myst_heading_anchors = 4
suppress_warnings = ['myst.header', 'misc.highlighting_failure', 'myst.xref_missing', 'toc.not_included']


def pandoc_id(title: str) -> str:
    "The id pandoc (so Quarto, so nbdev's symbol index) gives a heading: `Predictor.predict` -> `predictor.predict`."
    s = re.sub(r'[^\w\s.-]', '', title.strip()).lower()
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z]+', '', s)


def add_pandoc_ids(app, doctree, docname):
    "Give every heading also the id Quarto would, so links written for nbdev (`inference.html#predictor.load`) hold."
    from docutils import nodes
    for n in doctree.findall(lambda n: isinstance(n, (nodes.section, nodes.rubric))):
        title = n.next_node(nodes.title) if isinstance(n, nodes.section) else n
        if title is None: continue
        pid = pandoc_id(title.astext())
        if pid and pid not in n['ids']: n['ids'].append(pid)


def setup(app):
    app.connect('doctree-resolved', add_pandoc_ids)
