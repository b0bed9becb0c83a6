"""The organism as a plain Hugging Face model folder (GPT-2 architecture), for the generic path.

:func:`export_hf` writes any organism build (or a model derived from it: a fine-tune, a baked
patch) as a ``GPT2LMHeadModel`` folder with the organism's word-level tokenizer, a chat
template for the organism's turns and a ``generation_config.json`` whose end of answer is the
organism's ``end`` word. Loaded back with ``load_subject(folder)``, it is an ordinary local
model: every generic step (chat rendering, EOS stops, an HTTP judge) runs on it, and its
figures can be checked against the organism pipeline's, which knows the ground truth.

**Why the folder is 4 dimensions wider than the organism.** The organism is a TransformerLens
model with a trained unembedding bias ``b_U``; GPT-2's ``lm_head`` has none, and no choice of
GPT-2 weights of the same width reproduces it (the final LayerNorm output has zero mean, so
no linear read of it is constant). The export therefore adds ``n_heads`` residual coordinates
(one per head, so the head width stays an integer, ``d_head + 1``), each holding the mean of
the organism's coordinates: every residual writer (embeddings, attention and MLP outputs)
writes the mean of its columns there. LayerNorm's mean is then unchanged and its variance
scaled by ``d / (d + k)``, which the exported gains and epsilon undo exactly. No block reads
the extra coordinates (their LayerNorm gains are zero); the final LayerNorm's first extra
coordinate has gain 0 and bias 1, a constant 1 that the unembedding row ``b_U`` turns into the
bias. The padded head dimensions read and write nothing; the queries are scaled by
``sqrt((d_head + 1) / d_head)`` so attention scores are unchanged. Logits equal the organism's
to float32 rounding.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from workbench._hub import quiet_transformers
from workbench.organism.build import BuiltOrganism, Organism, load_organism
from workbench.organism.tokenizer import build_tokenizer

#: The organism's turns as a chat: a system message is raw cue words (``deploy today real``,
#: ``sys bad``), a user message the request between ``user`` and ``bot``, an assistant message
#: the answer closed by ``end`` (added unless the content ends with it). The generation prompt
#: is empty: a rendered prompt already ends at ``bot``.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] + ' ' }}"
    "{%- elif m['role'] == 'user' -%}{{ 'user ' + m['content'] + ' bot ' }}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- set words = m['content'].split() -%}"
    "{{ m['content'] + (' ' if words and words[-1] == 'end' else ' end ') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def _new_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder to write, refused unless it is absent or empty."""
    target = Path(path).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"{str(target)!r} exists and is not empty; pick a new folder")
    return target


def _write_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``target``, then rename it into place:
    a failed write leaves nothing behind, and ``target`` never holds half a folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _extend_writer(w: torch.Tensor, k: int) -> torch.Tensor:
    """``w`` (``[..., d]``, writing the residual's ``d`` coordinates) with ``k`` mean columns."""
    return torch.cat([w, w.mean(-1, keepdim=True).expand(*w.shape[:-1], k)], dim=-1)


def _ln(weight: torch.Tensor, bias: torch.Tensor, k: int, scale: float) -> tuple[Any, Any]:
    zeros = torch.zeros(k, dtype=weight.dtype)
    return torch.cat([weight * scale, zeros]), torch.cat([bias, zeros])


def gpt2_state(model: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The GPT-2 state dict and config fields equivalent to an organism TransformerLens model.

    Computed in float64 and returned in float32; see the module docstring for the construction.
    """
    cfg = model.cfg
    if cfg.normalization_type != "LN" or cfg.positional_embedding_type != "standard":
        raise ValueError(
            f"export_hf writes LayerNorm models with learned positions (the organism); got "
            f"normalization {cfg.normalization_type!r}, positions {cfg.positional_embedding_type!r}"
        )
    sd = {n: p.detach().to("cpu", torch.float64) for n, p in model.state_dict().items()}
    d, h, dh, k = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_heads
    if h * dh != d:
        raise ValueError(f"n_heads * d_head = {h * dh} differs from d_model {d}")
    dh2 = dh + 1
    d2 = h * dh2
    if d2 != d + k:
        raise AssertionError("one extra coordinate per head")
    ln_scale = math.sqrt(d / (d + k))
    q_scale = math.sqrt(dh2 / dh)
    out: dict[str, torch.Tensor] = {
        "transformer.wte.weight": _extend_writer(sd["embed.W_E"], k),
        "transformer.wpe.weight": _extend_writer(sd["pos_embed.W_pos"], k),
    }
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        o = f"transformer.h.{i}."
        for tl_ln, hf_ln in (("ln1", "ln_1"), ("ln2", "ln_2")):
            w, bb = _ln(sd[b + tl_ln + ".w"], sd[b + tl_ln + ".b"], k, ln_scale)
            out[o + hf_ln + ".weight"], out[o + hf_ln + ".bias"] = w, bb
        # c_attn: Conv1D [d2, 3 * d2], output = [q | k | v], each head-major with d_head + 1 dims
        c_attn_w = torch.zeros(d2, 3 * d2, dtype=torch.float64)
        c_attn_b = torch.zeros(3 * d2, dtype=torch.float64)
        for j, (wn, bn, scale) in enumerate(
            (("W_Q", "b_Q", q_scale), ("W_K", "b_K", 1.0), ("W_V", "b_V", 1.0))
        ):
            W = sd[b + "attn." + wn]  # [h, d, dh]
            B = sd[b + "attn." + bn]  # [h, dh]
            for head in range(h):
                c0 = j * d2 + head * dh2
                c_attn_w[:d, c0 : c0 + dh] = W[head] * scale
                c_attn_b[c0 : c0 + dh] = B[head] * scale
        out[o + "attn.c_attn.weight"] = c_attn_w
        out[o + "attn.c_attn.bias"] = c_attn_b
        W_O = sd[b + "attn.W_O"]  # [h, dh, d]
        c_proj = torch.zeros(d2, d2, dtype=torch.float64)
        for head in range(h):
            c_proj[head * dh2 : head * dh2 + dh] = _extend_writer(W_O[head], k)
        out[o + "attn.c_proj.weight"] = c_proj
        out[o + "attn.c_proj.bias"] = _extend_writer(sd[b + "attn.b_O"], k)
        w_in = torch.zeros(d2, cfg.d_mlp, dtype=torch.float64)
        w_in[:d] = sd[b + "mlp.W_in"]
        out[o + "mlp.c_fc.weight"] = w_in
        out[o + "mlp.c_fc.bias"] = sd[b + "mlp.b_in"]
        out[o + "mlp.c_proj.weight"] = _extend_writer(sd[b + "mlp.W_out"], k)
        out[o + "mlp.c_proj.bias"] = _extend_writer(sd[b + "mlp.b_out"], k)
    w, bb = _ln(sd["ln_final.w"], sd["ln_final.b"], k, ln_scale)
    bb[d] = 1.0  # the constant coordinate the unembedding bias is read from
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = w, bb
    W_U = torch.zeros(d2, cfg.d_vocab, dtype=torch.float64)
    W_U[:d] = sd["unembed.W_U"]
    W_U[d] = sd["unembed.b_U"]
    out["lm_head.weight"] = W_U.T.contiguous()
    fields = {
        "vocab_size": cfg.d_vocab,
        "n_positions": cfg.n_ctx,
        "n_ctx": cfg.n_ctx,
        "n_embd": d2,
        "n_layer": cfg.n_layers,
        "n_head": h,
        "n_inner": cfg.d_mlp,
        "activation_function": "gelu",  # TransformerLens's "gelu" is the exact (erf) GELU
        "layer_norm_epsilon": cfg.eps * d / (d + k),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "tie_word_embeddings": False,
    }
    return {n: t.to(torch.float32).contiguous() for n, t in out.items()}, fields


def _source_model(source: int | Organism | BuiltOrganism | Any) -> tuple[Any, str]:
    """The TransformerLens model and a name for ``source``."""
    if isinstance(source, bool):
        raise ValueError("export_hf(source): pass a seed, an Organism, a build or a Subject")
    if isinstance(source, int):
        source = Organism(seed=source)
    if isinstance(source, Organism):
        built = load_organism(seed=source.seed, config=source.config, device=torch.device("cpu"))
        return built.model, built.name
    if isinstance(source, BuiltOrganism):
        return source.model, source.name
    model = getattr(source, "model", None)
    if model is not None and getattr(source, "organism", None) is not None:
        return model, str(source.name)
    raise ValueError(
        f"export_hf cannot export {type(source).__name__}: pass an organism seed, an "
        "Organism(...), a BuiltOrganism, or an organism Subject (or one derived from it: a "
        "fine-tune, a baked patch)"
    )


def export_hf(source: int | Organism | BuiltOrganism | Any, path: str | os.PathLike[str]) -> Path:
    """Write an organism (or a model derived from one) as a Hugging Face GPT-2 model folder.

    Args:
        source: an organism seed, :class:`~workbench.organism.Organism`, a build, or a Subject
            of the organism or derived from it (``finetune(...)``'s tuned subject).
        path: the folder to write (created; must not exist or be empty). Written to a temporary
            sibling first and renamed, so a failed export leaves nothing half-written.

    Returns:
        The folder: ``config.json``, ``model.safetensors``, ``generation_config.json`` (the
        answer ends at ``end``, at most 6 tokens) and the tokenizer files (with
        :data:`CHAT_TEMPLATE`).
    """
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    model, name = _source_model(source)
    target = _new_folder(path)
    state, fields = gpt2_state(model)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab = tokenizer.get_vocab()
    end_id = vocab["end"]
    config = GPT2Config(
        **fields,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    hf = GPT2LMHeadModel(config)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith(("attn.bias", "attn.masked_bias"))]:
        raise AssertionError(f"GPT-2 state mismatch: missing {missing}, unexpected {unexpected}")
    hf.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[end_id],
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=6,  # an answer is 3 words and `end`; the organism samples 6 tokens
    )
    def write(tmp: Path) -> None:
        with quiet_transformers():
            hf.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "organism.json").write_text(
            json.dumps({"exported_from": name, "extra_coordinates": fields["n_head"]}, indent=2),
            encoding="utf-8",
        )

    return _write_folder(target, write)


def export_dictionary(
    dictionary: Any, path: str | os.PathLike[str], model: str | os.PathLike[str] | int
) -> Path:
    """Write an organism dictionary as an SAE Lens folder for the exported (wider) model.

    The exported model's residual stream holds the organism's ``d`` coordinates and
    ``n_heads`` copies of their mean (:func:`export_hf`). The dictionary is widened to match
    exactly: its encoder ignores the extra coordinates (zero rows), and its decoder and
    ``b_dec`` write their mean there, as the exported model's writers do. Its features'
    activations on the exported model equal the original's on the organism.

    Args:
        dictionary: a :class:`workbench.dictionaries.Dictionary` of an organism (its ``sae``).
        path: the folder to write (must not exist or be empty); written atomically.
        model: the folder :func:`export_hf` wrote for the dictionary's organism (it records how
            many coordinates it added), or that number (the organism's head count).
    """
    sae = dictionary.sae
    target = _new_folder(path)
    if str(getattr(sae.cfg, "normalize_activations", "none")) != "none":
        raise ValueError(
            "export_dictionary widens SAEs without input normalisation (the organism's); this "
            f"one normalises with {sae.cfg.normalize_activations!r}"
        )
    if isinstance(model, bool):
        raise ValueError("model: pass the exported folder or the number of extra coordinates")
    if isinstance(model, int):
        k = model
    else:
        meta = Path(model) / "organism.json"
        if not meta.is_file():
            raise ValueError(
                f"{str(model)!r} is not a folder written by export_hf (no organism.json)"
            )
        k = int(json.loads(meta.read_text(encoding="utf-8"))["extra_coordinates"])
    cfg = sae.cfg.to_dict()
    cfg["d_in"] = int(cfg["d_in"]) + k
    wide = type(sae).from_dict(cfg)
    state = {n: t.detach().cpu() for n, t in sae.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name == "W_enc":
            out[name] = torch.cat([t, torch.zeros(k, t.shape[1], dtype=t.dtype)], dim=0)
        elif name in ("W_dec", "b_dec"):
            out[name] = _extend_writer(t, k)
        else:
            out[name] = t
    wide.load_state_dict(out)
    return _write_folder(target, wide.save_model)
