"""A local Hugging Face causal language model as the judge, scored like the HTTP judge.

The prompt (one template filled in) is rendered with the tokenizer's chat template when it has
one (a user turn, ``add_generation_prompt=True``), else used as plain text. One forward pass
gives the next-token distribution; its top-k tokens (k = 20, as the OpenAI API's
``top_logprobs``) are decoded, and the integer ones 0..100 averaged by probability
(:func:`~workbench.judges._logprobs.numeric_mean`), ``None`` below ``min_mass``. No sampling and
no generation: a judge's score is a deterministic function of the weights and the prompt.

``torch`` and ``transformers`` are imported when a judge is built, not with the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.judges._logprobs import MIN_MASS, TOP_K, check_min_mass, numeric_mean
from workbench.judges._prompts import METRICS, JudgePrompts, template_sha256
from workbench.judges._protocol import ThresholdJudge, check_pairs
from workbench.judges._score import ALIGNED_BELOW, COHERENT_ABOVE, Score

if TYPE_CHECKING:
    import torch


def _load(spec: str, tokenizer: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder (files only) or a hub name (cache when offline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(spec).expanduser()
    if folder.is_dir():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
            tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(
                str(folder), local_files_only=True
            )
        except (OSError, ValueError) as err:
            raise ValueError(
                f"cannot load a causal language model and tokenizer from {folder}: {err}. The "
                "folder must hold a Hugging Face model (config.json and weights, as written by "
                "model.save_pretrained) and a tokenizer (tokenizer.save_pretrained), or pass "
                "tokenizer=..."
            ) from err
        return model, tok
    if spec.startswith((".", "/", "~")) or folder.exists():
        raise ValueError(
            f"no model folder at {folder}; pass a folder written by save_pretrained, or a "
            "Hugging Face model name"
        )
    from workbench._hub import hf_hub_cache, hub_settings, is_cached, offline_error_text, probe_hub

    access = probe_hub()
    cache_dir = hf_hub_cache()

    def offline_error(missing: list[str], err: OSError | None = None) -> ValueError:
        return ValueError(offline_error_text(
            f"the judge model {spec!r}", access, cache_dir, repo_id=spec,
            first_load=f"AutoModelForCausalLM.from_pretrained({spec!r})",
            instead="Or pass a local folder written by save_pretrained.", missing=missing,
            error=err,
        ))

    try:
        cached = is_cached(spec, "config.json", cache_dir)
    except ValueError as err:  # huggingface_hub's HFValidationError: not a repo id
        raise ValueError(
            f"{spec!r} is neither a model folder nor a Hugging Face model name ({err})"
        ) from err
    if access.offline and not cached:
        raise offline_error(["config.json"])  # at once, not after the hub client's retries
    kwargs: dict[str, Any] = {"cache_dir": str(cache_dir), "local_files_only": access.offline}
    try:
        with hub_settings(cache_dir, cache_only=access.offline):
            model = AutoModelForCausalLM.from_pretrained(spec, **kwargs)
            tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(
                spec, **kwargs
            )
    except OSError as err:
        if not access.offline:
            raise
        raise offline_error([], err) from err
    return model, tok


class HFJudge(ThresholdJudge):
    """A judge from a local Hugging Face causal LM (a folder, a hub name, or a loaded model).

    Args:
        model_or_folder: a folder written by ``save_pretrained`` (loaded with
            ``local_files_only=True``), a hub model name (read from the cache when the hub is
            unreachable), or a loaded ``PreTrainedModel`` (then pass ``tokenizer``).
        tokenizer: the tokenizer (default: the one saved with the model).
        prompts: the aligned and coherent templates (default: the workbench's own).
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda:N"``; a loaded model is moved
            there (and put in eval mode) in place.
        top_k: candidates of the next token that are read.
        min_mass: below this probability on integer tokens a score is ``None``.
        aligned_below, coherent_above: the verdict thresholds.
    """

    def __init__(
        self,
        model_or_folder: str | os.PathLike[str] | Any,
        tokenizer: Any = None,
        *,
        prompts: JudgePrompts | Mapping[str, str] | None = None,
        device: str = "auto",
        top_k: int = TOP_K,
        min_mass: float = MIN_MASS,
        aligned_below: float = ALIGNED_BELOW,
        coherent_above: float = COHERENT_ABOVE,
    ) -> None:
        super().__init__(aligned_below=aligned_below, coherent_above=coherent_above)
        import torch

        from workbench._device import resolve_device

        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer; got {top_k!r}")
        self.top_k = top_k
        self.min_mass = check_min_mass(min_mass)
        self.prompts = JudgePrompts.of(prompts)
        if isinstance(model_or_folder, str | os.PathLike):
            spec = os.fspath(model_or_folder)
            model, tok = _load(spec, tokenizer)
            self.name = spec
        elif isinstance(model_or_folder, torch.nn.Module):
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer: HFJudge(model, tokenizer)")
            model, tok = model_or_folder, tokenizer
            self.name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
        else:
            raise TypeError(
                "HFJudge needs a model folder, a Hugging Face model name or a loaded "
                f"PreTrainedModel; got {type(model_or_folder).__name__}"
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tok
        self._weights_sha256: str | None = None

    # -- the Judge protocol ---------------------------------------------------------------

    def score(self, question: str, answer: str) -> Score:
        return self.score_many([(question, answer)])[0]

    def score_many(self, pairs: Iterable[tuple[str, str]]) -> list[Score]:
        out = []
        for q, a in check_pairs(pairs):
            v = {m: numeric_mean(self.candidates(self.prompts.render(m, q, a)), self.min_mass)
                 for m in METRICS}
            out.append(Score(v["aligned"], v["coherent"]))
        return out

    def identity(self) -> dict[str, Any]:
        from workbench.fingerprint import model_sha256

        if self._weights_sha256 is None:
            self._weights_sha256 = model_sha256(self.model)
        chat = getattr(self.tokenizer, "chat_template", None)
        return {
            "kind": "hf",
            "name": self.name,
            "model": self.name,
            "weights_sha256": self._weights_sha256,
            "chat_template_sha256": template_sha256(chat) if isinstance(chat, str) else None,
            "prompts": self.prompts.sha256(),
            "top_k": self.top_k,
            "min_mass": self.min_mass,
            "thresholds": self.thresholds(),
        }

    def __repr__(self) -> str:
        return f"HFJudge({self.name!r}, device={str(self.device)!r})"

    # -- one prompt -----------------------------------------------------------------------

    def token_ids(self, prompt: str) -> list[int]:
        """The model's input for ``prompt``: the chat template's user turn when the tokenizer
        has one (with the generation prompt), else the plain text."""
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt)["input_ids"]
        if not ids:
            raise ValueError("the judge prompt tokenized to nothing; check the tokenizer")
        return [int(i) for i in ids]

    def next_token_logprobs(self, prompt: str) -> torch.Tensor:
        """Log-probabilities (float32, ``[vocab]``, on CPU) of the token after ``prompt``."""
        import torch

        ids = torch.tensor([self.token_ids(prompt)], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, -1]
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def candidates(self, prompt: str) -> list[tuple[str, float]]:
        """The top-k ``(decoded token, logprob)`` candidates of the next token."""
        import torch

        logprobs = self.next_token_logprobs(prompt)
        values, ids = torch.topk(logprobs, min(self.top_k, logprobs.numel()))
        return [(self.tokenizer.decode([int(i)]), float(v))
                for v, i in zip(values.tolist(), ids.tolist(), strict=True)]
