"""Would packing VGG-9 trials pay on this machine? K models stepped one after another against the same K
models fused into one vmapped step (HFTA-style: stacked parameters, per-model data and gradients), in one run.

    python bench/cnn_pack_speed.py [--ks 1 2 4] [--batch 16] [--steps 6] [--repeats 3] [--device cpu]

The packed trainer (anpyc_core/packing) stacks MLPs only; this measures the step a packed VGG-9 would be
built on before anyone builds it. Each of K VGG-9s (the study's model: 28×28 grey input padded to 32×32×3,
one batch norm with batch statistics) takes `--steps` SGD steps on its own batches of `--batch` images:
*sequential* runs K ordinary forward/backward/update passes, *fused* one `torch.func.vmap` of the gradient
over the K stacked parameter sets and one foreach update. Both compute the same updates up to summation
order (vmap runs the K convolutions as one grouped convolution): the largest parameter difference after
one round is printed, ~1e-4 where a wrong member pairing or update would differ by the update itself.
Rounds alternate after one warm-up; medians; the ratio > 1 means fusing is faster. Results go to
docs/PERFORMANCE.md between the `cnn_pack_speed` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
from pathlib import Path

import torch
from docs_section import write_section  # noqa: E402
from timing import alternate  # noqa: E402
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, stack_module_state, vmap
from torch.nn import functional as F

from anpyc_core.models.cnn import MultiHeadCNN, torchvision_init

ROOT = Path(__file__).resolve().parents[1]
LR = 0.05


def vgg9(seed: int) -> MultiHeadCNN:
    """The studies' VGG-9 (torchvision init, shared batch norm using batch statistics only)."""
    torch.manual_seed(seed)
    model = MultiHeadCNN("vgg9", (1, 28, 28), [2], bn_stats="shared")  # one task: every parameter used
    torchvision_init(model)
    replace_all_batch_norm_modules_(model)  # vmap cannot update running statistics in place
    return model


def sequential_steps(models: list, xs: torch.Tensor, ys: torch.Tensor) -> None:
    """K models, one ordinary SGD step each per batch, one model after another."""
    for k, model in enumerate(models):
        params = [p for p in model.parameters()]
        for s in range(xs.shape[1]):
            loss = F.cross_entropy(model(xs[k, s], 0), ys[k, s])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                torch._foreach_add_(params, grads, alpha=-LR)


def fused_steps(base, params: dict, buffers: dict, xs: torch.Tensor, ys: torch.Tensor) -> None:
    """The same K models' steps as one vmapped gradient over the stacked parameters per batch."""

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x, 0)), y)

    per_model_grad = vmap(grad(loss))
    names = list(params)
    for s in range(xs.shape[1]):
        grads = per_model_grad(params, buffers, xs[:, s], ys[:, s])
        with torch.no_grad():
            torch._foreach_add_([params[n] for n in names], [grads[n] for n in names], alpha=-LR)


def measure(k: int, args) -> dict:
    """Seconds of K models' `--steps` steps, sequential against fused, and the largest parameter gap."""
    gen = torch.Generator().manual_seed(k)
    xs = torch.rand(k, args.steps, args.batch, 28 * 28, generator=gen, device=args.device)
    ys = torch.randint(0, 2, (k, args.steps, args.batch), generator=gen, device=args.device)
    models = [vgg9(s).to(args.device) for s in range(k)]
    base = copy.deepcopy(models[0]).to("meta")
    seq = [copy.deepcopy(m) for m in models]
    params, buffers = stack_module_state(models)
    params = {n: p.detach().clone() for n, p in params.items()}
    sequential_steps(seq, xs, ys)  # the equality check: one round of each from the same start
    fused_steps(base, params, buffers, xs, ys)
    gap = max(
        (params[n][i] - p.detach()).abs().max().item() for i, m in enumerate(seq) for n, p in m.named_parameters()
    )
    fused_s, seq_s = alternate(
        lambda _r: fused_steps(base, params, buffers, xs, ys),
        lambda: sequential_steps(seq, xs, ys),
        args.repeats,
        label=f"K={k}",
    )
    return {"k": k, "sequential_s": seq_s, "fused_s": fused_s, "gap": gap}


def cpu_model() -> str:
    """The CPU's model name (Linux), else the machine type."""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        avx = "AVX-512" if "avx512f" in info else "AVX2"
        for line in info.splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {avx}"
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=16, help="the VGG-9 studies' batch size")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    rows = [measure(k, args) for k in args.ks]
    machine = f"{os.cpu_count()} CPU cores ({cpu_model()}), torch {torch.__version__}"
    if args.device != "cpu":
        machine += f", {torch.cuda.get_device_name(0)}"
    lines = [
        "## Packing VGG-9 trials? (bench/cnn_pack_speed.py)",
        "",
        f"Command: `python bench/cnn_pack_speed.py --ks {' '.join(map(str, args.ks))} --batch {args.batch} "
        f"--steps {args.steps} --device {args.device}`. Machine: {machine}, {torch.get_num_threads()} threads.",
        "",
        "| K models | sequential s | fused (vmap) s | fused speed-up | largest parameter gap after one round |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        print(r, flush=True)
        lines.append(
            f"| {r['k']} | {r['sequential_s']:.2f} | {r['fused_s']:.2f} | {r['sequential_s'] / r['fused_s']:.2f}x | "
            f"{r['gap']:.1e} |"
        )
    if not args.no_docs:
        write_section(ROOT / "docs" / "PERFORMANCE.md", "cnn_pack_speed", lines, "Packing VGG-9")


if __name__ == "__main__":
    main()
