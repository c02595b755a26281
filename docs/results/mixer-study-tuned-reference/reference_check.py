"""Issue 21, item 9, in the tuned study, from the committed result files alone: timm's ViT built as the patch +
attention cell against the cell, given the same budget. Trial by trial (the same searched configuration, seed and
held-out split: scored on the held-out tenth of train) and final by final (the same seed: scored on val), with
paired 95% t intervals.

    python docs/results/mixer-study-tuned-reference/reference_check.py \
        > docs/results/mixer-study-tuned-reference/reference_check.txt
"""

from pathlib import Path

from convmixer_lit.study.pairs import paired, scores

HERE = Path(__file__).parent
TUNED = HERE.parent / "mixer-study-tuned"
REFERENCE, CELL = "timm-patch-attention", "patch-attention"


def main() -> None:
    trials = {model: scores(folder / "tuning" / "results", model, by="trial")
              for folder, model in ((HERE, REFERENCE), (TUNED, CELL))}
    print(f"{REFERENCE} vs {CELL} (mixer-study-tuned), held-out top-1 of the same trials:")
    print(*paired(trials[REFERENCE], trials[CELL], "trial"), sep="\n")
    for model, by_trial in trials.items():  # the finals retrain the best trial (the first of equals, as compare does)
        best = max(sorted(by_trial), key=by_trial.get, default=None)
        print(f"  {model} chose trial {best}" + (f" ({by_trial[best]:.2f}%)" if best is not None else ""))
    print(f"{REFERENCE} vs {CELL} (mixer-study-tuned), val top-1 of the finals, each retraining its chosen trial:")
    print(*paired(scores(HERE / "results", REFERENCE), scores(TUNED / "results", CELL)) or ["  (no finals yet)"],
          sep="\n")


if __name__ == "__main__":
    main()
