"""Evaluation on an official split: accuracy, per-class precision/recall/F1, macro-F1, confusion
matrix, written as JSON, Markdown and PNG plots. Works on the shipped ONNX model (no torch) and
on training checkpoints (.pt, torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from .classify import EmotionClassifier, model_path, softmax, tta_views
from .data import EMOTIONS, load
from .runs import read_log


class CheckpointClassifier:
    """A training checkpoint behind EmotionClassifier's `predict_proba`, so evaluation treats both alike."""

    def __init__(self, path: str | Path) -> None:
        from .checkpoints import load_checkpoint, pick_device  # torch: only for .pt checkpoints

        self.model, _ = load_checkpoint(path)
        self.paths = [Path(path)]
        self.device = pick_device("auto")
        self.model.to(self.device)
        self.labels = EMOTIONS

    def predict_proba(self, faces: np.ndarray, tta: bool = False) -> np.ndarray:
        from .checkpoints import predict_logits

        views = tta_views(faces) if tta else [faces]
        return np.mean([softmax(predict_logits(self.model, v, self.device)) for v in views], axis=0)


def label_source(ferplus: str | Path | None) -> str:
    """Which labels a score was measured on, as reports and model cards name them."""
    return "FER+ majority" if ferplus else "FER2013"


def load_classifier(models: list[str | Path] | None) -> EmotionClassifier | CheckpointClassifier:
    paths = [model_path(m) for m in models or [None]]
    if len(paths) == 1 and paths[0].suffix in (".pt", ".pth"):
        return CheckpointClassifier(paths[0])
    return EmotionClassifier(list(paths))


def predict(classifier: EmotionClassifier | CheckpointClassifier, faces: np.ndarray, tta: bool, batch: int = 1024) -> np.ndarray:
    return np.concatenate([classifier.predict_proba(faces[i : i + batch], tta=tta) for i in range(0, len(faces), batch)])


def metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Every figure the report shows, from true labels and predicted probabilities."""
    pred = probs.argmax(1)
    ids = list(range(len(EMOTIONS)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    return {
        "images": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(EMOTIONS)
        },
        "confusion": confusion_matrix(labels, pred, labels=ids).tolist(),
    }


def evaluate(
    data: str | Path,
    models: list[str | Path] | None = None,
    split: str = "PrivateTest",
    tta: bool = False,
    ferplus: str | Path | None = None,
) -> dict:
    """Evaluate one model (or an averaged ensemble of ONNX models) on one split of a data set."""
    part = load(data, ferplus=ferplus).split(split)
    classifier = load_classifier(models)
    report = metrics(part.labels, predict(classifier, part.pixels, tta))
    report.update(
        models=[str(p) for p in classifier.paths],
        data=str(data),
        split=split,
        labels=label_source(ferplus),
        tta=tta,
    )
    return report


def markdown(report: dict) -> str:
    """The report as Markdown: a summary line, a per-class table and the confusion matrix."""
    lines = [
        f"**{report['split']}** ({report['images']} images, {report['labels']} labels{', TTA' if report['tta'] else ''}): "
        f"accuracy **{report['accuracy']:.2%}**, macro-F1 {report['macro_f1']:.4f}",
        "",
        "| emotion | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, m in report["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", "", "| | " + " | ".join(EMOTIONS) + " |", "|---" * 8 + "|"]
    for name, row in zip(EMOTIONS, report["confusion"]):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.array(report["confusion"])
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(norm, display_labels=EMOTIONS).plot(ax=ax, cmap="Blues", values_format=".2f", colorbar=False)
    ax.set_title(f"{report['split']}: accuracy {report['accuracy']:.2%} (rows normalised)")
    plt.setp(ax.get_xticklabels(), rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(log: list[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch of a training run (from its log.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [r["train_loss"] for r in log], label="train")
    a.plot(epochs, [r["val_loss"] for r in log], label="PublicTest")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(epochs, [r["train_acc"] for r in log], label="train (augmented)")
    b.plot(epochs, [r["val_acc"] for r in log], label="PublicTest")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(report: dict, out_dir: str | Path) -> list[Path]:
    """report.json, report.md, confusion.png, and curves.png when the model is a run's checkpoint."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "confusion.png"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    plot_confusion(report, paths[2])
    log = Path(report["models"][0]).parent / "log.csv"
    if log.is_file():
        plot_curves(read_log(log), out / "curves.png")
        paths.append(out / "curves.png")
    return paths
