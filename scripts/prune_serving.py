"""Remove what the serving runtime never loads from a `pip install --target DIR 'dogbreeds[serve]'`.

    python scripts/prune_serving.py DIR               # tests, tooling, caches, ONNX Runtime's C API library,
                                                      # Pillow's AVIF and font libraries
    python scripts/prune_serving.py DIR --keep-avif   # keep Pillow's AVIF decoder (the package then passes 100 MB)

AVIF goes by default so that the Lambda package stays under 100 MB unzipped: phones upload JPEG or HEIC (read
by pi-heif, about 4 MB, which the runtime keeps), and an AVIF upload is refused with a clear "not an image format
that can be read" (415/400) instead of classified. Fonts are never used to decode a photo.

Used for the AWS Lambda package (docker/lambda.Dockerfile) and measured by benchmarks/serve_size.py.
The package itself is cut to what serving runs, the base and serving layers (`dogbreeds.core.serving_files`,
read from the installed package's own modules): training, AWS management, front ends and the testing
helpers are left out.
Every path removed is one the inference runtime does not import: onnxruntime's Python binding is
self-contained (it does not load libonnxruntime.so, the C API library); `transformers`,
`quantization` and `tools` are offline model-editing tools; numpy's f2py, distutils, tests and
`_simd` (a test module) are never imported by numpy itself. To make room for pi-heif (HEIC): protobuf
(`google/`, 1.4 MB), which onnxruntime requires for those tools but never imports to run a model, and
`numpy.random` and `numpy.fft` (3.6 MB), which `import numpy` does not load and serving never uses
(benchmarks/serve_size.py checks that a bare interpreter classifies a JPEG and a HEIC from the pruned folder).
"""
import importlib.util, shutil, sys
from pathlib import Path

SAFE = ['onnxruntime/capi/libonnxruntime.so*', 'onnxruntime/transformers', 'onnxruntime/quantization',
        'onnxruntime/tools', 'numpy/f2py', 'numpy/distutils', 'numpy/_core/include', 'numpy/_core/_simd.*.so',
        'numpy/_core/_multiarray_tests.*.so', 'numpy/*/tests', 'numpy/tests', 'numpy/*/*/tests',
        'PIL/ImageTk.py', 'PIL/ImageQt.py', 'bin', '**/__pycache__',
        'google', 'protobuf-*.dist-info', 'numpy/random', 'numpy/fft']
NO_AVIF = ['pillow.libs/libavif-*', 'PIL/_avif.*.so', 'pillow.libs/libfreetype-*', 'pillow.libs/libharfbuzz-*',
           'PIL/_imagingft.*.so']


def serving_package(target) -> list:
    "The files of the `dogbreeds` package installed in `target` that serving does not need."
    pkg = Path(target) / 'dogbreeds'
    sys.path.insert(0, str(target))  # core.py imports NumPy and Pillow: those installed in target
    try:
        spec = importlib.util.spec_from_file_location('_dogbreeds_core', pkg / 'core.py')
        core = importlib.util.module_from_spec(spec); spec.loader.exec_module(core)
    finally: sys.path.remove(str(target))
    keep = set(core.serving_files(pkg))
    return [f'dogbreeds/{f.name}' for f in sorted(pkg.iterdir()) if f.is_file() and f.name not in keep]


def prune(target, no_avif=True) -> int:
    "Remove the listed paths under `target`, and the package's modules that serving does not run; return the bytes freed."
    freed = 0
    for pat in SAFE + (NO_AVIF if no_avif else []) + serving_package(target):
        for p in sorted(Path(target).glob(pat), reverse=True):
            if not p.exists(): continue
            size = sum(f.stat().st_size for f in p.rglob('*') if f.is_file()) if p.is_dir() else p.stat().st_size
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            freed += size
    return freed


if __name__ == '__main__':
    print(f"freed {prune(sys.argv[1], no_avif='--keep-avif' not in sys.argv) / 1e6:.1f} MB")
