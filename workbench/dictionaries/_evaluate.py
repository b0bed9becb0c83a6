"""Reconstruction quality of a dictionary on held-out tokens (:func:`evaluate_dictionary`)."""

from __future__ import annotations

import torch

from workbench import execution
from workbench.dictionaries._dictionary import Dictionary, DictionaryStats, check_compatible
from workbench.subjects import Subject


def check_tokens(subject: Subject, tokens: torch.Tensor, what: str) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype != torch.long:
        raise ValueError(
            f"{what} must be a LongTensor of token ids, n_seq x ctx (got "
            f"{getattr(tokens, 'dtype', type(tokens).__name__)} of shape "
            f"{tuple(getattr(tokens, 'shape', ()))}); tokenize with subject.tokenizer first"
        )
    n_seq, ctx = tokens.shape
    if n_seq == 0 or ctx == 0:
        raise ValueError(f"{what} is empty (shape {tuple(tokens.shape)})")
    if ctx > subject.n_ctx:
        raise ValueError(
            f"{what} has context {ctx} but {subject.name} takes at most "
            f"{subject.n_ctx} tokens; cut the sequences"
        )
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= subject.d_vocab:
        raise ValueError(
            f"{what} holds ids in [{lo}, {hi}] but {subject.name}'s vocabulary has "
            f"{subject.d_vocab} tokens; tokenize with this subject's tokenizer"
        )




@torch.no_grad()
def evaluate_dictionary(
    subject: Subject,
    dictionary: Dictionary,
    tokens: torch.Tensor,
    *,
    batch_size: int = 32,
    skip_first_position: bool = True,
) -> DictionaryStats:
    """Reconstruction quality of ``dictionary`` on the subject's activations for ``tokens``.

    Args:
        subject: the model the dictionary reads.
        dictionary: the dictionary to evaluate (checked with :func:`check_compatible`).
        tokens: LongTensor ``n_seq x ctx`` of token ids (held out from training).
        batch_size: sequences per forward pass.
        skip_first_position: leave out position 0 (the ``<bos>`` outlier), as training does.

    Returns:
        :class:`DictionaryStats`; sums are accumulated in float64 over all evaluated tokens.
    """
    check_compatible(subject, dictionary)
    check_tokens(subject, tokens, "tokens")
    if skip_first_position and tokens.shape[1] < 2:
        raise ValueError("with skip_first_position=True, sequences need at least 2 tokens")
    sae = dictionary.sae
    head = sae.cfg.metadata.hook_head_index
    d_in = dictionary.d_in
    start = 1 if skip_first_position else 0

    n = 0
    sum_x = torch.zeros(d_in, dtype=torch.float64)
    sum_x2 = torch.zeros((), dtype=torch.float64)
    sum_resid2 = torch.zeros((), dtype=torch.float64)
    sum_l0 = torch.zeros((), dtype=torch.float64)
    fired = torch.zeros(dictionary.d_sae, dtype=torch.bool)
    for i in range(0, tokens.shape[0], batch_size):
        acts = execution.run_to_hook(
            subject.model, tokens[i : i + batch_size], dictionary.hook_name
        )
        acts = acts[:, start:]
        if head is not None and acts.ndim > 3:
            acts = acts[:, :, head]
        if acts.ndim > 3 and not getattr(sae, "hook_z_reshaping_mode", False):
            acts = acts.flatten(2)
        acts = acts.to(device=sae.device, dtype=sae.dtype)
        feats = sae.encode(acts)
        recon = sae.decode(feats)
        x = acts.reshape(-1, d_in).double().cpu()
        x_hat = recon.reshape(-1, d_in).double().cpu()
        f = feats.reshape(-1, dictionary.d_sae).cpu()
        n += x.shape[0]
        sum_x += x.sum(0)
        sum_x2 += x.pow(2).sum()
        sum_resid2 += (x - x_hat).pow(2).sum()
        active = f != 0
        sum_l0 += active.sum()
        fired |= active.any(0)
    total_variance = sum_x2 - sum_x.pow(2).sum() / n
    if total_variance <= 0:
        explained = 1.0 if float(sum_resid2) < 1e-12 else 0.0
    else:
        explained = float(1.0 - sum_resid2 / total_variance)
    return DictionaryStats(
        explained_variance=explained,
        l0=float(sum_l0 / n),
        mse=float(sum_resid2 / n),
        dead_fraction=float((~fired).double().mean()),
        n_tokens=n,
    )
