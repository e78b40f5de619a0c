"""Process-wide settings that make training fast on the machine it runs on.

    tune_allocator()   # once, before training: keep freed memory in the process (glibc)
    fast_bf16()        # "the CPU has AMX" (why bf16 is fast here), or None: train.precision=auto's choice
    launch()           # (rank, world size) of a torchrun / accelerate launch process, its environment checked
    accelerator = make_accelerator("auto", "train.precision")   # auto resolved: accelerator.mixed_precision

glibc returns large freed blocks (above the mmap threshold, e.g. the MLM logits of every step) to the kernel
and maps them again on the next step: page faults and zeroing that took 30–47% of CPU time on a stock BERT
step here. Raising the mmap and trim thresholds keeps those blocks in the process' heap, as jemalloc or
tcmalloc would; memory is reused, not leaked. A no-op where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
from functools import cache
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from bertkit.errors import BertkitError

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed

_tuned = False


def tune_allocator() -> bool:
    """Apply the glibc thresholds once per process; True if they were applied."""
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BYTES))
    return _tuned


@cache
def fast_bf16() -> str | None:
    """Why bf16 runs fast on this machine, or None: an Ampere or newer GPU (compute capability 8+), or a CPU with
    AMX or AVX512-BF16 (bf16 matrix instructions: oneDNN's bf16 matmuls beat its fp32 ones there). Without them
    bf16 is emulated, slower than fp32."""
    import torch

    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        return f"{torch.cuda.get_device_name()} (compute capability {major}.x)" if major >= 8 else None
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "the CPU has AMX"
    if "avx512_bf16" in flags:
        return "the CPU has AVX512-BF16"
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def launch() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun and accelerate launch set them, (0, 1) for a plain run. Several processes
    meet at MASTER_ADDR:MASTER_PORT; set by hand without them (or with a rank outside the world), torch would
    fail with its own traceback, or wait forever for ranks that never come."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise BertkitError(
            f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not whole numbers; "
            "launch with torchrun or accelerate launch, or unset them for one process"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise BertkitError(f"RANK={rank} does not fit WORLD_SIZE={world}; launch with torchrun or accelerate launch")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if world > 1 and not os.environ.get(name)]
    if missing:
        raise BertkitError(
            f"WORLD_SIZE={world} is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
            "launch the processes with torchrun or accelerate launch (they set the rendezvous), or unset WORLD_SIZE"
        )
    return rank, world


def make_accelerator(precision: str, key: str, grad_accum: int = 1, project_dir: Path | None = None) -> Accelerator:
    """An Accelerator in `precision` (the recipe's value of `key`; `auto` resolved here, and what it became is
    `accelerator.mixed_precision`, never written back into the recipe), with gradient accumulation and TensorBoard
    logs under `project_dir` when tensorboard is installed. Without a GPU, Accelerate must be told `cpu=True` to
    run several processes (gloo) under `torchrun` or `accelerate launch`; otherwise each would train alone."""
    launch()  # a broken launch environment as one line, before Accelerate meets it
    accelerated = torch.cuda.is_available() or torch.backends.mps.is_available()
    reason = fast_bf16() if precision == "auto" else None
    resolved = ("bf16" if reason else "no") if precision == "auto" else precision
    if resolved == "fp16" and not accelerated:  # Accelerate would run it in fp32 without a word
        raise BertkitError(
            f"{key}=fp16 needs a GPU: on a CPU it would silently run in fp32; use {key}=bf16 (the CPU's "
            f"mixed precision) or {key}=no"
        )
    # Accelerate keeps one global state per process; a second run in the same process (a notebook, the tests)
    # may ask for another precision. The process group (PartialState) is kept.
    AcceleratorState._reset_state()
    tensorboard = project_dir is not None and importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(
        cpu=not accelerated,
        mixed_precision=resolved,
        gradient_accumulation_steps=grad_accum,
        log_with="tensorboard" if tensorboard else None,
        project_dir=str(project_dir) if project_dir else None,
    )
    if precision == "auto":
        accelerator.print(f"precision: {'bf16' if reason else 'fp32'} ({key}=auto: {reason or 'no fast bf16 here'})")
    return accelerator


def run_state(accelerator: Accelerator, **resolved: str) -> dict:
    """What a run's `auto` settings became on this machine (saved as resolved.yaml beside the recipe, which keeps
    what the user asked for): the device, the precision, and the caller's own (`packed_attention="mask"`)."""
    return {"device": str(accelerator.device), "precision": accelerator.mixed_precision, **resolved}
