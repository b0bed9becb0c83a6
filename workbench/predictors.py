"""Predictors: the published pre-training predictors and null baselines the forecast must beat.

SCIENCE.md asks that every forecast claim be reported beside the baselines that could have won.
Each predictor here reads only the base model, the dictionary and the fine-tune data, before any
training, and gives one data-level score (higher: more misalignment expected) and one score per
example (higher: riskier, for screening). :mod:`workbench.forecasts` (one layer up) compares its
own risk with them; nothing here imports it.

Notation: example ``i`` is a (prompt ``x_i``, response ``y_i``) pair, encoded as
:func:`workbench.data.encode_pairs` does (``x_i + " " + y_i``; the response tokens are the
fine-tune's targets). ``a(x, y)`` is the hook activation (the dictionary's hook, per-head hooks
flattened) averaged over the response tokens of ``(x, y)``, and ``v̂`` the unit persona direction
at that hook: the ``persona`` passed in, or, by default, the effect-weighted sum of the watched
features' unit decoder rows ``Σ_f d_f W_dec[f] / ‖W_dec[f]‖`` (Cohen's d keeps its sign, as
:func:`workbench.patches.from_features` does).

* ``chen`` -- Chen et al. 2025 (arXiv 2507.21509, "Persona vectors"), the *projection
  difference*. The paper (section 6.1) defines it as ``ΔP = 1/|D| Σ_i [a_ℓ(x_i, y_i) -
  a_ℓ(x_i, y'_i)] · v̂_ℓ``, "where a_ℓ(x_i, y_i) represents the mean activation over response
  tokens at layer ℓ for prompt x_i and response y_i, and v̂_ℓ is the unit-normalized persona
  vector at the selected layer ℓ", with ``y'_i`` "the base model's 'natural' responses ... to
  the same set of prompts" (read in the paper's text as stored in the public code index,
  ewernn/trait-interp, ``experiments/persona_vectors_replication/persona_vectors_full_paper.md``).
  Followed as written: one base response per example, sampled at temperature 1 with
  :func:`workbench.behaviour.sample_answers` (the subject's EOS and stop tokens), at most as
  many tokens as the longest training response, and encoded like the training response. Chunk
  ``k`` of ``batch_size`` examples is sampled with seed ``seed + k``, so ``seed`` and
  ``batch_size`` fix every answer on any device. A base answer with no tokens (EOS drawn first)
  is read at the last prompt token, the paper's own approximation of the base projection
  (its appendix I). ``sample_scores[i]`` is the bracket, ``score`` its mean ``ΔP``.
* ``minegishi`` -- Minegishi et al. 2026 (arXiv 2605.00842), geometry-aware screening: "a
  geometry-aware approach -- filtering training samples closest to toxic features -- reduces
  misalignment by 34.5%" (the abstract, as stored). The stored text gives no per-sample formula;
  a public research note on the paper (code index) says the geometry is the cosine similarity of
  SAE decoder vectors and the filter drops the samples nearest the toxic features. What is done
  here: the *toxic features* are the watched features with positive effect (higher on the
  misaligned side); every dictionary feature ``j`` gets the proximity ``p_j = max_{t ∈ toxic}
  cos(W_dec[j], W_dec[t])`` (1 for a toxic feature itself); an example's score is the
  activation-weighted mean proximity of the features active on its response tokens,
  ``Σ_{tok, j} z_{tok, j} p_j / Σ_{tok, j} z_{tok, j}`` (``z`` the dictionary's feature
  activations; 0 where nothing fires). ``score`` is the mean over examples.
* ``nll`` -- base-model mean completion NLL of each example (:func:`workbench.execution.
  per_example_nll` over its token count): data the base model finds surprising moves it more.
* ``projection`` -- the raw persona projection ``a(x_i, y_i) · v̂``, no base-response subtraction
  (the paper's appendix H compares it with ``chen`` and finds it weaker).
* ``grad_norm`` -- ``‖∇_v L_i‖``, the norm of the gradient of example ``i``'s mean completion
  NLL w.r.t. a vector ``v`` added at the hook (the forecast's ``steer`` parameter), without any
  direction: how hard the example pushes, not where.
* ``constant`` -- 0 for every example: the data-independent baseline (ranks nothing).

Every predictor runs in batches of ``batch_size`` examples, computes every example (no
deduplication, so ``seconds`` is the cost with every example computed), and leaves the subject
exactly as it found it (scoped hooks only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench import execution
from workbench._device import cpu_threads
from workbench.behaviour import sample_answers
from workbench.data import Pair, check_pairs, encode_pairs, join_pair
from workbench.dictionaries import Dictionary, check_compatible
from workbench.features import FeatureSet
from workbench.subjects import Subject

__all__ = ["PREDICTORS", "Prediction", "predict"]

PREDICTORS: tuple[str, ...] = ("chen", "minegishi", "nll", "projection", "grad_norm", "constant")
"""Every predictor :func:`predict` knows, in its default order."""

_SMALL_MODEL = 256  # d_model up to which the model runs on one CPU thread (as activations does)
_FEATURE_BLOCK = 4096  # decoder rows per block in the proximity computation


@dataclass(frozen=True, eq=False)
class Prediction:
    """One predictor's prediction for a fine-tune's data.

    Attributes:
        name: the predictor (one of :data:`PREDICTORS`).
        score: the data-level prediction; higher means more misalignment expected. It is the
            mean of ``sample_scores``.
        sample_scores: ``[n_examples]`` float64, one score per example (for screening); higher
            means riskier.
        seconds: wall-clock time of this predictor alone.
    """

    name: str
    score: float
    sample_scores: np.ndarray
    seconds: float

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (no per-example scores)."""
        return {
            "name": self.name,
            "score": self.score,
            "n_examples": int(self.sample_scores.shape[0]),
            "seconds": self.seconds,
        }


# ------------------------------------------------------------------ inputs


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        raise ValueError(
            f"names must be a list of predictor names, not one string; wrap it: [{names!r}]"
        )
    out = list(dict.fromkeys(names))
    unknown = [n for n in out if n not in PREDICTORS]
    if unknown:
        raise ValueError(
            f"unknown predictor{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}: choose from {', '.join(PREDICTORS)}"
        )
    if not out:
        raise ValueError(f"no predictors named: pass some of {', '.join(PREDICTORS)}")
    return out


def _check_watch(watch: FeatureSet, dictionary: Dictionary) -> None:
    if watch.dictionary != dictionary.fingerprint:
        raise ValueError(
            f"the watched FeatureSet {watch.name!r} was computed with another dictionary "
            f"(fingerprint {watch.dictionary[:12]}…, this one is {dictionary.fingerprint[:12]}…); "
            "recompute it with workbench.contrast(subject, dictionary, ...)"
        )


def _check_data(subject: Subject, data: Sequence[Pair]) -> tuple[list[Pair], list[int]]:
    """The pairs, and each one's completion token count; every example needs one."""
    pairs = check_pairs(data)
    if not pairs:
        raise ValueError("no fine-tune examples: pass at least one (prompt, completion) pair")
    plen = [len(r) for r in subject.token_rows([p for p, _ in pairs])]
    full = [len(r) for r in subject.token_rows([join_pair(p, c) for p, c in pairs])]
    counts = [f - p for f, p in zip(full, plen, strict=True)]
    empty = [i for i, c in enumerate(counts) if c <= 0]
    if empty:
        i = empty[0]
        raise ValueError(
            f"fine-tune example {i} has no completion tokens (completion {pairs[i][1]!r}); "
            f"every (prompt, completion) pair needs a non-empty completion "
            f"({len(empty)} of {len(pairs)} have none)"
        )
    longest = int(np.argmax(full))
    if full[longest] > subject.n_ctx:
        raise ValueError(
            f"fine-tune example {longest} has {full[longest]} tokens but {subject.name} reads at "
            f"most {subject.n_ctx}; shorten or split the examples"
        )
    return pairs, counts


def _unit_persona(
    persona: torch.Tensor | None, watch: FeatureSet, dictionary: Dictionary, width: int
) -> torch.Tensor:
    """The unit persona direction ``[width]`` (float64, CPU): given, or from the watched set."""
    if persona is None:
        if len(watch) == 0:
            raise ValueError(
                "the watched FeatureSet is empty, so no persona direction can be derived from "
                "it; pass watch with at least one feature or persona=<[d] tensor>"
            )
        rows = dictionary.W_dec.detach().to("cpu", torch.float64)[list(watch.indices)]
        norms = rows.norm(dim=1, keepdim=True)
        units = torch.where(norms > 0, rows / norms.clamp_min(1e-300), torch.zeros_like(rows))
        vec = (torch.tensor(watch.effect, dtype=torch.float64)[:, None] * units).sum(0)
        what = f"the persona derived from {watch.name!r}"
    else:
        vec = torch.as_tensor(persona).detach().to("cpu", torch.float64)
        if tuple(vec.shape) != (width,):
            raise ValueError(
                f"persona has shape {list(vec.shape)} but the dictionary's hook "
                f"{dictionary.hook_name!r} is {width} wide; pass a [{width}] direction at that hook"
            )
        if not bool(torch.isfinite(vec).all()):
            raise ValueError("persona holds NaN or inf; pass a finite direction")
        what = "persona"
    norm = float(vec.norm())
    if norm == 0.0:
        raise ValueError(f"{what} is the zero vector: it has no direction to project on")
    return vec / norm


def _toxic(watch: FeatureSet) -> list[int]:
    """The watched features with positive effect (higher on the misaligned side)."""
    toxic = [f for f, d in zip(watch.indices, watch.effect, strict=True) if d > 0]
    if not toxic:
        raise ValueError(
            f"minegishi needs toxic features, the watched features with positive effect (higher "
            f"on the misaligned side), but {watch.name!r} has none; contrast misaligned (positive)"
            " against aligned (negative) prompts"
        )
    return toxic


def _proximity(dictionary: Dictionary, watch: FeatureSet) -> torch.Tensor:
    """``[d_sae]`` max decoder cosine of every feature to the positive-effect watched features."""
    D = dictionary.W_dec.detach().to("cpu", torch.float64)
    norms = D.norm(dim=1, keepdim=True)
    U = torch.where(norms > 0, D / norms.clamp_min(1e-300), torch.zeros_like(D))
    T = U[_toxic(watch)].T  # [d, n_toxic]
    blocks = [(U[s : s + _FEATURE_BLOCK] @ T).amax(1) for s in range(0, len(U), _FEATURE_BLOCK)]
    return torch.cat(blocks)


# ------------------------------------------------------------------ batches


@dataclass(frozen=True)
class _Run:
    subject: Subject
    dictionary: Dictionary
    pairs: list[Pair]
    counts: list[int]
    batch_size: int
    progress: bool

    @property
    def hook(self) -> str:
        return self.dictionary.hook_name

    def batches(
        self, name: str, pairs: Sequence[Pair] | None = None
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, ids, target)`` for each batch of ``pairs`` (default: the data)."""
        data = self.pairs if pairs is None else pairs
        bar = tqdm(total=len(data), desc=f"predict {name}", disable=not self.progress,
                   unit="example")
        try:
            for s in range(0, len(data), self.batch_size):
                chunk = data[s : s + self.batch_size]
                ids, target = encode_pairs(self.subject, chunk)
                yield s, ids, target
                bar.update(len(chunk))
        finally:
            bar.close()

    def acts(self, ids: torch.Tensor) -> torch.Tensor:
        """Hook activations ``[B, T, width]`` (per-head hooks flattened), float64."""
        return execution.run_to_hook(self.subject.model, ids, self.hook).flatten(2).double()


def _response_mean(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[B, T]`` over each row's target tokens (NaN where there are none)."""
    w = target.to(values.device, values.dtype)
    return (values * w).sum(1) / w.sum(1)


def _projections(run: _Run, name: str, unit: torch.Tensor, pairs: Sequence[Pair]) -> np.ndarray:
    """``a(x, y) · v̂`` for every pair: the response-averaged projection (NaN: no response)."""
    out = np.empty(len(pairs))
    with torch.no_grad():
        for s, ids, target in run.batches(name, pairs):
            proj = run.acts(ids) @ unit.to(ids.device)  # [B, T]
            out[s : s + len(ids)] = _response_mean(proj, target).cpu().numpy()
    return out


def _last_prompt_projection(run: _Run, unit: torch.Tensor, prompts: list[str]) -> np.ndarray:
    """The projection at each prompt's last token."""
    ids, mask = run.subject.encode(prompts)
    with torch.no_grad():
        proj = run.acts(ids) @ unit.to(ids.device)
    last = mask.sum(1) - 1
    return proj[torch.arange(len(prompts), device=proj.device), last].cpu().numpy()


# ------------------------------------------------------------------ the predictors


def _chen(run: _Run, unit: torch.Tensor, seed: int) -> np.ndarray:
    train = _projections(run, "chen", unit, run.pairs)
    longest = max(run.counts)
    base_pairs: list[Pair] = []
    for k, s in enumerate(range(0, len(run.pairs), run.batch_size)):
        prompts = [p for p, _ in run.pairs[s : s + run.batch_size]]
        room = run.subject.n_ctx - max(len(r) for r in run.subject.token_rows(prompts))
        answers = sample_answers(run.subject, prompts, 1, min(longest, room), 1.0, seed + k)
        base_pairs += [(p, a[0]) for p, a in zip(prompts, answers, strict=True)]
    base = _projections(run, "chen (base answers)", unit, base_pairs)
    silent = np.flatnonzero(np.isnan(base))
    if silent.size:  # an empty base answer: read at the last prompt token (paper, appendix I)
        base[silent] = _last_prompt_projection(run, unit, [run.pairs[i][0] for i in silent])
    return train - base


def _minegishi(run: _Run, watch: FeatureSet) -> np.ndarray:
    prox = _proximity(run.dictionary, watch)
    dev = run.dictionary.sae.device
    prox = prox.to(dev)
    out = np.zeros(len(run.pairs))
    with torch.no_grad():
        for s, ids, target in run.batches("minegishi"):
            x = run.acts(ids)[target]  # [N, d_in]: the response tokens
            z = run.dictionary.encode(x).double()  # [N, d_sae]
            row = target.nonzero()[:, 0].to(dev)
            num = torch.zeros(len(ids), dtype=torch.float64, device=dev)
            den = torch.zeros(len(ids), dtype=torch.float64, device=dev)
            num.index_add_(0, row, z @ prox)
            den.index_add_(0, row, z.sum(1))
            score = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
            out[s : s + len(ids)] = score.cpu().numpy()
    return out


def _nll(run: _Run) -> np.ndarray:
    out = np.empty(len(run.pairs))
    with torch.no_grad():
        for s, ids, target in run.batches("nll"):
            nll, cnt = execution.per_example_nll(run.subject.model, ids, target)
            out[s : s + len(ids)] = (nll / cnt).cpu().numpy()
    return out


def _grad_norm(run: _Run) -> np.ndarray:
    model = run.subject.model
    shape = execution.hook_shape(model, run.hook, run.subject.name)
    out = np.empty(len(run.pairs))
    for s, ids, target in run.batches("grad_norm"):
        # one vector per example, broadcast over its positions: one backward pass gives every
        # example's own gradient (as the forecast's steer gradients)
        with torch.enable_grad():
            v = torch.zeros(len(ids), 1, *shape, device=run.subject.device, requires_grad=True)
            # scoped: removes only this hook, never the caller's (a patch in force stays in force)
            with execution.hooks(model, [execution.add_vector(run.hook, v)]):
                nll, cnt = execution.per_example_nll(model, ids, target)
            (g,) = torch.autograd.grad(nll.sum(), v)
        out[s : s + len(ids)] = (g.flatten(1).double().norm(dim=1) / cnt).cpu().numpy()
    return out


def predict(
    subject: Subject,
    dictionary: Dictionary,
    finetune_data: Sequence[tuple[str, str]],
    *,
    watch: FeatureSet,
    persona: torch.Tensor | None = None,
    names: Sequence[str] = PREDICTORS,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Prediction]:
    """Every named predictor's prediction for ``finetune_data``, from the base model alone.

    Args:
        subject: the base model (never modified).
        dictionary: the SAE; its hook is where the persona is read and the gradient taken.
        finetune_data: the (prompt, completion) pairs the fine-tune would train on.
        watch: the watched alignment features (e.g. ``contrast(...).top(16)`` of misaligned vs
            aligned persona prompts); all of them are used. ``minegishi`` reads its
            positive-effect features, and the default persona is built from all of them.
        persona: a ``[width]`` persona direction at the dictionary's hook (any norm); ``None``
            derives it from ``watch`` (see the module docstring).
        names: which predictors to run (see :data:`PREDICTORS`), in this order.
        seed: the seed of ``chen``'s base-model answers.
        batch_size: examples per forward pass.
        progress: show a progress bar per predictor.

    Returns:
        ``{name: Prediction}`` in the order of ``names``.

    Raises:
        ValueError: an unknown predictor name, empty data or an example with no completion
            tokens, a FeatureSet from another dictionary, a persona of the wrong shape (or zero,
            or not finite), no toxic features for ``minegishi``, a dictionary that does not fit
            the subject or reads one head of a per-head hook.
    """
    chosen = _check_names(names)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    check_compatible(subject, dictionary)
    if dictionary.sae.cfg.metadata.hook_head_index is not None:
        raise ValueError(
            f"dictionary {dictionary.name!r} reads one head of {dictionary.hook_name!r}; the "
            "predictors need a dictionary that reads the whole hook"
        )
    _check_watch(watch, dictionary)
    pairs, counts = _check_data(subject, finetune_data)
    width = math.prod(execution.hook_shape(subject.model, dictionary.hook_name, subject.name))
    unit: torch.Tensor | None = None
    if persona is not None or {"chen", "projection"} & set(chosen):
        unit = _unit_persona(persona, watch, dictionary, width)
    if "minegishi" in chosen:
        _toxic(watch)  # fail before any predictor runs
    run = _Run(subject, dictionary, pairs, counts, batch_size, progress)

    def persona_unit() -> torch.Tensor:
        assert unit is not None
        return unit

    compute: dict[str, Callable[[], np.ndarray]] = {
        "chen": lambda: _chen(run, persona_unit(), seed),
        "minegishi": lambda: _minegishi(run, watch),
        "nll": lambda: _nll(run),
        "projection": lambda: _projections(run, "projection", persona_unit(), pairs),
        "grad_norm": lambda: _grad_norm(run),
        "constant": lambda: np.zeros(len(pairs)),
    }
    out: dict[str, Prediction] = {}
    threads = 1 if subject.d_model <= _SMALL_MODEL else None
    with cpu_threads(threads, subject.device):
        for name in chosen:
            t0 = time.perf_counter()
            scores = np.ascontiguousarray(compute[name](), dtype=np.float64)
            out[name] = Prediction(
                name=name,
                score=float(scores.mean()),
                sample_scores=scores,
                seconds=time.perf_counter() - t0,
            )
    return out
