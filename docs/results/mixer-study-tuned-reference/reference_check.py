"""Issue 21, item 9, in the tuned study, from the committed result files alone: timm's ViT built as the patch +
attention cell against the cell, given the same budget. Trial by trial (the same searched configuration, seed and
held-out split: scored on the held-out tenth of train) and final by final (the same seed: scored on val), with
paired 95% t intervals.

    python docs/results/mixer-study-tuned-reference/reference_check.py \
        > docs/results/mixer-study-tuned-reference/reference_check.txt
"""

from pathlib import Path

from convmixer_lit.study.pairs import paired, scores
from convmixer_lit.study.tuning_report import summarize

HERE = Path(__file__).parent
TUNED = HERE.parent / "mixer-study-tuned"
REFERENCE, CELL = "timm-patch-attention", "patch-attention"


def main() -> None:
    sides = ((HERE, REFERENCE), (TUNED, CELL))
    reference, cell = (scores(folder / "tuning" / "results", model, by="trial") for folder, model in sides)
    print(f"{REFERENCE} vs {CELL} (mixer-study-tuned), held-out top-1 of the same trials:")
    print(*paired(reference, cell, "trial"), sep="\n")
    for folder, model in sides:  # the trial its finals retrained, as the report reads it
        chosen = next(m.chosen for m in summarize(folder).models if m.entry == model)
        print(f"  {model} chose " + ("no trial yet" if chosen is None else
                                     f"trial {chosen.number} ({100 * chosen.score:.2f}%)"))
    print(f"{REFERENCE} vs {CELL} (mixer-study-tuned), val top-1 of the finals, each retraining its chosen trial:")
    print(*paired(scores(HERE / "results", REFERENCE), scores(TUNED / "results", CELL)) or ["  (no finals yet)"],
          sep="\n")


if __name__ == "__main__":
    main()
