#!/usr/bin/env python3
"""clip_ref: an independent PyTorch + numpy reference of CLIP's vision and text towers, for
checking libclipengine.

It owns everything the checks need and nothing from the engine: model configs, random
weights with fixed seeds (OpenAI and Hugging Face namings), a safetensors writer and
reader, the config files of both ecosystems, the ViT forward and the text transformer's
forward (encode_text) in plain torch ops, and CLIP's PIL preprocessing. Needs only torch,
numpy and Pillow (runs on Debian's Python and on the GPU machine's Python 3.12 / torch 2.x).

Command line (used by the GPU check script):
  clip_ref.py make-weights --config b32|tiny --seed N --naming openai|hf
                           --dtype f32|f16|bf16 --gelu quick|erf [--text] --out DIR
              (--text adds the text tower of TEXT_CONFIGS[config], same activation)
  clip_ref.py embed --weights DIR --pixels X.npy --out Y.npy [--device cpu|cuda]
                    [--dtype fp32|fp16|fp64]
"""
import argparse
import dataclasses
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class Config:
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    embed_dim: int
    quick_gelu: bool
    ln_eps: float = 1e-5

    @property
    def grid(self):
        return self.image_size // self.patch_size

    @property
    def tokens(self):
        return self.grid * self.grid + 1

    @property
    def head_dim(self):
        return self.width // self.heads


B32 = Config(224, 32, 768, 12, 12, 3072, 512, True)
TINY = Config(32, 8, 64, 2, 2, 256, 32, True)
# Smaller still, for the committed golden fixtures (a few tens of KB each).
TINY_S = Config(32, 8, 32, 2, 2, 64, 16, True)
TINY_ERF = Config(40, 10, 48, 2, 3, 80, 24, False, 1e-6)
CONFIGS = {"b32": B32, "tiny": TINY, "tiny_s": TINY_S, "tiny_erf": TINY_ERF}


def with_gelu(cfg, quick):
    return dataclasses.replace(cfg, quick_gelu=bool(quick))


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """CLIP's text transformer (model.encode_text)."""
    context_length: int
    vocab_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    embed_dim: int
    quick_gelu: bool
    ln_eps: float = 1e-5

    @property
    def head_dim(self):
        return self.width // self.heads


# ViT-B/32's text tower (OpenAI): 77 tokens, 49408 ids, width 512, 12 layers, 8 heads.
B32_TEXT = TextConfig(77, 49408, 512, 12, 8, 2048, 512, True)
# A text tower for each vision config (embed_dim equal to the vision tower's).
TEXT_CONFIGS = {
    "b32": B32_TEXT,
    "tiny": TextConfig(16, 300, 64, 2, 2, 256, 32, True),
    "tiny_s": TextConfig(8, 64, 32, 2, 2, 64, 16, True),
    "tiny_erf": TextConfig(12, 200, 48, 2, 3, 80, 24, False, 1e-6),
}


# ---------------------------------------------------------------------------------------
# Random weights (OpenAI naming)
# ---------------------------------------------------------------------------------------

def _randn(g):
    def randn(*shape, std=1.0, mean=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean).contiguous()
    return randn


def _random_block(t, p, W, M, randn):
    """One pre-LN block's parameters under prefix p (both towers' blocks are alike)."""
    t[p + "ln_1.weight"] = randn(W, std=0.1, mean=1.0)
    t[p + "ln_1.bias"] = randn(W, std=0.05)
    t[p + "attn.in_proj_weight"] = randn(3 * W, W, std=1.0 / math.sqrt(W))
    t[p + "attn.in_proj_bias"] = randn(3 * W, std=0.05)
    t[p + "attn.out_proj.weight"] = randn(W, W, std=0.5 / math.sqrt(W))
    t[p + "attn.out_proj.bias"] = randn(W, std=0.05)
    t[p + "ln_2.weight"] = randn(W, std=0.1, mean=1.0)
    t[p + "ln_2.bias"] = randn(W, std=0.05)
    t[p + "mlp.c_fc.weight"] = randn(M, W, std=1.0 / math.sqrt(W))
    t[p + "mlp.c_fc.bias"] = randn(M, std=0.05)
    t[p + "mlp.c_proj.weight"] = randn(W, M, std=0.5 / math.sqrt(M))
    t[p + "mlp.c_proj.bias"] = randn(W, std=0.05)


def random_weights(cfg, seed):
    """All parameters random (LayerNorm gains and every bias included), fp32, OpenAI naming.

    Scales keep the residual stream O(1..3) through 12 layers and make the attention
    non-uniform: q/k/fc1 weights ~ 1/sqrt(fan_in) on LayerNorm'd inputs give O(1) scores,
    the projections back into the residual stream are halved so it grows slowly."""
    randn = _randn(torch.Generator().manual_seed(int(seed)))
    W, M, P, E, T = cfg.width, cfg.mlp_width, cfg.patch_size, cfg.embed_dim, cfg.tokens

    t = {}
    v = "visual."
    t[v + "conv1.weight"] = randn(W, 3, P, P, std=1.0 / math.sqrt(3 * P * P))
    t[v + "class_embedding"] = randn(W, std=0.1)
    t[v + "positional_embedding"] = randn(T, W, std=0.1)
    t[v + "ln_pre.weight"] = randn(W, std=0.1, mean=1.0)
    t[v + "ln_pre.bias"] = randn(W, std=0.05)
    for i in range(cfg.layers):
        _random_block(t, f"{v}transformer.resblocks.{i}.", W, M, randn)
    t[v + "ln_post.weight"] = randn(W, std=0.1, mean=1.0)
    t[v + "ln_post.bias"] = randn(W, std=0.05)
    t[v + "proj"] = randn(W, E, std=1.0 / math.sqrt(W))
    return t


def random_text_weights(tcfg, seed):
    """The text tower's parameters, all random, fp32, OpenAI naming (top-level names beside
    visual.*), scaled as random_weights scales the vision blocks. The token embedding's std
    (0.5) makes ids matter against the positions (0.1)."""
    randn = _randn(torch.Generator().manual_seed(int(seed) + 7919))
    W, M, E = tcfg.width, tcfg.mlp_width, tcfg.embed_dim

    t = {"token_embedding.weight": randn(tcfg.vocab_size, W, std=0.5),
         "positional_embedding": randn(tcfg.context_length, W, std=0.1)}
    for i in range(tcfg.layers):
        _random_block(t, f"transformer.resblocks.{i}.", W, M, randn)
    t["ln_final.weight"] = randn(W, std=0.1, mean=1.0)
    t["ln_final.bias"] = randn(W, std=0.05)
    t["text_projection"] = randn(W, E, std=1.0 / math.sqrt(W))
    return t


def round_to(tensors, dtype):
    """What the weights become after a trip through the file's dtype, back in fp32."""
    if dtype == "f32":
        return dict(tensors)
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return {k: v.to(td).to(torch.float32) for k, v in tensors.items()}


# ---------------------------------------------------------------------------------------
# Namings
# ---------------------------------------------------------------------------------------

def to_hf(tensors):
    """OpenAI naming -> Hugging Face CLIPModel naming (vision tower + visual_projection)."""
    o, h = "visual.", "vision_model."
    out = {
        h + "embeddings.class_embedding": tensors[o + "class_embedding"],
        h + "embeddings.patch_embedding.weight": tensors[o + "conv1.weight"],
        h + "embeddings.position_embedding.weight": tensors[o + "positional_embedding"],
        h + "pre_layrnorm.weight": tensors[o + "ln_pre.weight"],  # HF's own spelling
        h + "pre_layrnorm.bias": tensors[o + "ln_pre.bias"],
        h + "post_layernorm.weight": tensors[o + "ln_post.weight"],
        h + "post_layernorm.bias": tensors[o + "ln_post.bias"],
        "visual_projection.weight": tensors[o + "proj"].t().contiguous(),
    }
    i = 0
    while f"{o}transformer.resblocks.{i}.ln_1.weight" in tensors:
        s = f"{o}transformer.resblocks.{i}."
        d = f"{h}encoder.layers.{i}."
        W = tensors[s + "ln_1.weight"].shape[0]
        qkv_w, qkv_b = tensors[s + "attn.in_proj_weight"], tensors[s + "attn.in_proj_bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[d + f"self_attn.{name}.weight"] = qkv_w[j * W:(j + 1) * W].contiguous()
            out[d + f"self_attn.{name}.bias"] = qkv_b[j * W:(j + 1) * W].contiguous()
        out[d + "self_attn.out_proj.weight"] = tensors[s + "attn.out_proj.weight"]
        out[d + "self_attn.out_proj.bias"] = tensors[s + "attn.out_proj.bias"]
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[d + b + ".weight"] = tensors[s + a + ".weight"]
            out[d + b + ".bias"] = tensors[s + a + ".bias"]
        i += 1
    return out


_BLOCK_HF = (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))


def _block_to_hf(tensors, s, d, out):
    W = tensors[s + "ln_1.weight"].shape[0]
    qkv_w, qkv_b = tensors[s + "attn.in_proj_weight"], tensors[s + "attn.in_proj_bias"]
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
        out[d + f"self_attn.{name}.weight"] = qkv_w[j * W:(j + 1) * W].contiguous()
        out[d + f"self_attn.{name}.bias"] = qkv_b[j * W:(j + 1) * W].contiguous()
    out[d + "self_attn.out_proj.weight"] = tensors[s + "attn.out_proj.weight"]
    out[d + "self_attn.out_proj.bias"] = tensors[s + "attn.out_proj.bias"]
    for a, b in _BLOCK_HF:
        out[d + b + ".weight"] = tensors[s + a + ".weight"]
        out[d + b + ".bias"] = tensors[s + a + ".bias"]


def _block_from_hf(tensors, s, d, out):
    out[d + "attn.in_proj_weight"] = torch.cat(
        [tensors[s + f"self_attn.{n}.weight"] for n in ("q_proj", "k_proj", "v_proj")], 0)
    out[d + "attn.in_proj_bias"] = torch.cat(
        [tensors[s + f"self_attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")], 0)
    out[d + "attn.out_proj.weight"] = tensors[s + "self_attn.out_proj.weight"]
    out[d + "attn.out_proj.bias"] = tensors[s + "self_attn.out_proj.bias"]
    for a, b in _BLOCK_HF:
        out[d + a + ".weight"] = tensors[s + b + ".weight"]
        out[d + a + ".bias"] = tensors[s + b + ".bias"]


def text_to_hf(tensors):
    """OpenAI text-tower names -> Hugging Face CLIPModel's (text_model.*, text_projection)."""
    h = "text_model."
    out = {
        h + "embeddings.token_embedding.weight": tensors["token_embedding.weight"],
        h + "embeddings.position_embedding.weight": tensors["positional_embedding"],
        h + "final_layer_norm.weight": tensors["ln_final.weight"],
        h + "final_layer_norm.bias": tensors["ln_final.bias"],
        "text_projection.weight": tensors["text_projection"].t().contiguous(),
    }
    i = 0
    while f"transformer.resblocks.{i}.ln_1.weight" in tensors:
        _block_to_hf(tensors, f"transformer.resblocks.{i}.", f"{h}encoder.layers.{i}.", out)
        i += 1
    return out


def text_from_hf(tensors):
    """Hugging Face text-tower names -> OpenAI's ({} when the file has no text tower)."""
    h = "text_model."
    if h + "embeddings.token_embedding.weight" not in tensors:
        return {}
    out = {
        "token_embedding.weight": tensors[h + "embeddings.token_embedding.weight"],
        "positional_embedding": tensors[h + "embeddings.position_embedding.weight"],
        "ln_final.weight": tensors[h + "final_layer_norm.weight"],
        "ln_final.bias": tensors[h + "final_layer_norm.bias"],
        "text_projection": tensors["text_projection.weight"].t().contiguous(),
    }
    i = 0
    while f"{h}encoder.layers.{i}.layer_norm1.weight" in tensors:
        _block_from_hf(tensors, f"{h}encoder.layers.{i}.", f"transformer.resblocks.{i}.", out)
        i += 1
    return out


def from_hf(tensors):
    """Hugging Face naming -> OpenAI naming (text-tower tensors are ignored)."""
    o, h = "visual.", "vision_model."
    out = {
        o + "class_embedding": tensors[h + "embeddings.class_embedding"],
        o + "conv1.weight": tensors[h + "embeddings.patch_embedding.weight"],
        o + "positional_embedding": tensors[h + "embeddings.position_embedding.weight"],
        o + "ln_pre.weight": tensors[h + "pre_layrnorm.weight"],
        o + "ln_pre.bias": tensors[h + "pre_layrnorm.bias"],
        o + "ln_post.weight": tensors[h + "post_layernorm.weight"],
        o + "ln_post.bias": tensors[h + "post_layernorm.bias"],
        o + "proj": tensors["visual_projection.weight"].t().contiguous(),
    }
    i = 0
    while f"{h}encoder.layers.{i}.layer_norm1.weight" in tensors:
        s = f"{h}encoder.layers.{i}."
        d = f"{o}transformer.resblocks.{i}."
        out[d + "attn.in_proj_weight"] = torch.cat(
            [tensors[s + f"self_attn.{n}.weight"] for n in ("q_proj", "k_proj", "v_proj")], 0)
        out[d + "attn.in_proj_bias"] = torch.cat(
            [tensors[s + f"self_attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")], 0)
        out[d + "attn.out_proj.weight"] = tensors[s + "self_attn.out_proj.weight"]
        out[d + "attn.out_proj.bias"] = tensors[s + "self_attn.out_proj.bias"]
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[d + a + ".weight"] = tensors[s + b + ".weight"]
            out[d + a + ".bias"] = tensors[s + b + ".bias"]
        i += 1
    return out


# ---------------------------------------------------------------------------------------
# safetensors (own reader/writer: 8-byte LE header size, JSON header, raw LE data)
# ---------------------------------------------------------------------------------------

_ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def _tensor_bytes(t, dtype):
    t = t.detach().to("cpu").contiguous()
    if dtype == "f32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "f16":
        return t.to(torch.float32).numpy().astype("<f2").tobytes()
    if dtype == "bf16":
        # torch rounds to nearest even; reinterpret the 16-bit patterns
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(f"unknown dtype {dtype!r}")


def save_safetensors(path, tensors, dtype="f32", extra=None):
    """Writes `tensors` (name -> torch.Tensor) converted to dtype; `extra` is an optional
    str->str __metadata__ dict."""
    if dtype not in _ST_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_ST_DTYPES)}, not {dtype!r}")
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        b = _tensor_bytes(tensors[name], dtype)
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if extra:
        header["__metadata__"] = {str(k): str(v) for k, v in extra.items()}
    hj = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """name -> float32 torch.Tensor (F32/F16/BF16 files)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        shape = info["shape"]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, "<f4").astype(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":
            u = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
        out[name] = torch.from_numpy(arr.reshape(shape).copy())
    return out


def write_hf_config(d, cfg, tcfg=None):
    conf = {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": cfg.width,
            "intermediate_size": cfg.mlp_width,
            "num_hidden_layers": cfg.layers,
            "num_attention_heads": cfg.heads,
            "patch_size": cfg.patch_size,
            "image_size": cfg.image_size,
            "num_channels": 3,
            "hidden_act": "quick_gelu" if cfg.quick_gelu else "gelu",
            "layer_norm_eps": cfg.ln_eps,
            "projection_dim": cfg.embed_dim,
        },
    }
    if tcfg is not None:
        conf["text_config"] = {
            "model_type": "clip_text_model",
            "hidden_size": tcfg.width,
            "intermediate_size": tcfg.mlp_width,
            "num_hidden_layers": tcfg.layers,
            "num_attention_heads": tcfg.heads,
            "max_position_embeddings": tcfg.context_length,
            "vocab_size": tcfg.vocab_size,
            "hidden_act": "quick_gelu" if tcfg.quick_gelu else "gelu",
            "layer_norm_eps": tcfg.ln_eps,
            "projection_dim": tcfg.embed_dim,
            "bos_token_id": tcfg.vocab_size - 2,
            "eos_token_id": tcfg.vocab_size - 1,
        }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)


def write_open_clip_config(d, cfg, tcfg=None):
    """open_clip's config has one quick_gelu for both towers, and no LayerNorm epsilon (open_clip
    uses 1e-5): a text tower must agree with the vision tower on both."""
    conf = {"model_cfg": {
        "embed_dim": cfg.embed_dim,
        "quick_gelu": bool(cfg.quick_gelu),
        "vision_cfg": {"width": cfg.width, "layers": cfg.layers, "patch_size": cfg.patch_size,
                       "image_size": cfg.image_size, "head_width": cfg.head_dim},
    }}
    if tcfg is not None:
        if tcfg.quick_gelu != cfg.quick_gelu or tcfg.ln_eps != 1e-5:
            raise ValueError("open_clip_config.json cannot say this text tower's activation or eps")
        conf["model_cfg"]["text_cfg"] = {
            "context_length": tcfg.context_length, "vocab_size": tcfg.vocab_size,
            "width": tcfg.width, "heads": tcfg.heads, "layers": tcfg.layers,
            "mlp_ratio": tcfg.mlp_width / tcfg.width}
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump(conf, f, indent=2)


def write_model(d, cfg, tensors, naming="openai", dtype="f32", config_file=True, text=None):
    """DIR/model.safetensors in the naming + the config file of that ecosystem (unless
    config_file is False: then readers must fall back to heads = width/64, QuickGELU).
    text: None, or (TextConfig, OpenAI-named text tensors) to write the text tower too.
    Returns the fp32 tensors (OpenAI naming, text ones included) as the file holds them
    (rounded through dtype)."""
    os.makedirs(d, exist_ok=True)
    tcfg, ttensors = text if text is not None else (None, {})
    if naming == "openai":
        save_safetensors(os.path.join(d, "model.safetensors"), {**tensors, **ttensors}, dtype)
        if config_file:
            write_open_clip_config(d, cfg, tcfg)
    elif naming == "hf":
        hf = to_hf(tensors)
        if ttensors:
            hf.update(text_to_hf(ttensors))
        save_safetensors(os.path.join(d, "model.safetensors"), hf, dtype)
        if config_file:
            write_hf_config(d, cfg, tcfg)
    else:
        raise ValueError(f"naming must be openai or hf, not {naming!r}")
    return round_to({**tensors, **ttensors}, dtype)


def read_model(d):
    """Loads DIR (or a .safetensors file) in either naming -> (cfg, OpenAI-named fp32
    tensors). The config comes from the shapes plus config.json / open_clip_config.json."""
    path = os.path.join(d, "model.safetensors") if os.path.isdir(d) else d
    d = os.path.dirname(path)
    t = load_safetensors(path)
    if "visual_projection.weight" in t:
        t = {**from_hf(t), **text_from_hf(t)}
    W, _, P, _ = t["visual.conv1.weight"].shape
    T = t["visual.positional_embedding"].shape[0]
    grid = int(round(math.sqrt(T - 1)))
    layers = 0
    while f"visual.transformer.resblocks.{layers}.ln_1.weight" in t:
        layers += 1
    M = t["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    E = t["visual.proj"].shape[1]
    heads, quick, eps = W // 64, True, 1e-5
    hf, oc = os.path.join(d, "config.json"), os.path.join(d, "open_clip_config.json")
    if os.path.exists(hf):
        with open(hf) as f:
            c = json.load(f)
        vc = c.get("vision_config", c)
        heads = vc.get("num_attention_heads", heads)
        quick = vc.get("hidden_act", "quick_gelu") == "quick_gelu"
        eps = vc.get("layer_norm_eps", eps)
    elif os.path.exists(oc):
        with open(oc) as f:
            c = json.load(f)["model_cfg"]
        heads = W // c["vision_cfg"].get("head_width", 64)
        quick = bool(c.get("quick_gelu", False))
    cfg = Config(grid * P, P, W, layers, heads, M, E, quick, eps)
    return cfg, t


def read_text_config(d, t):
    """The text tower's config from OpenAI-named tensors t (read_model's) and the config file
    in DIR d; None when t has no text tower. Defaults as CLIP's: heads = width/64, QuickGELU
    (open_clip's text_cfg: heads 8 when it says none)."""
    if "token_embedding.weight" not in t:
        return None
    V, W = t["token_embedding.weight"].shape
    C = t["positional_embedding"].shape[0]
    layers = 0
    while f"transformer.resblocks.{layers}.ln_1.weight" in t:
        layers += 1
    M = t["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    E = t["text_projection"].shape[1]
    heads, quick, eps = W // 64, True, 1e-5
    hf, oc = os.path.join(d, "config.json"), os.path.join(d, "open_clip_config.json")
    if os.path.exists(hf):
        with open(hf) as f:
            tc = json.load(f).get("text_config", {})
        heads = tc.get("num_attention_heads", heads)
        quick = tc.get("hidden_act", "quick_gelu") == "quick_gelu"
        eps = tc.get("layer_norm_eps", eps)
    elif os.path.exists(oc):
        with open(oc) as f:
            c = json.load(f)["model_cfg"]
        heads = c.get("text_cfg", {}).get("heads", 8 if "text_cfg" in c else heads)
        quick = bool(c.get("quick_gelu", False))
    return TextConfig(C, V, W, layers, heads, M, E, quick, eps)


# ---------------------------------------------------------------------------------------
# The model, in plain torch ops
# ---------------------------------------------------------------------------------------

_BLOCK_PARAMS = (("ln1_w", "ln_1.weight"), ("ln1_b", "ln_1.bias"),
                 ("qkv_w", "attn.in_proj_weight"), ("qkv_b", "attn.in_proj_bias"),
                 ("out_w", "attn.out_proj.weight"), ("out_b", "attn.out_proj.bias"),
                 ("ln2_w", "ln_2.weight"), ("ln2_b", "ln_2.bias"),
                 ("fc1_w", "mlp.c_fc.weight"), ("fc1_b", "mlp.c_fc.bias"),
                 ("fc2_w", "mlp.c_proj.weight"), ("fc2_b", "mlp.c_proj.bias"))


def _zeros(*shape):
    return torch.nn.Parameter(torch.zeros(*shape), requires_grad=False)


class _Tower(torch.nn.Module):
    """What both towers share: pre-LN residual blocks (attention + MLP), LayerNorm. cfg has
    width, layers, heads, mlp_width, quick_gelu, ln_eps."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        W, M = cfg.width, cfg.mlp_width
        self.blocks = torch.nn.ModuleList()
        for _ in range(cfg.layers):
            b = torch.nn.Module()
            b.ln1_w, b.ln1_b = _zeros(W), _zeros(W)
            b.qkv_w, b.qkv_b = _zeros(3 * W, W), _zeros(3 * W)
            b.out_w, b.out_b = _zeros(W, W), _zeros(W)
            b.ln2_w, b.ln2_b = _zeros(W), _zeros(W)
            b.fc1_w, b.fc1_b = _zeros(M, W), _zeros(M)
            b.fc2_w, b.fc2_b = _zeros(W, M), _zeros(W)
            self.blocks.append(b)

    @torch.no_grad()
    def _load_blocks(self, tensors, prefix):
        for i, b in enumerate(self.blocks):
            for attr, src in _BLOCK_PARAMS:
                getattr(b, attr).copy_(tensors[f"{prefix}{i}.{src}"])

    def _ln(self, x, w, b):
        return F.layer_norm(x, (x.shape[-1],), w, b, self.cfg.ln_eps)

    def attention(self, x, b, mask=None):
        """Multi-head self-attention from plain matmuls. x [n, T, W]; mask [T, T] is added to
        the scores (the text tower's causal mask: -inf above the diagonal)."""
        n, T, W = x.shape
        H = self.cfg.heads
        hd = W // H
        qkv = x @ b.qkv_w.t() + b.qkv_b                      # (n, T, 3W)
        q, k, v = qkv.split(W, dim=-1)
        split = lambda t: t.reshape(n, T, H, hd).transpose(1, 2)  # (n, H, T, hd)
        q, k, v = split(q), split(k), split(v)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))  # (n, H, T, T)
        if mask is not None:
            scores = scores + mask
        p = torch.softmax(scores, dim=-1)
        o = (p @ v).transpose(1, 2).reshape(n, T, W)
        return o @ b.out_w.t() + b.out_b

    def mlp(self, x, b):
        h = x @ b.fc1_w.t() + b.fc1_b
        if self.cfg.quick_gelu:
            h = h * torch.sigmoid(1.702 * h)
        else:
            h = F.gelu(h)  # exact erf form
        return h @ b.fc2_w.t() + b.fc2_b


class VisionRef(_Tower):
    """CLIP's visual tower: patch conv, class token, positions, ln_pre, pre-LN residual
    blocks, ln_post on the class token, projection. forward -> [n, E], not normalized."""

    def __init__(self, cfg):
        super().__init__(cfg)
        W, P, E, T = cfg.width, cfg.patch_size, cfg.embed_dim, cfg.tokens
        self.conv1 = _zeros(W, 3, P, P)
        self.class_embedding = _zeros(W)
        self.positional_embedding = _zeros(T, W)
        self.ln_pre_w, self.ln_pre_b = _zeros(W), _zeros(W)
        self.ln_post_w, self.ln_post_b = _zeros(W), _zeros(W)
        self.proj = _zeros(W, E)

    @torch.no_grad()
    def load(self, tensors):
        """From OpenAI-named tensors (shapes are checked by copy_)."""
        v = "visual."
        self.conv1.copy_(tensors[v + "conv1.weight"])
        self.class_embedding.copy_(tensors[v + "class_embedding"])
        self.positional_embedding.copy_(tensors[v + "positional_embedding"])
        self.ln_pre_w.copy_(tensors[v + "ln_pre.weight"])
        self.ln_pre_b.copy_(tensors[v + "ln_pre.bias"])
        self._load_blocks(tensors, f"{v}transformer.resblocks.")
        self.ln_post_w.copy_(tensors[v + "ln_post.weight"])
        self.ln_post_b.copy_(tensors[v + "ln_post.bias"])
        self.proj.copy_(tensors[v + "proj"])
        return self

    @torch.no_grad()
    def forward(self, pixels, attention=None):
        attention = attention or self.attention
        cfg = self.cfg
        x = F.conv2d(pixels.to(self.conv1.dtype), self.conv1, stride=cfg.patch_size)  # (n, W, g, g)
        n = x.shape[0]
        x = x.reshape(n, cfg.width, -1).transpose(1, 2)                  # (n, g*g, W)
        cls = self.class_embedding.reshape(1, 1, -1).expand(n, 1, cfg.width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding      # (n, T, W)
        x = self._ln(x, self.ln_pre_w, self.ln_pre_b)
        for b in self.blocks:
            x = x + attention(self._ln(x, b.ln1_w, b.ln1_b), b)
            x = x + self.mlp(self._ln(x, b.ln2_w, b.ln2_b), b)
        c = self._ln(x[:, 0, :], self.ln_post_w, self.ln_post_b)
        return c @ self.proj


class TextRef(_Tower):
    """CLIP's encode_text, as openai/CLIP clip/model.py writes it: token embedding +
    positional embedding, pre-LN blocks under the causal mask (build_attention_mask: -inf
    above the diagonal), ln_final, the state at each sequence's argmax id (the end token),
    @ text_projection. forward(tokens [n, ctx] int) -> [n, E], not normalized."""

    def __init__(self, tcfg):
        super().__init__(tcfg)
        W, E = tcfg.width, tcfg.embed_dim
        self.token_embedding = _zeros(tcfg.vocab_size, W)
        self.positional_embedding = _zeros(tcfg.context_length, W)
        self.ln_final_w, self.ln_final_b = _zeros(W), _zeros(W)
        self.text_projection = _zeros(W, E)

    @torch.no_grad()
    def load(self, tensors):
        """From OpenAI-named text tensors (read_model's, or random_text_weights')."""
        self.token_embedding.copy_(tensors["token_embedding.weight"])
        self.positional_embedding.copy_(tensors["positional_embedding"])
        self._load_blocks(tensors, "transformer.resblocks.")
        self.ln_final_w.copy_(tensors["ln_final.weight"])
        self.ln_final_b.copy_(tensors["ln_final.bias"])
        self.text_projection.copy_(tensors["text_projection"])
        return self

    def causal_mask(self, dtype, device):
        C = self.cfg.context_length
        return torch.full((C, C), float("-inf"), dtype=dtype, device=device).triu_(1)

    @torch.no_grad()
    def forward(self, tokens, attention=None, mask=True):
        """mask=False drops the causal mask (only for showing that the tests notice)."""
        attention = attention or self.attention
        tokens = torch.as_tensor(tokens, device=self.token_embedding.device).long()
        x = self.token_embedding[tokens] + self.positional_embedding   # (n, C, W)
        m = self.causal_mask(x.dtype, x.device) if mask else None
        for b in self.blocks:
            x = x + attention(self._ln(x, b.ln1_w, b.ln1_b), b, m)
            x = x + self.mlp(self._ln(x, b.ln2_w, b.ln2_b), b)
        x = self._ln(x, self.ln_final_w, self.ln_final_b)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection


def text_reference_model(tcfg, tensors, dtype=torch.float32, device="cpu"):
    return TextRef(tcfg).load(tensors).to(device=device, dtype=dtype).eval()


def embed_text(tcfg, tensors, tokens, dtype=torch.float64, device="cpu", chunk=64):
    """tokens np int [n, ctx] -> np float32 [n, E] computed in `dtype`."""
    m = text_reference_model(tcfg, tensors, dtype, device)
    outs = []
    for i in range(0, len(tokens), chunk):
        outs.append(m(torch.from_numpy(np.ascontiguousarray(tokens[i:i + chunk], np.int64))).float().cpu().numpy())
    return np.concatenate(outs, 0)


def random_tokens(tcfg, lengths, seed, zero_inside=()):
    """Token sequences as clip.tokenize lays them out: the start id (vocab-2), len-2 random
    BPE ids below it, the end id (vocab-1), zeros after; lengths count start and end (2..ctx).
    Sequence i in zero_inside gets a real id 0 in its middle (the padding id, as a word)."""
    rng = np.random.default_rng(seed)
    V, C = tcfg.vocab_size, tcfg.context_length
    out = np.zeros((len(lengths), C), np.int32)
    for i, n in enumerate(lengths):
        if not 2 <= n <= C:
            raise ValueError(f"length {n} outside 2..{C}")
        out[i, 0] = V - 2
        out[i, 1:n - 1] = rng.integers(0, V - 2, n - 2)
        out[i, n - 1] = V - 1
        if i in zero_inside and n > 3:
            out[i, 1 + (n - 2) // 2] = 0
    return out


def reference_model(cfg, tensors, dtype=torch.float32, device="cpu"):
    return VisionRef(cfg).load(tensors).to(device=device, dtype=dtype).eval()


def embed(cfg, tensors, pixels, dtype=torch.float64, device="cpu", chunk=64):
    """pixels np [n,3,S,S] -> np float32 [n,E] computed in `dtype`."""
    m = reference_model(cfg, tensors, dtype, device)
    outs = []
    for i in range(0, len(pixels), chunk):
        x = torch.from_numpy(np.ascontiguousarray(pixels[i:i + chunk])).to(device=device, dtype=dtype)
        outs.append(m(x).float().cpu().numpy())
    return np.concatenate(outs, 0)


# ---------------------------------------------------------------------------------------
# Preprocessing (CLIP's transform on an RGB PIL image)
# ---------------------------------------------------------------------------------------

def resize_geometry(w, h, size):
    """torchvision Resize(size) on PIL: short side -> size, long side -> int(size*long/short)."""
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    return nw, nh


def preprocess(pil_img, size):
    """-> float32 np [3, size, size]: convert('RGB'), Resize(size, BICUBIC), CenterCrop,
    /255, normalize. (For RGB inputs, converting first is the same as CLIP's order.)"""
    from PIL import Image
    img = pil_img.convert("RGB")
    w, h = img.size
    nw, nh = resize_geometry(w, h, size)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - size) / 2.0))
    left = int(round((nw - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img, dtype=np.float32) / 255.0                    # (S, S, 3)
    a = (a - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def random_pixels(cfg, n, seed):
    """Normalized-pixel-like inputs: N(0,1) plus a smooth per-image pattern, float32."""
    rng = np.random.default_rng(seed)
    S = cfg.image_size
    yy, xx = np.meshgrid(np.linspace(-1, 1, S), np.linspace(-1, 1, S), indexing="ij")
    out = rng.standard_normal((n, 3, S, S))
    for i in range(n):
        f = rng.uniform(1, 4, size=3)
        for c in range(3):
            out[i, c] += np.sin(f[c] * np.pi * xx + c) * np.cos(f[c] * np.pi * yy)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mw = sub.add_parser("make-weights", help="write a random model: DIR/model.safetensors + config")
    mw.add_argument("--config", default="b32", choices=sorted(CONFIGS))
    mw.add_argument("--seed", type=int, default=0)
    mw.add_argument("--naming", default="openai", choices=["openai", "hf"])
    mw.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    mw.add_argument("--gelu", default=None, choices=["quick", "erf"],
                    help="activation (default: the config's)")
    mw.add_argument("--text", action="store_true",
                    help="also the text tower of TEXT_CONFIGS[config] (same activation)")
    mw.add_argument("--out", required=True)
    em = sub.add_parser("embed", help="reference embeddings of preprocessed pixels")
    em.add_argument("--weights", required=True, help="DIR with model.safetensors, or the file")
    em.add_argument("--pixels", required=True, help=".npy float32 [n,3,S,S]")
    em.add_argument("--out", required=True, help=".npy float32 [n,E]")
    em.add_argument("--device", default="cpu")
    em.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "fp64"])
    a = ap.parse_args(argv)

    if a.cmd == "make-weights":
        cfg = CONFIGS[a.config]
        if a.gelu:
            cfg = with_gelu(cfg, a.gelu == "quick")
        t = random_weights(cfg, a.seed)
        text = None
        if a.text:
            tcfg = dataclasses.replace(TEXT_CONFIGS[a.config], quick_gelu=cfg.quick_gelu)
            text = (tcfg, random_text_weights(tcfg, a.seed))
        write_model(a.out, cfg, t, a.naming, a.dtype, text=text)
        print(f"wrote {a.out}/model.safetensors ({a.naming}, {a.dtype}, {cfg}"
              f"{', ' + str(text[0]) if text else ''})")
        return 0
    cfg, t = read_model(a.weights)
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
          "fp64": torch.float64}[a.dtype]
    px = np.load(a.pixels).astype(np.float32)
    out = embed(cfg, t, px, dt, a.device)
    np.save(a.out, out.astype(np.float32))
    print(f"embedded {len(px)} images with {cfg} on {a.device} {a.dtype} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
