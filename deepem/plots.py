"""Pictures people would rather look at than read: training curves, metrics by round, score histograms."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepem.io.atomic import atomic_path  # noqa: E402


def training_curve(history, path, title, background_share=None):
    """Loss (left); held-out average precision and accuracy (right), with the accuracy of calling
    every held-out patch background (``background_share``), which most are, dashed."""
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(epochs, [h.get("val_ap", np.nan) for h in history], color="tab:purple", label="average precision")
    ax2.plot(epochs, [h["val_accuracy"] for h in history], color="tab:green", label="accuracy")
    if background_share is not None:
        ax2.axhline(background_share, color="grey", linestyle="--", label="accuracy of 'all background'")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("held-out patches")
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def metrics_by_round(table, columns, path):
    groups = list(dict.fromkeys(table["micrographs"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.5), squeeze=False)
    for ax, group in zip(axes[0], groups):
        part = table[table["micrographs"] == group]
        for column in columns:
            ax.plot(part["round"], part[column], marker="o", label=column)
        ax.set_xlabel("round")
        ax.set_title(f"{group} micrographs")
        ax.set_xticks(sorted(part["round"].unique()))
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def score_histogram(scores, threshold, path, title):
    """Scores of candidates, those at or above ``threshold`` (the picks) in another colour."""
    bins = np.linspace(0, 1, 51)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if threshold is None:
        ax.hist(scores, bins=bins, color="tab:blue")
    else:
        picked = scores >= threshold
        ax.hist([scores[~picked], scores[picked]], bins=bins, stacked=True, color=["red", "tab:green"],
                label=[f"rejected ({int((~picked).sum())})", f"picked ({int(picked.sum())})"])
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("score")
    ax.set_ylabel("candidates")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
