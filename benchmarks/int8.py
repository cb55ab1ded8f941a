"""INT8 against fp32 on this CPU, and the speed options that do pay: forward time at batch 1 and 64, val top-1, one run.

    python benchmarks/int8.py --model exported_models/<run>/model            # every variant, every val photo
    python benchmarks/int8.py --model M --val 200 --calib 100                 # fewer photos
    python benchmarks/int8.py --model M --variants qdq-pc --val 4 --calib 2 --reps 1 -n 2 --out /tmp/i.json   # smoke

The classifier graph (`classifier.onnx`: both networks, both heads, the ensemble average) quantized with ONNX Runtime's
static quantization after its own pre-processing (`quant_pre_process`: shape inference, fusions), as its docs advise:

| variant | what |
|---|---|
| `qdq-pc` | QDQ format, per-channel weights, Conv/Gemm/MatMul quantized, MinMax calibration (what `--int8` was) |
| `qdq-pt` | QDQ, per-tensor weights |
| `qop-pc`, `qop-pt` | QOperator format (QLinearConv...), per-channel / per-tensor |
| `qdq-pc-dw-fp32`, `qop-pc-dw-fp32` | the depthwise convolutions (group > 1) left in fp32: INT8 depthwise kernels are the slow ones |
| `qdq-pc-mnv2-only`, `qdq-pc-lite0-only` | one network of the pair quantized, the other left fp32 |
| `qdq-pc-entropy`, `qdq-pc-percentile` | other calibration methods |
| `qdq-pc-calib4x` | four times the calibration photos |

and, for comparison, the fp32 options that cost no quantization: each network of the pair alone (`fp32 mobilenet_v2
alone`, `fp32 efficientnet_lite0 alone`: the graph cut at that network's own outputs, `onnx.utils.extract_model`).

Speed: median ms of a forward of a ready `[N, 3, S, S]` tensor at N = 1 (`-n` runs per repetition) and N = 64 (one run
per repetition), every graph in turn within each repetition, so that a change of load hits all of them alike; the
ratio is fp32's time over the variant's (above 1: faster). Accuracy: top-1 on `--val` val photos (all by default),
each decoded as serving decodes it (`Predictor.decode`, the decode `dogbreeds.champion.score_model` uses)
and preprocessed once by the model's own `preprocess.onnx`. Calibration: `--calib` train photos. The goal for INT8:
>= 1.5x at both batch sizes and <= 0.5 pt of top-1 lost.
"""
import argparse, statistics, tempfile, time, warnings
from pathlib import Path

import numpy as np

from conditions import Conditions, imagewoof

ROOT = Path(__file__).resolve().parent.parent
DATA = imagewoof()

VARIANTS = {
    'qdq-pc': dict(fmt='QDQ', per_channel=True),
    'qdq-pt': dict(fmt='QDQ', per_channel=False),
    'qop-pc': dict(fmt='QOperator', per_channel=True),
    'qop-pt': dict(fmt='QOperator', per_channel=False),
    'qdq-pc-dw-fp32': dict(fmt='QDQ', per_channel=True, exclude='depthwise'),
    'qop-pc-dw-fp32': dict(fmt='QOperator', per_channel=True, exclude='depthwise'),
    'qdq-pc-mnv2-only': dict(fmt='QDQ', per_channel=True, exclude='members.1'),
    'qdq-pc-lite0-only': dict(fmt='QDQ', per_channel=True, exclude='members.0'),
    'qdq-pc-entropy': dict(fmt='QDQ', per_channel=True, method='Entropy'),
    'qdq-pc-percentile': dict(fmt='QDQ', per_channel=True, method='Percentile'),
    'qdq-pc-calib4x': dict(fmt='QDQ', per_channel=True, calib_x=4),
}
OPS = ['Conv', 'Gemm', 'MatMul']


def photos(split:str, n:int|None, root=None) -> list:
    "`(path, breed)` of `n` photos (all: None) of the split, spread over the breeds: the shared Imagewoof, else the sample."
    from dogbreeds.datasets import IMAGEWOOF_BREEDS
    root = Path(root) if root else DATA if DATA else ROOT / 'data' / 'sample'
    files = sorted((root / split).rglob('*.JPEG'))
    if n: files = files[:: max(1, len(files) // n)][:n]
    return [(f, IMAGEWOOF_BREEDS[f.parent.name][0]) for f in files]


def session(path, threads:int|None=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads: so.intra_op_num_threads = threads
    so.enable_cpu_mem_arena = False  # a dozen sessions at batch 64 would each keep an arena of a GB or more
    return ort.InferenceSession(str(path), sess_options=so, providers=['CPUExecutionProvider'])


def member_of(node) -> str|None:
    "'members.0', 'members.1' or None, from the exporter's name scopes kept on the node."
    ns = ' '.join(p.value for p in node.metadata_props if p.key in ('namespace', 'pkg.torch.onnx.name_scopes'))
    return next((f'members.{i}' for i in range(8) if f'members.{i}.' in ns or ns.endswith(f'members.{i}')), None)


def excluded(model_path:Path, what:str|None) -> list:
    "Names of the nodes to leave in fp32: the depthwise convolutions, or one network's nodes."
    import onnx
    if not what: return []
    m = onnx.load(str(model_path), load_external_data=False)
    if what == 'depthwise':
        return [n.name for n in m.graph.node if n.op_type == 'Conv' and any(a.name == 'group' and a.i > 1 for a in n.attribute)]
    return [n.name for n in m.graph.node if member_of(n) == what]


def quantize(d:Path, out:Path, pre, calib:list, fmt:str='QDQ', per_channel:bool=True, exclude=None, method='MinMax', **_) -> dict:
    "Quantize `d/classifier.onnx` into `out` (after `quant_pre_process`), calibrated on the ready tensors `calib`."
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    class Reader(CalibrationDataReader):
        def __init__(self): self.it = iter(calib)
        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {'input': x}
    import onnx
    staged, whole = out.with_suffix('.pre.onnx'), out.with_suffix('.fp32.onnx')
    t = time.perf_counter()
    onnx.save(onnx.load(str(d / 'classifier.onnx')), str(whole))  # the weights inline: quant_pre_process copies the graph alone
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        quant_pre_process(str(whole), str(staged), skip_symbolic_shape=True)
        skip = excluded(staged, exclude)
        if exclude and not skip: skip = _names_from_original(d, staged, exclude)
        quantize_static(str(staged), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=OPS,
                        nodes_to_exclude=skip, calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={'CalibMaxIntermediateOutputs': 64} if method != 'MinMax' else {})
    staged.unlink(missing_ok=True); whole.unlink(missing_ok=True)
    return dict(seconds=time.perf_counter() - t, excluded=len(skip), calibration=len(calib), method=method)


def _names_from_original(d:Path, staged:Path, what:str) -> list:
    "The pre-processed graph lost the name scopes: take the names from the exported graph (fused nodes keep them)."
    import onnx
    names = set(excluded(d / 'classifier.onnx', what))
    return [n.name for n in onnx.load(str(staged), load_external_data=False).graph.node if n.name in names]


def member_graph(d:Path, out:Path, member:str) -> Path|None:
    "`classifier.onnx` cut at the outputs of one network of the pair (its two softmaxes): that network alone, fp32."
    import onnx
    m = onnx.load(str(d / 'classifier.onnx'), load_external_data=False)
    made = {o: n for n in m.graph.node for o in n.output}
    outs = [n.output[0] for n in m.graph.node if n.op_type == 'Softmax' and n.input[0] in made
            and member_of(made[n.input[0]]) == member]
    if len(outs) != 2: return None
    onnx.utils.extract_model(str(d / 'classifier.onnx'), str(out), ['input'], outs)
    return out


def size_mb(graph:Path, folder:Path|None=None) -> float:
    "The graph's size in MB, with the weights file of the model folder `folder` it points into."
    return (Path(graph).stat().st_size + sum(f.stat().st_size for f in (folder.glob('*.onnx.data') if folder else []))) / 1e6


def hits(sess, ready:list, labels:list, breeds:list) -> np.ndarray:
    "Whether the graph's top-1 is right, photo by photo, for the ready tensors `ready` (64 at a time)."
    name, out = sess.get_inputs()[0].name, []
    for i in range(0, len(ready), 64):
        p = sess.run(None, {name: np.concatenate(ready[i:i + 64])})[0]
        out += [breeds[j] == l for j, l in zip(p.argmax(1), labels[i:i + 64])]
    return np.array(out, dtype=bool)


def top1(sess, ready:list, labels:list, breeds:list) -> float:
    return float(hits(sess, ready, labels, breeds).mean()) if labels else 0.0


def timings(sess:dict, inputs:dict, reps:int, n:int) -> dict:
    """Label -> median ms of a forward at batch 1 (median of `n` runs) and at batch 64, of each session on its own ready
    tensors `inputs[label]`; every graph in turn within each repetition, so that a change of load hits all alike."""
    xs = {k: (inputs[k][0], np.concatenate((inputs[k] * 64)[:64])) for k in sess}
    feed = {k: s.get_inputs()[0].name for k, s in sess.items()}
    for k, s in sess.items():
        for x in xs[k]: s.run(None, {feed[k]: x})  # warm up
    t = {k: {'b1': [], 'b64': []} for k in sess}
    for _ in range(reps):
        for k, s in sess.items():
            one = []
            for _ in range(n):
                t0 = time.perf_counter(); s.run(None, {feed[k]: xs[k][0]}); one.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter(); s.run(None, {feed[k]: xs[k][1]})
            t[k]['b64'].append((time.perf_counter() - t0) * 1000); t[k]['b1'].append(statistics.median(one))
    return {k: dict(batch1_ms=statistics.median(v['b1']), batch64_ms=statistics.median(v['b64'])) for k, v in t.items()}


def run(model, variants=None, n_val:int|None=None, n_calib:int=100, reps:int=5, n:int=20, threads:int|None=None,
        data=None, members:bool=True) -> dict:
    from dogbreeds.core import read_manifest
    from dogbreeds.inference import Predictor
    d, m = Path(model), read_manifest(model)
    pre = session(d / 'preprocess.onnx')
    decode = Predictor.load(d).decode  # as serving decodes (a phone photo reduced), as champion/challenger does
    prep = lambda f: pre.run(None, {'input': decode(f)[None]})[0]
    val = photos('val', n_val, data)
    ready, labels = [prep(f) for f, _ in val], [l for _, l in val]
    calib_files = photos('train', n_calib * 4, data)
    calib = [prep(f) for f, _ in calib_files]
    tmp = Path(tempfile.mkdtemp(prefix='int8-'))
    graphs, info = {'fp32': d / 'classifier.onnx'}, {}
    if members:
        for member, arch in enumerate(m['ensemble']['archs'] if len(m['ensemble']['archs']) > 1 else []):
            g = member_graph(d, tmp / f'member{member}.onnx', f'members.{member}')
            if g: graphs[f'fp32 {arch} alone'] = g
    for v in variants or VARIANTS:
        kw = VARIANTS[v]
        info[v] = quantize(d, tmp / f'{v}.onnx', pre, calib[: n_calib * kw.get('calib_x', 1)], **kw)
        graphs[v] = tmp / f'{v}.onnx'
        print(f"quantized {v} in {info[v]['seconds']:.0f} s ({info[v]['excluded']} nodes left fp32)", flush=True)
    sess = {k: session(g, threads) for k, g in graphs.items()}
    rows = timings(sess, {k: ready for k in sess}, reps, n)
    for k, s in sess.items():
        rows[k].update(top1=top1(s, ready, labels, m['breeds']), mb=size_mb(graphs[k], d if k == 'fp32' else None),
                       **info.get(k, {}))
    f = rows['fp32']
    for r in rows.values():
        r.update(speedup_b1=f['batch1_ms'] / r['batch1_ms'], speedup_b64=f['batch64_ms'] / r['batch64_ms'],
                 top1_lost_pt=(f['top1'] - r['top1']) * 100)
    for k in rows:
        if k in VARIANTS: rows[k]['pays'] = rows[k]['speedup_b1'] >= 1.5 and rows[k]['speedup_b64'] >= 1.5 and rows[k]['top1_lost_pt'] <= 0.5
    print(f"\nclassifier forward, ms (median of {reps}), and top-1 on {len(labels)} val photos; calibration on {n_calib} train photos")
    print(f"{'graph':28}{'MB':>6}{'batch 1':>9}{'x fp32':>8}{'batch 64':>10}{'x fp32':>8}{'top-1':>8}{'pt lost':>9}  pays")
    for k, r in rows.items():
        print(f"{k:28}{r['mb']:6.1f}{r['batch1_ms']:9.2f}{r['speedup_b1']:8.2f}{r['batch64_ms']:10.1f}{r['speedup_b64']:8.2f}"
              f"{r['top1']:8.2%}{r['top1_lost_pt']:9.2f}  {'-' if 'pays' not in r else 'yes' if r['pays'] else 'no'}")
    q = [k for k in rows if k in VARIANTS]
    best = max(q, key=lambda k: min(rows[k]['speedup_b1'], rows[k]['speedup_b64'])) if q else None
    if best: print(f"fastest INT8 variant: {best}, {rows[best]['speedup_b1']:.2f}x at batch 1, {rows[best]['speedup_b64']:.2f}x "
                   f"at batch 64, {rows[best]['top1_lost_pt']:+.2f} pt (goal >= 1.5x at both, <= 0.5 pt): "
                   f"{'pays' if rows[best]['pays'] else 'does not pay'}")
    import shutil; shutil.rmtree(tmp, ignore_errors=True)
    return dict(model=str(d), val_photos=len(labels), calibration_photos=n_calib, reps=reps, n=n, rows=rows, best_int8=best,
                any_int8_pays=any(rows[k]['pays'] for k in q), errors=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', help='an exported model folder (default: the newest exported_models/*/model)')
    ap.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=None, help='default: all')
    ap.add_argument('--val', type=int, default=None, help='val photos for top-1 (default: all)')
    ap.add_argument('--calib', type=int, default=100, help='train photos for calibration')
    ap.add_argument('--reps', type=int, default=5); ap.add_argument('-n', type=int, default=20, help='batch-1 runs per repetition')
    ap.add_argument('--threads', type=int, default=None, help='ONNX Runtime intra-op threads (default: its own choice)')
    ap.add_argument('--data', help='an Imagewoof folder with train/ and val/ (default: ../shared/datasets/imagewoof2-160, else the sample)')
    ap.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'int8.json'))
    a = ap.parse_args()
    cond = Conditions()
    model = Path(a.model) if a.model else max(ROOT.glob('exported_models/*/model/manifest.json'), key=lambda p: p.stat().st_mtime).parent
    cond.save(a.out, run(model, a.variants, a.val, a.calib, a.reps, a.n, a.threads, a.data),
              onnxruntime_threads=a.threads or 'its own choice')


if __name__ == '__main__': main()
