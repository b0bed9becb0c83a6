"""Device selection: one rule used by every module that places tensors.

``"auto"`` means CUDA when a GPU is visible, else CPU. Anything else is handed to
:class:`torch.device`, with a clear error when CUDA is asked for and absent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the :class:`torch.device` that ``device`` names (``"auto"``: CUDA if present)."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(
                f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(dev)!r} was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}); use device='auto' or 'cpu'"
        )
    return dev


#: dtype names accepted by ``load_subject(..., dtype=)`` and the notebooks' ``dtype`` parameter
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype ``dtype`` names; ``"auto"`` is bfloat16 on a CUDA GPU, float32 on CPU.

    Raises:
        ValueError: an unknown name (the message lists the accepted ones), or half precision on
            a CPU (slow, and CPU matmuls in float16 are not supported everywhere).
    """
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif dtype == "auto":
        out = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif dtype in DTYPES:
        out = DTYPES[dtype]
    else:
        raise ValueError(
            f"unknown dtype {dtype!r}: use 'auto' (bf16 on a GPU, fp32 on CPU), "
            + ", ".join(repr(k) for k in DTYPES)
        )
    if out not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {out} is not supported: use float32, bfloat16 or float16")
    return out


@contextlib.contextmanager
def cpu_threads(n: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (restored after); no-op on CUDA or ``n=None``.

    The organism's matrices are tiny: on small CPUs, thread hand-off costs more than it saves
    (measured here on 2 cores: a training step is ~15x faster on 1 thread than on 2).
    """
    if n is None or device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
