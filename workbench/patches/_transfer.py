"""Transfer: affine maps between two models' residual streams, and patches carried by them.

:func:`fit_map` fits a :class:`ResidualMap` by ridge least squares on token-aligned activations,
both ways at once: the forward map ``y ≈ x @ weight + bias`` (source ``x`` to target ``y``) and
the reverse map ``x ≈ y @ reverse_weight + reverse_bias`` (:func:`_fit_affine` is the same fit
on in-memory matrices). :func:`map_direction` carries a
:class:`~workbench.patches._directions.Direction` through it and :func:`transfer` does so for a
whole patch from :mod:`~workbench.patches._interventions` (the idea of Oozeer et al. 2025,
arXiv 2503.04429).

A direction is carried one of two ways, by what the patch does with it (:func:`patch_side`):

* **write side** (:class:`Steer`, which *adds* the vector): a change ``δ`` in source space is
  ``δ @ weight`` in target space, the push-forward.
* **read side** (:class:`Ablate`, :class:`Orthogonalize`, which *project out* the component
  ``x . r``): the target needs the functional ``r_t`` that reads the same quantity,
  ``y . r_t + reverse_bias . r ≈ x . r``. That is the pull-back ``reverse_weight @ r``: the
  reverse regression is the best linear predictor of ``x`` (hence of ``x . r``) from ``y``, and
  is well-posed when the widths differ, where ``pinv(weight) @ r`` is not. For an exact
  invertible map ``y = x @ A + c`` both sides are exact: ``δ @ A``, and ``A⁻¹ @ r`` with
  ``(y - c) . A⁻¹ r = x . r``.

The two agree only when ``weight`` is orthogonal; for any other map the push-forward reads the
wrong quantity (``(y - c) . (r @ A) = x A Aᵀ r``, not ``x . r``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import torch

from workbench._device import cpu_threads
from workbench.activations import stream
from workbench.fingerprint import texts_sha256
from workbench.patches._directions import Direction
from workbench.patches._interventions import (
    Ablate,
    AblateUpdate,
    Orthogonalize,
    P,
    Patch,
    Steer,
    _hook_width,
)
from workbench.subjects import Subject

_SMALL_MODEL = 256  # d_model up to which models run on one CPU thread (as in activations)

Side = Literal["write", "read"]
"""How a direction is carried through a map: pushed forward (``"write"``) or pulled back."""
SIDES: tuple[Side, ...] = get_args(Side)


@dataclass(frozen=True, eq=False)
class ResidualMap:
    """Affine maps between two subjects' activations: ``y ≈ x @ weight + bias`` and back.

    Both are ridge least-squares fits on the same token pairs: ``weight``/``bias`` regress the
    target on the source (what a write-side patch is carried by), ``reverse_weight``/
    ``reverse_bias`` the source on the target (what a read-side patch is carried by; see
    :func:`map_direction`). The reverse map is not ``weight``'s inverse unless the relation is
    exact: it is the best linear predictor of the source from the target.

    Attributes:
        weight: ``[d_src, d_tgt]`` float64, CPU.
        bias: ``[d_tgt]`` float64, CPU.
        reverse_weight: ``[d_tgt, d_src]`` float64, CPU.
        reverse_bias: ``[d_src]`` float64, CPU.
        hook_name: the source hook.
        target_hook_name: the target hook.
        source, target: the subjects' fingerprints.
        r2: ``1 - SSE / SST`` of the forward map over all target dimensions; on held-out
            prompts when ``held_out`` (the fit then used the other prompts), else in-sample.
        reverse_r2: the same score for the reverse map, over all source dimensions.
        held_out: whether ``r2`` and ``reverse_r2`` are held-out scores.
        n_tokens: tokens the returned map was fitted on (``<bos>`` left out).
        ridge: the ridge strength, relative to the mean per-dimension variance of the regressor
            (the source for the forward map, the target for the reverse one).
        prompts_sha256: :func:`workbench.fingerprint.texts_sha256` of the prompts.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    reverse_weight: torch.Tensor
    reverse_bias: torch.Tensor
    hook_name: str
    target_hook_name: str
    source: str
    target: str
    r2: float
    reverse_r2: float
    held_out: bool
    n_tokens: int
    ridge: float
    prompts_sha256: str = ""

    def __post_init__(self) -> None:
        d_src, d_tgt = self.weight.shape
        shapes = [list(t.shape) for t in (self.bias, self.reverse_weight, self.reverse_bias)]
        if shapes != [[d_tgt], [d_tgt, d_src], [d_src]]:
            raise ValueError(
                f"weight is {list(self.weight.shape)}, so bias, reverse_weight and reverse_bias "
                f"must be {[[d_tgt], [d_tgt, d_src], [d_src]]} (got {shapes})"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Map source activations ``[..., d_src]`` to target space (float64, CPU)."""
        return x.detach().to("cpu", torch.float64) @ self.weight + self.bias

    def reverse(self, y: torch.Tensor) -> torch.Tensor:
        """Predict source activations ``[..., d_src]`` from target ones (float64, CPU)."""
        return y.detach().to("cpu", torch.float64) @ self.reverse_weight + self.reverse_bias


@dataclass
class _Moments:
    """Running sums for an affine least-squares fit, both ways (float64, CPU; memory ``d²``)."""

    d_x: int
    d_y: int
    n: int = 0
    sx: torch.Tensor = field(init=False)
    sy: torch.Tensor = field(init=False)
    sxx: torch.Tensor = field(init=False)
    sxy: torch.Tensor = field(init=False)
    syy: torch.Tensor = field(init=False)  # Σ yᵀy, for the reverse fit (its trace: Σ‖y‖²)

    def __post_init__(self) -> None:
        f64 = torch.float64
        self.sx = torch.zeros(self.d_x, dtype=f64)
        self.sy = torch.zeros(self.d_y, dtype=f64)
        self.sxx = torch.zeros(self.d_x, self.d_x, dtype=f64)
        self.sxy = torch.zeros(self.d_x, self.d_y, dtype=f64)
        self.syy = torch.zeros(self.d_y, self.d_y, dtype=f64)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.double(), y.double()
        self.n += int(x.shape[0])
        self.sx += x.sum(0).cpu()
        self.sy += y.sum(0).cpu()
        self.sxx += (x.T @ x).cpu()
        self.sxy += (x.T @ y).cpu()
        self.syy += (y.T @ y).cpu()

    def __add__(self, other: _Moments) -> _Moments:
        out = _Moments(self.d_x, self.d_y, self.n + other.n)
        out.sx, out.sy = self.sx + other.sx, self.sy + other.sy
        out.sxx, out.sxy = self.sxx + other.sxx, self.sxy + other.sxy
        out.syy = self.syy + other.syy
        return out

    def swapped(self) -> _Moments:
        """The same sums with the roles of x and y exchanged: the reverse fit's moments."""
        out = _Moments(self.d_y, self.d_x, self.n)
        out.sx, out.sy = self.sy, self.sx
        out.sxx, out.sxy, out.syy = self.syy, self.sxy.T, self.sxx
        return out

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Ridge least squares on centred moments: ``(W, b)``."""
        n = self.n
        mx, my = self.sx / n, self.sy / n
        cxx = self.sxx / n - torch.outer(mx, mx)
        cxy = self.sxy / n - torch.outer(mx, my)
        lam = ridge * float(cxx.diagonal().mean())
        a = cxx + (lam if lam > 0 else 0.0) * torch.eye(self.d_x, dtype=torch.float64)
        if lam > 0:
            w = torch.linalg.solve(a, cxy)
        else:
            w = torch.linalg.lstsq(a, cxy, driver="gelsd").solution
        return w, my - mx @ w

    def r2(self, w: torch.Tensor, b: torch.Tensor) -> float:
        """``1 - SSE / SST`` of ``y ≈ x W + b`` on these moments."""
        n = self.n
        syy = float(self.syy.trace())
        sse = (
            syy
            - 2 * (float((w * self.sxy).sum()) + float(b @ self.sy))
            + float((w * (self.sxx @ w)).sum())
            + 2 * float((self.sx @ w) @ b)
            + n * float(b @ b)
        )
        sst = syy - float(self.sy @ self.sy) / n
        return 1.0 - max(sse, 0.0) / sst if sst > 0 else float("nan")


def _fit_affine(
    x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Affine ridge least squares ``y ≈ x @ W + b``: ``(W [d_x, d_y], b [d_y], in-sample R²)``.

    Closed form on centred float64 moments, ``W = (C_xx + λ I)^-1 C_xy`` with
    ``λ = ridge * mean(diag C_xx)`` (scale-free); ``ridge=0`` is ordinary least squares (minimum
    norm where ``C_xx`` is singular). ``b = ȳ - x̄ W``. ``_fit_affine(y, x, ridge)`` is the
    reverse map a :class:`ResidualMap` carries.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need x [n, d_x] and y [n, d_y] (got {list(x.shape)}, {list(y.shape)})")
    if x.shape[0] < 2:
        raise ValueError("need at least two rows to fit an affine map")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0 (got {ridge})")
    m = _Moments(int(x.shape[1]), int(y.shape[1]))
    m.add(x, y)
    w, b = m.solve(ridge)
    return w, b, m.r2(w, b)


def _token_ends(subject: Subject, text: str) -> list[int]:
    """Per token of ``subject.token_rows([text])[0]``: the character offset its span ends at
    (-1 for a token with no span in the text, such as an added ``<bos>``)."""
    tok = subject.text_tokenizer
    try:
        enc = tok(text, add_special_tokens=True, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError) as err:
        raise ValueError(
            f"{subject.name}'s tokenizer gives no character offsets ({err}); aligning two "
            "tokenizers by character spans needs fast (Rust) tokenizers"
        ) from err
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    bos = tok.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):
        ids, offsets = [bos, *ids], [(0, 0), *offsets]
    while bos is not None and len(ids) > 1 and ids[0] == ids[1] == bos:
        ids, offsets = ids[1:], offsets[1:]
    if ids != subject.token_rows([text])[0]:
        raise AssertionError("offsets and token rows disagree")  # token_rows' own rules
    ends = [int(e) if int(e) > int(b) else -1 for b, e in offsets]
    seen: dict[int, int] = {}
    for e in ends:
        seen[e] = seen.get(e, 0) + 1
    return [e if e >= 0 and seen[e] == 1 else -1 for e in ends]  # an end two tokens share: none


def _span_aligned(
    source: Subject, target: Subject, texts: Sequence[str], src_keep: torch.Tensor,
    tgt_keep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the source and target tokens that end at the same character of each text.

    Two tokenizers split a text differently, but wherever both put a token boundary the two
    models have read exactly the same characters: those tokens are paired (each model's
    activation at the last token of the shared span), in order.
    """
    sel_src = torch.zeros_like(src_keep, dtype=torch.bool)
    sel_tgt = torch.zeros_like(tgt_keep, dtype=torch.bool)
    for b, text in enumerate(texts):
        ends_t = {
            e: p for p, e in enumerate(_token_ends(target, text))
            if e >= 0 and p < tgt_keep.shape[1] and bool(tgt_keep[b, p])
        }
        for p, e in enumerate(_token_ends(source, text)):
            if e >= 0 and e in ends_t and p < src_keep.shape[1] and bool(src_keep[b, p]):
                sel_src[b, p] = True
                sel_tgt[b, ends_t[e]] = True
    return sel_src, sel_tgt


def _token_pairs(
    source: Subject,
    target: Subject,
    prompts: Sequence[str],
    hooks: tuple[str, str],
    batch_size: int,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per batch: (first prompt index, prompt index per token, source acts, target acts).

    Subjects that tokenise a prompt identically pair every real token but ``<bos>``. Subjects
    with different tokenizers pair the tokens whose character spans end at the same place
    (:func:`_span_aligned`).
    """
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        got = []
        for subject, hook in zip((source, target), hooks, strict=True):
            (batch,) = stream(
                subject,
                hook,
                chunk,
                batch_size=len(chunk),
                skip_bos=True,
                progress=False,
                desc="",
            )
            got.append(batch)
        src, tgt = got
        if source.token_rows(chunk) == target.token_rows(chunk):
            n_src, n_tgt = src.keep.sum(1).cpu(), tgt.keep.sum(1).cpu()
            bad = (n_src != n_tgt).nonzero()
            if bad.numel():  # one tokenizer, yet the subjects encode a text differently
                i = int(bad[0, 0])
                raise ValueError(
                    f"prompt {start + i} is {int(n_src[i]) + 1} tokens for {source.name} but "
                    f"{int(n_tgt[i]) + 1} for {target.name}, with the same tokenizer: fit_map "
                    "needs token-aligned subjects"
                )
            rows = src.keep.nonzero()[:, 0].cpu() + start
            yield start, rows, src.acts[src.keep].flatten(1), tgt.acts[tgt.keep].flatten(1)
            continue
        sel_src, sel_tgt = _span_aligned(source, target, chunk, src.keep, tgt.keep)
        if not bool(sel_src.any()):
            raise ValueError(
                f"{source.name} and {target.name} tokenise prompts {start}-{start + len(chunk) - 1}"
                " with no token boundary in common (after <bos>): fit_map pairs tokens that end "
                "at the same character; pass longer prompts of ordinary words"
            )
        rows = sel_src.nonzero()[:, 0].cpu() + start
        yield start, rows, src.acts[sel_src].flatten(1), tgt.acts[sel_tgt].flatten(1)


@torch.no_grad()
def fit_map(
    source: Subject,
    target: Subject,
    prompts: Sequence[str],
    hook_name: str,
    *,
    target_hook_name: str | None = None,
    ridge: float = 1e-4,
    holdout: float = 0.2,
    batch_size: int = 64,
) -> ResidualMap:
    """Fit an affine map from ``source``'s activations at ``hook_name`` to ``target``'s.

    Both subjects read the same prompts. With one tokenizer every real token but ``<bos>`` is
    one (x, y) pair; across tokenizers the pairs are the tokens whose character spans end at
    the same character of the prompt (both models have then read the same text). The fit is
    ridge least squares in float64 (:func:`_fit_affine`) on running moments, so memory is
    ``d²``, not tokens x d. The same moments give both the forward map (target on source, for
    write-side patches) and the reverse one (source on target, for read-side patches): one
    more solve.

    Args:
        target_hook_name: the target's hook (default: ``hook_name``).
        ridge: ridge strength relative to the regressor's mean per-dimension variance (the
            source's for the forward map, the target's for the reverse one).
        holdout: share of prompts (every k-th, ``k = round(1 / holdout)``) scored for the
            held-out ``r2`` and ``reverse_r2``; the returned map is then refitted on all
            prompts. 0: in-sample.

    Raises:
        ValueError: an unknown hook, too few tokens for the width, or prompts whose two
            tokenisations share no token boundary.
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError("prompts is empty (or one string): pass a list of prompt texts")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1) (got {holdout})")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0 (got {ridge})")
    target_hook = target_hook_name or hook_name
    d_x, d_y = _hook_width(source, hook_name), _hook_width(target, target_hook)
    step = max(2, round(1 / holdout)) if holdout > 0 and len(prompts) >= 2 else 0
    fit, held = _Moments(d_x, d_y), _Moments(d_x, d_y)
    threads = 1 if max(source.d_model, target.d_model) <= _SMALL_MODEL else None
    with cpu_threads(threads, source.device):
        for _, rows, x, y in _token_pairs(
            source, target, prompts, (hook_name, target_hook), batch_size
        ):
            y = y.to(x.device)
            out = (rows % step == step - 1) if step else torch.zeros_like(rows, dtype=torch.bool)
            out = out.to(x.device)
            fit.add(x[~out], y[~out])
            if bool(out.any()):
                held.add(x[out], y[out])
    every = fit + held
    if every.n <= d_x:
        raise ValueError(
            f"only {every.n} tokens for a map from {d_x} dimensions: the fit is underdetermined; "
            "pass more (or longer) prompts"
        )
    held_out = held.n > 1 and fit.n > d_x
    w, b = every.solve(ridge)
    v, c = every.swapped().solve(ridge)
    if held_out:
        r2 = held.r2(*fit.solve(ridge))
        reverse_r2 = held.swapped().r2(*fit.swapped().solve(ridge))
    else:
        r2, reverse_r2 = every.r2(w, b), every.swapped().r2(v, c)
    return ResidualMap(
        weight=w,
        bias=b,
        reverse_weight=v,
        reverse_bias=c,
        hook_name=hook_name,
        target_hook_name=target_hook,
        source=source.fingerprint,
        target=target.fingerprint,
        r2=float(r2),
        reverse_r2=float(reverse_r2),
        held_out=held_out,
        n_tokens=every.n,
        ridge=ridge,
        prompts_sha256=texts_sha256(prompts),
    )


def patch_side(patch: Patch) -> Side:
    """Which side of a map a patch's direction is carried by: ``"write"`` or ``"read"``.

    A patch that adds its vector (:class:`Steer`) writes: ``"write"``, the push-forward. A patch
    that projects out the component ``x . r`` (:class:`Ablate`, :class:`Orthogonalize`) reads:
    ``"read"``, the pull-back (see :func:`map_direction`). Any other patch class says so
    itself with a class attribute ``side: ClassVar[str] = "read"`` (or ``"write"``), which also
    overrides the built-in choice for a subclass.

    Raises:
        ValueError: a patch class with no (or an unknown) ``side``.
    """
    own: Any = getattr(type(patch), "side", None)
    if own is not None:
        if own not in SIDES:
            raise ValueError(
                f"{type(patch).__name__}.side is {own!r}; a patch's side is one of {SIDES}"
            )
        return own
    if isinstance(patch, Steer):
        return "write"
    if isinstance(patch, Ablate | Orthogonalize):
        return "read"
    raise ValueError(
        f"cannot tell how to carry a {type(patch).__name__}'s direction to another model: give "
        f'the class a `side: ClassVar[str]` attribute, "write" if it adds the vector (as '
        'Steer does) or "read" if it reads or projects out the component along it (as '
        "Ablate does)"
    )


def map_direction(direction: Direction, m: ResidualMap, *, side: Side = "write") -> Direction:
    """Carry a direction through a map, as a patch of that ``side`` uses it.

    * ``side="write"``: the push-forward ``vector @ weight``. A change ``δ`` in source space is
      ``δ @ weight`` in target space, so this is what an added vector (:class:`Steer`) needs.
    * ``side="read"``: the pull-back ``r_t = reverse_weight @ vector``, the target functional
      that reads the same quantity: ``y . r_t + reverse_bias . r ≈ x . r``, the best linear
      prediction of the source reading from the target (as good as ``reverse_r2`` says). This
      is what a patch that reads or projects out ``x . r`` (:class:`Ablate`,
      :class:`Orthogonalize`) needs. For an exact invertible map ``y = x @ A + c`` it is
      ``A⁻¹ @ r``; it equals the push-forward only for orthogonal maps.

    One limit: the exact image of the source's ablation ``x - (x . r̂) r̂`` under ``y = x @ A``
    is the oblique projection ``y - (y . A⁻¹ r̂) (r̂ @ A)``, which reads along the pull-back but
    removes along the push-forward. :class:`Ablate` projects orthogonally along one direction,
    so across a non-orthogonal map the read side zeroes the source's reading exactly while the
    rest of the target stream is not what the ablated source would give.

    The biases drop out (a direction is a difference of activations, or a linear functional).
    :func:`patch_side` says which side a patch is. The result is named
    ``"<name> (transferred, <side> side)"``.

    Raises:
        ValueError: an unknown side, a direction of another width or from another subject.
    """
    if side not in SIDES:
        raise ValueError(
            f'side={side!r}: use "write" (push-forward, for a patch that adds the vector, e.g. '
            'Steer) or "read" (pull-back, for one that projects it out, e.g. Ablate); '
            "patch_side(patch) tells which"
        )
    if direction.d_model != m.weight.shape[0]:
        raise ValueError(
            f"the direction has width {direction.d_model} but the map reads {m.weight.shape[0]}"
        )
    if direction.subject != m.source:
        raise ValueError(
            f"direction {direction.name!r} was derived on subject {direction.subject[:12]}…, but "
            f"the map starts from {m.source[:12]}…; fit the map from the subject it was derived on"
        )
    v = direction.vector.double()
    vec = v @ m.weight if side == "write" else m.reverse_weight @ v
    return Direction(
        vec.float(),
        m.target_hook_name,
        m.target,
        f"{direction.name} (transferred, {side} side)",
        "transfer",
    )


def transfer(
    patch: P,
    source: Subject,
    target: Subject,
    prompts: Sequence[str],
    hook_name: str | None = None,
    *,
    target_hook_name: str | None = None,
    ridge: float = 1e-4,
    residual_map: ResidualMap | None = None,
    side: str | None = None,
    target_base: Subject | None = None,
) -> P:
    """The same patch for ``target``: its direction mapped by :func:`fit_map` on ``prompts``.

    The patch is carried as :func:`map_patch` says: a :class:`Steer` vector pushed forward (it
    adds the vector); an :class:`Ablate` or :class:`Orthogonalize` by ``side``: ``"write"``
    (default; the push-forward of the direction), ``"read"`` (the pull-back) or ``"oblique"``
    (the exact image of the ablation under an exact map); see :func:`map_patch`.

    ``hook_name`` defaults to the patch's hook (``Steer.hook_name``, else the direction's).
    A :class:`Steer` with an explicit hook gets the target hook. ``residual_map``: a map already
    fitted from ``source`` to ``target`` at that hook (then ``prompts`` and ``ridge`` are not
    used), e.g. to read its R² too.

    Which direction to carry is open: one the source *represents* (persona contexts, judged
    answers, features: :attr:`~workbench.patches.PatchChoice.for_transfer`) or the fine-tune's
    own update, an offset the map's bias may absorb while the target's fine-tune learned its
    own. On the organism the update's image kept 8% and 21% of the target's cut on two pairs
    but 72% on a third, and preferring the represented directions did not help on fresh
    organisms (see :data:`~workbench.patches.TRANSFERABLE`).

    An :class:`~workbench.patches.AblateUpdate` edits a fine-tune against the model it started
    from, so the carried patch removes the *target's* own update along the mapped direction,
    measured against ``target_base``: the model ``target`` was fine-tuned from. It defaults to
    the patch's own base when ``target`` was fine-tuned from that same model (two fine-tunes of
    one base); it is ignored for other patches.

    Raises:
        ValueError: the direction was not derived on ``source``, its width does not fit
            ``source`` at the hook, the patch's class has no side (:func:`patch_side`), or an
            ``AblateUpdate`` without ``target_base``.
    """
    patch_side(patch)  # a patch that cannot be carried fails before any fit
    target_base = _target_base(patch, target, target_base)
    d = patch.direction
    if d.subject != source.fingerprint:
        raise ValueError(
            f"this patch's direction {d.name!r} was derived on subject {d.subject[:12]}…, not "
            f"on {source.name} ({source.fingerprint[:12]}…); pass the subject it was derived on "
            "as `source`"
        )
    explicit = isinstance(patch, Steer) and patch.hook_name is not None
    hook = hook_name or (patch.hook if isinstance(patch, Steer) else d.hook_name)
    width = _hook_width(source, hook)
    if d.d_model != width:
        raise ValueError(
            f"the direction has width {d.d_model} but {source.name} is {width} wide at "
            f"{hook!r}; pass the hook it lives at as hook_name"
        )
    if residual_map is None:
        m = fit_map(source, target, prompts, hook, target_hook_name=target_hook_name, ridge=ridge)
    else:
        m = residual_map
        if (m.source, m.target, m.hook_name) != (source.fingerprint, target.fingerprint, hook):
            raise ValueError(
                f"residual_map maps {m.hook_name!r} of {m.source[:12]}… to {m.target[:12]}…, not "
                f"{hook!r} of {source.name} to {target.name}; fit it with fit_map(source, "
                "target, prompts, hook)"
            )
    moved = map_patch(patch, m, side=side, target_base=target_base)
    if isinstance(patch, Steer):
        new_hook = m.target_hook_name if explicit or target_hook_name else None
        return replace(moved, hook_name=new_hook)  # type: ignore[type-var]
    return moved


def _target_base(patch: Patch, target: Subject, given: Subject | None) -> Subject | None:
    """The base an :class:`AblateUpdate` carried to ``target`` measures its update against."""
    if not isinstance(patch, AblateUpdate) or given is not None:
        return given
    started = (target.recipe or {}).get("base_fingerprint")
    if started == patch.base.fingerprint:
        return patch.base
    raise ValueError(
        f"an AblateUpdate removes a fine-tune's own update, measured against the model it "
        f"started from, and {target.name} was not fine-tuned from this patch's base "
        f"{patch.base.name}: pass target_base=, the model {target.name} was fine-tuned from"
    )


TRANSFER_SIDES = ("write", "read", "oblique")
"""How :func:`transfer` can carry an ablation (a steering vector always crosses by "write")."""


def map_patch(
    patch: P, m: ResidualMap, *, side: str | None = None, target_base: Subject | None = None
) -> P:
    """``patch`` with its direction(s) carried through the map ``m`` (no fit, no checks of hooks).

    * :class:`Steer`: the vector is pushed forward (``"write"``): a change ``δ`` in the source
      is ``δ @ weight`` in the target.
    * :class:`Ablate`, :class:`Orthogonalize` (``side``, default ``"write"``):

      * ``"write"``: an orthogonal ablation along the push-forward of the direction. A direction
        found as a mean difference (persona contexts, judged answers, a fine-tune's update) or a
        decoder row is a *displacement* in activation space, and its image is the push-forward.
        On fitted maps between organisms this is the side that keeps most of the target's own
        cut (``benchmarks/alignment.py``).
      * ``"read"``: an orthogonal ablation along the pull-back, the target functional that reads
        the same quantity ``x . r`` (right for a direction that is a probe's *reading*).
      * ``"oblique"``: the exact image of the ablation, which reads along the pull-back and
        removes along the push-forward (:class:`Ablate`'s ``reading``). Exact for an exact map
        (a non-orthogonal linear copy computes the ablated source's logits); through a noisy
        fitted map it is unstable: random directions carried this way also cut the behaviour,
        by wrecking the model.

      For an orthogonal map the three coincide.
    * any other patch: its direction by its :func:`patch_side`; an :class:`AblateUpdate` also
      takes ``target_base`` (the model the target was fine-tuned from) as its base, when given.
    """
    if isinstance(patch, Ablate | Orthogonalize):
        side = side or "write"
        if side not in TRANSFER_SIDES:
            raise ValueError(f"side={side!r}: an ablation is carried by one of {TRANSFER_SIDES}")
        d = patch.direction
        if side == "oblique":
            reading = patch.reading
            if reading is None:
                reading = Direction(d.unit, d.hook_name, d.subject, d.name, d.source)
            return replace(
                patch,
                direction=map_direction(d, m, side="write"),
                reading=map_direction(reading, m, side="read"),
            )
        if patch.reading is not None:
            raise ValueError(
                "this ablation is oblique (it has a reading): carry it with side='oblique'"
            )
        plain: Side = "write" if side == "write" else "read"
        return replace(patch, direction=map_direction(d, m, side=plain))
    own = patch_side(patch)
    if side is not None and side != own:
        raise ValueError(f"a {type(patch).__name__} is carried by its {own!r} side, not {side!r}")
    mapped = map_direction(patch.direction, m, side=own)
    if isinstance(patch, AblateUpdate) and target_base is not None:
        return replace(patch, direction=mapped, base=target_base)
    return replace(patch, direction=mapped)  # type: ignore[type-var]
