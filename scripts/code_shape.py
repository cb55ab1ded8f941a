"""The shape of the generated package, as the re-cut measures it: largest module, long functions, long lines, docments
on public functions with >= 4 parameters (a heuristic: a comment on at least half the parameter lines), and exported
cells with >= 4 definitions. Run from the repository root: python scripts/code_shape.py"""
import ast, pathlib, json, re
mods = sorted(p for p in pathlib.Path('dogbreeds').glob('*.py') if p.name != '_modidx.py')
sizes, long_fns, lines, over = [], [], 0, 0
n4 = d4 = 0
for p in mods:
    src = p.read_text(); t = ast.parse(src)
    code = [l for l in src.splitlines() if l.strip() and not l.strip().startswith('#')]
    sizes.append((len(code), p.name)); lines += len(src.splitlines()); over += sum(len(l) > 120 for l in src.splitlines())
    for f in ast.walk(t):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = f.end_lineno - f.lineno + 1
            if n > 50: long_fns.append((n, f'{p.stem}.{f.name}'))
            args = [a for a in f.args.args + f.args.kwonlyargs if a.arg not in ('self', 'cls')]
            if len(args) >= 4 and not f.name.startswith('_'):
                n4 += 1
                body = src.splitlines()[f.lineno - 1:f.body[0].lineno - 1]
                if sum('#' in l for l in body) >= len(args) // 2: d4 += 1
nb4 = 0
for nb in pathlib.Path('nbs').glob('*.ipynb'):
    for c in json.load(open(nb))['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'code' and '#| export' in s:
            nb4 += len(re.findall(r'^(?:def|class|async def) ', s, re.M)) >= 4
print('largest modules:', sorted(sizes)[-3:]); print('functions > 50 lines:', len(long_fns), sorted(long_fns)[-6:])
print(f'lines > 120: {over}/{lines} = {over/lines:.1%}'); print(f'docments on >=4-param public functions: {d4}/{n4} = {d4/max(1,n4):.0%}')
print('exported cells with >= 4 definitions:', nb4)
