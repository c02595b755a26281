"""The body check of issue 21 (item 9), from the committed result files alone: each variant against the isotropic
cell of the untuned study, seed by seed (the same seeds, so the same data order), with paired 95% t intervals.

    python docs/results/mixer-study-reference/body_check.py > docs/results/mixer-study-reference/body_check.txt
"""

from pathlib import Path

from convmixer_lit.stats import paired_contrast
from convmixer_lit.study.pairs import contrast_line, paired, scores

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


def main() -> None:
    for variant, folder, base in PAIRS:
        lines = paired(scores(HERE / "results", variant), scores(folder, base))
        if lines:
            print(f"{variant} vs {base} ({folder.parent.name}):", *lines, sep="\n")
    for (a_new, a_old), (b_new, b_old) in INTERACTIONS:
        acc = [scores(HERE / "results", a_new), scores(UNTUNED, a_old),
               scores(HERE / "results", b_new), scores(UNTUNED, b_old)]
        seeds = sorted(set.intersection(*(set(x) for x in acc)))
        if not seeds:
            continue
        gains = [(acc[0][s] - acc[1][s]) - (acc[2][s] - acc[3][s]) for s in seeds]
        print(f"its gain with {a_old} - its gain with {b_old}: "
              + ", ".join(f"seed {s} {g:+.2f}" for s, g in zip(seeds, gains)) + "; "
              + contrast_line(paired_contrast(gains)))


if __name__ == "__main__":
    main()
