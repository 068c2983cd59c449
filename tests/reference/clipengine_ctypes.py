"""clipengine_ctypes: a thin ctypes binding of libclipengine for the Python checks.

The library path comes from $CLIPENGINE_LIB (CTest sets it), else build/lib/libclipengine.so.
Only numpy is needed, so the same file works on the GPU machine.
"""
import ctypes
import os

import numpy as np

CLIP_OK = 0
STATUS_NAMES = {0: "CLIP_OK", -1: "CLIP_ERR_INVALID_ARGUMENT", -2: "CLIP_ERR_IO",
                -3: "CLIP_ERR_BAD_WEIGHTS", -4: "CLIP_ERR_OUT_OF_MEMORY",
                -5: "CLIP_ERR_BACKEND", -6: "CLIP_ERR_UNSUPPORTED"}
BACKENDS = {"auto": 0, "cpu": 1, "cuda": 2}
PRECISIONS = {"auto": 0, "fp32": 1, "fp16": 2, "bf16": 3}


class Params(ctypes.Structure):
    _fields_ = [("weights_path", ctypes.c_char_p), ("backend", ctypes.c_int),
                ("device", ctypes.c_int), ("max_batch", ctypes.c_int),
                ("precision", ctypes.c_int), ("threads", ctypes.c_int)]


class ModelInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("image_size", "patch_size", "width", "layers",
                                             "heads", "mlp_width", "embed_dim", "quick_gelu")]


class TextInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("context_length", "vocab_size", "width", "layers",
                                             "heads", "embed_dim", "quick_gelu")]


class Image(ctypes.Structure):
    _fields_ = [("rgb", ctypes.POINTER(ctypes.c_uint8)), ("width", ctypes.c_int),
                ("height", ctypes.c_int), ("stride", ctypes.c_int)]


def default_lib_path():
    env = os.environ.get("CLIPENGINE_LIB")
    if env:
        return env
    root = os.environ.get("CLIP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.path.join(root, "build", "lib", "libclipengine.so")


_lib = None


def lib(path=None):
    global _lib
    if _lib is not None:
        return _lib
    L = ctypes.CDLL(path or default_lib_path())
    L.clip_engine_default_params.restype = Params
    L.clip_engine_create.argtypes = [ctypes.POINTER(Params), ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.c_char_p, ctypes.c_size_t]
    L.clip_engine_create.restype = ctypes.c_int
    L.clip_engine_destroy.argtypes = [ctypes.c_void_p]
    L.clip_engine_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(ModelInfo)]
    L.clip_engine_info.restype = ctypes.c_int
    L.clip_engine_backend_name.argtypes = [ctypes.c_void_p]
    L.clip_engine_backend_name.restype = ctypes.c_char_p
    L.clip_engine_last_error.argtypes = [ctypes.c_void_p]
    L.clip_engine_last_error.restype = ctypes.c_char_p
    L.clip_status_string.argtypes = [ctypes.c_int]
    L.clip_status_string.restype = ctypes.c_char_p
    L.clip_version.restype = ctypes.c_char_p
    fptr = ctypes.POINTER(ctypes.c_float)
    L.clip_engine_embed_images.argtypes = [ctypes.c_void_p, ctypes.POINTER(Image), ctypes.c_int, fptr]
    L.clip_engine_embed_images.restype = ctypes.c_int
    L.clip_engine_embed_pixels.argtypes = [ctypes.c_void_p, fptr, ctypes.c_int, fptr]
    L.clip_engine_embed_pixels.restype = ctypes.c_int
    L.clip_preprocess_image.argtypes = [ctypes.POINTER(Image), ctypes.c_int, fptr]
    L.clip_preprocess_image.restype = ctypes.c_int
    L.clip_preprocess_image_u8.argtypes = [ctypes.POINTER(Image), ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_uint8)]
    L.clip_preprocess_image_u8.restype = ctypes.c_int
    # The text tower (absent from libraries built before it: then text calls raise).
    if hasattr(L, "clip_engine_embed_tokens"):
        L.clip_engine_text_info.argtypes = [ctypes.c_void_p, ctypes.POINTER(TextInfo)]
        L.clip_engine_text_info.restype = ctypes.c_int
        L.clip_engine_embed_tokens.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                                               ctypes.c_int, fptr]
        L.clip_engine_embed_tokens.restype = ctypes.c_int
        L.clip_weights_probe_text.argtypes = [ctypes.c_char_p, ctypes.POINTER(TextInfo),
                                              ctypes.c_char_p, ctypes.c_size_t]
        L.clip_weights_probe_text.restype = ctypes.c_int
    _lib = L
    return L


class ClipError(Exception):
    def __init__(self, status, message):
        super().__init__(f"{STATUS_NAMES.get(status, status)}: {message}")
        self.status = status
        self.message = message


def _image(arr):
    """arr: uint8 (H, W, 3), any strides along H as long as rows are contiguous."""
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    if arr.strides[1] != 3 or arr.strides[2] != 1:
        arr = np.ascontiguousarray(arr)
    im = Image(arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), arr.shape[1], arr.shape[0],
               arr.strides[0])
    return im, arr


def preprocess_u8(arr, size):
    im, keep = _image(arr)
    out = np.empty((size, size, 3), np.uint8)
    s = lib().clip_preprocess_image_u8(ctypes.byref(im), size,
                                       out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    if s != CLIP_OK:
        raise ClipError(s, "clip_preprocess_image_u8")
    return out


def preprocess(arr, size):
    im, keep = _image(arr)
    out = np.empty((3, size, size), np.float32)
    s = lib().clip_preprocess_image(ctypes.byref(im), size,
                                    out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    if s != CLIP_OK:
        raise ClipError(s, "clip_preprocess_image")
    return out


class Engine:
    def __init__(self, weights_path, backend="cpu", precision="auto", threads=0, max_batch=0,
                 device=0):
        L = lib()
        p = L.clip_engine_default_params()
        p.weights_path = os.fsencode(weights_path)
        p.backend = BACKENDS[backend]
        p.precision = PRECISIONS[precision]
        p.threads = threads
        p.max_batch = max_batch
        p.device = device
        h = ctypes.c_void_p()
        err = ctypes.create_string_buffer(1024)
        s = L.clip_engine_create(ctypes.byref(p), ctypes.byref(h), err, len(err))
        if s != CLIP_OK:
            raise ClipError(s, err.value.decode(errors="replace"))
        self.h = h
        info = ModelInfo()
        L.clip_engine_info(h, ctypes.byref(info))
        self.info = {n: getattr(info, n) for n, _ in ModelInfo._fields_}
        self.backend_name = L.clip_engine_backend_name(h).decode()

    def close(self):
        if self.h:
            lib().clip_engine_destroy(self.h)
            self.h = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _check(self, s):
        if s != CLIP_OK:
            raise ClipError(s, lib().clip_engine_last_error(self.h).decode(errors="replace"))

    def embed_pixels(self, pixels):
        pixels = np.ascontiguousarray(pixels, np.float32)
        n = pixels.shape[0]
        out = np.empty((n, self.info["embed_dim"]), np.float32)
        fptr = ctypes.POINTER(ctypes.c_float)
        self._check(lib().clip_engine_embed_pixels(self.h, pixels.ctypes.data_as(fptr), n,
                                                   out.ctypes.data_as(fptr)))
        return out

    def embed_images(self, arrays):
        ims = (Image * len(arrays))()
        keep = []
        for i, a in enumerate(arrays):
            ims[i], k = _image(a)
            keep.append(k)
        out = np.empty((len(arrays), self.info["embed_dim"]), np.float32)
        self._check(lib().clip_engine_embed_images(self.h, ims, len(arrays),
                                                   out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
        return out

    def text_info(self):
        """clip_engine_text_info -> dict (ClipError CLIP_ERR_UNSUPPORTED without a text tower)."""
        info = TextInfo()
        self._check(lib().clip_engine_text_info(self.h, ctypes.byref(info)))
        return {n: getattr(info, n) for n, _ in TextInfo._fields_}

    def embed_tokens(self, tokens):
        """tokens int [n, context_length] -> float32 [n, embed_dim] (clip_engine_embed_tokens)."""
        tokens = np.ascontiguousarray(tokens, np.int32)
        n = tokens.shape[0]
        out = np.empty((n, self.info["embed_dim"]), np.float32)
        self._check(lib().clip_engine_embed_tokens(
            self.h, tokens.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), n,
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))))
        return out


def probe_text(weights_path):
    """clip_weights_probe_text -> dict of clip_text_info (ClipError when there is none)."""
    info = TextInfo()
    err = ctypes.create_string_buffer(1024)
    s = lib().clip_weights_probe_text(os.fsencode(weights_path), ctypes.byref(info), err, len(err))
    if s != CLIP_OK:
        raise ClipError(s, err.value.decode(errors="replace"))
    return {n: getattr(info, n) for n, _ in TextInfo._fields_}
