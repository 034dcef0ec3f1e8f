"""Table IV as the paper prints it (remaining values per layer, total, compression, prune ratio, accuracy),
one table per measure, and one figure of test accuracy against compression for every measure."""

from __future__ import annotations

from pathlib import Path

#: The paper's LeNet row labels for its eight trunk tensors (weights and biases of two convs and two FCs).
LENET_LABELS = ["conv1 W", "conv1 b", "conv2 W", "conv2 b", "fc1 W", "fc1 b", "fc2 W", "fc2 b"]
#: Table IV of the paper (MNIST, ANPyC importance): total values and test accuracy before and after.
PAPER = {"before": (1_789_568, 98.94), "after": (31_332, 98.55), "compression": 57.12}


def table(result: dict) -> str:
    """One measure's run as a Markdown table: a row per trunk tensor, a column per iteration."""
    rows = result["rows"]
    names = list(rows[0]["remaining"])
    labels = LENET_LABELS if len(names) == len(LENET_LABELS) and result["config"]["model"]["arch"] == "lenet" else names
    head = (
        "| | "
        + " | ".join("trained" if r["iteration"] == 0 else f"iter {r['iteration']} ({r['fraction']:.0%})" for r in rows)
        + " |"
    )
    lines = [f"**{result['measure']}**", "", head, "|---" * (len(rows) + 1) + "|"]
    for name, label in zip(names, labels, strict=True):
        lines.append(f"| {label} | " + " | ".join(f"{r['remaining'][name]:,}" for r in rows) + " |")
    lines.append("| **total** | " + " | ".join(f"{r['total']:,}" for r in rows) + " |")
    lines.append("| compression | " + " | ".join(f"{r['compression']:.2f}x" for r in rows) + " |")
    lines.append("| prune ratio | " + " | ".join(f"{100 * r['prune_ratio']:.2f}%" for r in rows) + " |")
    lines.append("| test acc (%) | " + " | ".join(f"{r['test_acc']:.2f}" for r in rows) + " |")
    return "\n".join(lines)


def figure(results: list[dict], path: Path) -> Path:
    """Test accuracy against compression (log scale), one line per measure, the paper's end point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for result in results:
        rows = result["rows"]
        ax.plot([r["compression"] for r in rows], [r["test_acc"] for r in rows], marker="o", label=result["measure"])
    ax.scatter(
        [PAPER["compression"]],
        [PAPER["after"][1]],
        marker="*",
        s=140,
        color="black",
        label="paper, ANPyC on MNIST",
        zorder=5,
    )
    ax.set_xscale("log")
    ax.set_xlabel("compression (trunk values before / after), log scale")
    ax.set_ylabel("test accuracy (%)")
    data, arch = results[0]["config"]["data"], results[0]["config"]["model"]["arch"]
    ax.set_title(f"Table IV schedule: {arch} on {'+'.join(data.get('sequence') or [data['benchmark']])}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
