"Decoding photos: every mode becomes upright RGB; every kind of bad input is a specific ImageError."
import io, struct, zlib

import numpy as np
import pytest
from PIL import Image

from dogbreeds.core import (CorruptImageError, EmptyImageError, ImageTooLargeError, ImageTooSmallError,
                            NotAnImageError, load_rgb)


@pytest.fixture(scope='module')
def photo(sample_photos):
    return Image.open(sample_photos['beagle'][0]).convert('RGB')


def encode(im, fmt, **kw):
    buf = io.BytesIO(); im.save(buf, fmt, **kw); return buf.getvalue()


@pytest.mark.parametrize('mode', ['L', 'LA', 'P', 'CMYK', 'RGBA', '1'])
def test_modes_become_rgb(photo, mode):
    im = photo.convert(mode)
    fmt = 'JPEG' if mode == 'CMYK' else 'PNG'
    out = load_rgb(encode(im, fmt))
    assert out.mode == 'RGB' and out.size == photo.size
    # the picture survives the conversion: close to the original's greyscale at a coarse scale
    # (coarse, because a 1-bit image is dithered pixel by pixel)
    small = lambda im: np.asarray(im.convert('L').resize((16, 12), Image.Resampling.BOX), dtype=float)
    assert np.abs(small(photo) - small(out)).mean() < 12, mode


def test_sixteen_bit_is_scaled_not_clipped(photo):
    a = np.asarray(photo.convert('L'), dtype=np.uint16) * 257  # full 16-bit range
    out = load_rgb(encode(Image.fromarray(a), 'PNG'))
    assert np.abs(np.asarray(out.convert('L'), dtype=int) - np.asarray(photo.convert('L'), dtype=int)).max() <= 1


def test_transparent_becomes_white(photo):
    rgba = photo.convert('RGBA'); rgba.putalpha(0)
    assert np.asarray(load_rgb(encode(rgba, 'PNG'))).min() == 255


def test_exif_orientation_applied(photo):
    exif = Image.Exif(); exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to view
    out = load_rgb(encode(photo, 'JPEG', exif=exif))
    assert out.size == photo.size[::-1]
    expected = np.asarray(photo.transpose(Image.Transpose.ROTATE_270), dtype=int)
    assert np.abs(np.asarray(out, dtype=int) - expected).mean() < 6


def test_animated_gif_first_frame(photo):
    frames = [photo.convert('P'), Image.new('RGB', photo.size, 'red').convert('P')]
    data = encode(frames[0], 'GIF', save_all=True, append_images=frames[1:])
    out = load_rgb(data)
    assert out.size == photo.size and np.asarray(out)[..., 0].mean() < 250  # not the all-red frame


def test_sources(photo, sample_photos, tmp_path):
    p = sample_photos['beagle'][0]
    for src in (p, str(p), p.read_bytes(), io.BytesIO(p.read_bytes()), photo):
        assert load_rgb(src).size == photo.size


def png_claiming(w, h):
    "A valid small PNG whose header claims w x h pixels."
    data = encode(Image.new('RGB', (8, 8)), 'PNG')
    ihdr = struct.pack('>II', w, h) + data[24:29]
    return data[:16] + ihdr + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr)) + data[33:]


@pytest.mark.parametrize('data, exc, words', [
    (b'', EmptyImageError, 'empty'),
    (b'just some text, not a photo\n', NotAnImageError, 'not an image'),
    (png_claiming(20000, 20000), ImageTooLargeError, 'pixels'),
])
def test_bad_bytes(data, exc, words):
    with pytest.raises(exc, match=words): load_rgb(data)


def test_truncated_jpeg(sample_photos):
    data = sample_photos['beagle'][0].read_bytes()
    with pytest.raises(CorruptImageError, match='truncated'): load_rgb(data[: len(data) // 3])


def test_too_small_and_byte_cap(photo, sample_photos):
    with pytest.raises(ImageTooSmallError): load_rgb(encode(Image.new('RGB', (1, 1)), 'PNG'))
    with pytest.raises(ImageTooLargeError, match='bytes'): load_rgb(sample_photos['beagle'][0], max_bytes=100)
    with pytest.raises(ImageTooLargeError): load_rgb(photo, max_pixels=100)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError): load_rgb(tmp_path / 'nope.jpg')
