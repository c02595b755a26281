"""The body check of issue 21 (item 9), from the committed result files alone: each variant against the isotropic
cell of the untuned study, seed by seed (the same seeds, so the same data order), with paired 95% t intervals.

    python docs/results/mixer-study-reference/body_check.py > docs/results/mixer-study-reference/body_check.txt
"""

import json
from pathlib import Path

from convmixer_lit.stats import paired_contrast

HERE = Path(__file__).parent
UNTUNED = HERE.parent / "mixer-study" / "results"
PAIRS = [  # (variant in this folder, what it is compared with: a folder and a model)
    ("timm-patch-attention", UNTUNED, "patch-attention"),
    ("patch-attention-pooled-norm", UNTUNED, "patch-attention"),
    ("patch-attention-pooled-norm", HERE / "results", "timm-patch-attention"),
    ("patch-conv-pooled-norm", UNTUNED, "patch-conv"),
]

# does pooled_norm help one mixer more than another? (its gain with attention) - (its gain with conv), per seed
INTERACTIONS = [(("patch-attention-pooled-norm", "patch-attention"), ("patch-conv-pooled-norm", "patch-conv"))]


def accuracies(folder: Path, model: str) -> dict[int, float]:
    out = {}
    for path in folder.glob(f"{model}-seed*.json"):
        result = json.loads(path.read_text())
        if result.get("best_val_acc") is not None:
            out[result["seed"]] = 100 * result["best_val_acc"]
    return out


def main() -> None:
    for variant, folder, base in PAIRS:
        a, b = accuracies(HERE / "results", variant), accuracies(folder, base)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        print(f"{variant} vs {base} ({folder.parent.name}):")
        for s in seeds:
            print(f"  seed {s}: {a[s]:.2f} vs {b[s]:.2f}  {a[s] - b[s]:+.2f} pp")
        c = paired_contrast([a[s] - b[s] for s in seeds])
        ci = "" if c.ci_low is None else f", 95% CI [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        p = "" if c.p_value is None else f", p = {c.p_value:.3g}"
        print(f"  mean {c.mean:+.2f} pp over {len(seeds)} paired seeds{ci}{p}")
    for (a_new, a_old), (b_new, b_old) in INTERACTIONS:
        acc = [accuracies(HERE / "results", a_new), accuracies(UNTUNED, a_old),
               accuracies(HERE / "results", b_new), accuracies(UNTUNED, b_old)]
        seeds = sorted(set.intersection(*(set(x) for x in acc)))
        if not seeds:
            continue
        gains = [(acc[0][s] - acc[1][s]) - (acc[2][s] - acc[3][s]) for s in seeds]
        c = paired_contrast(gains)
        ci = "" if c.ci_low is None else f", 95% CI [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        p = "" if c.p_value is None else f", p = {c.p_value:.3g}"
        print(f"its gain with {a_old} - its gain with {b_old}: "
              + ", ".join(f"seed {s} {g:+.2f}" for s, g in zip(seeds, gains)) + f"; mean {c.mean:+.2f} pp{ci}{p}")


if __name__ == "__main__":
    main()
