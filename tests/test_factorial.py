"""The mixer study's factorial report on known numbers: effects by hand, pairing, verdicts, files."""

import numpy as np
import pytest

from convmixer_lit.study.factorial import acc_at_time, analyse, effects, find_design, write_factorial

MIXERS = ["attention", "conv", "pool", "identity"]


def result(stem: str, mixer: str, seed: int, acc: float, epochs: int = 4, wall: float = 600.0,
           lr: float = 0.003) -> dict:
    """A results/*.json as compare stores it, reduced to what the report reads."""
    return {"seed": seed, "best_val_acc": acc, "wall_time_s": wall, "parameters": 800_000,
            "train_flops_per_image": 1.2e9, "train_images_per_s": 90.0,
            "history": [{"epoch": e, "val_acc": acc - 0.02 * (epochs - 1 - e), "wall_time": wall * (e + 1) / epochs}
                        for e in range(epochs)],
            "study": {"entry": f"{stem}-{mixer}", "config": {
                "model": {"class_path": "convmixer_lit.models.Isotropic",
                          "init_args": {"stem": stem, "mixer": mixer, "lr": lr}},
                "trainer": {"max_epochs": epochs}}}}


def test_effects_of_a_tiny_table_by_hand():
    # 2 seeds x 2 stems x 2 mixers; y[seed, stem, mixer] (fractions)
    y = np.array([[[0.60, 0.70], [0.64, 0.72]],    # seed 0: stem effect at attention +4, at conv +2
                  [[0.62, 0.74], [0.64, 0.78]]])   # seed 1: stem effect at attention +2, at conv +4
    e = effects(y, ["attention", "conv"])
    # stem (conv - patch, mean over mixers): seed 0 (0.68 - 0.65) = 0.03, seed 1 (0.71 - 0.68) = 0.03
    assert e.stem.mean == pytest.approx(0.03) and e.stem.p_value is None  # no spread over seeds: no test
    # mixer attention - conv, mean over stems: seed 0 (0.62 - 0.71) = -0.09, seed 1 (0.63 - 0.76) = -0.13
    c = e.mixer_pairs[("attention", "conv")]
    assert c.mean == pytest.approx(-0.11)
    # t_{0.975, 1} = 12.706205; s = 0.02 sqrt(2) / sqrt(2)... per-seed values -0.09, -0.13: s = 0.028284, se = 0.02
    assert c.ci_high - c.mean == pytest.approx(12.706205 * 0.02, abs=1e-6)
    # interaction: stem effect at attention - at conv: seed 0 +0.02, seed 1 -0.02 -> mean 0
    assert e.interaction_pairs[("attention", "conv")].mean == pytest.approx(0.0, abs=1e-12)
    assert e.stem_within["attention"].mean == pytest.approx(0.03) and e.stem_within["conv"].mean == pytest.approx(0.03)
    # |mixer effect| - |stem effect| per seed: 0.09 - 0.03 = 0.06, 0.13 - 0.03 = 0.10
    assert e.more[("attention", "conv")].mean == pytest.approx(0.08)


def design_results(noise_seed: int = 0) -> dict[str, list[dict]]:
    """3 seeds; stem +1 pp everywhere; attention -8 pp against conv; pool -2, identity -5; a per-seed shift of
    +-3 pp shared by all cells (what pairing removes) and 0.2 pp of cell noise."""
    rng = np.random.default_rng(noise_seed)
    mixer_effect = {"attention": -0.08, "conv": 0.0, "pool": -0.02, "identity": -0.05}
    shift = {0: 0.03, 1: -0.03, 2: 0.0}
    by_model: dict[str, list[dict]] = {}
    for stem, stem_effect in (("patch", 0.0), ("conv", 0.01)):
        for mixer, m in mixer_effect.items():
            runs = [result(stem, mixer, s, 0.75 + stem_effect + m + shift[s] + rng.normal(0, 0.002),
                           wall=300.0 if mixer == "identity" else 900.0 if mixer == "attention" else 600.0)
                    for s in (0, 1, 2)]
            by_model[f"{stem}-{mixer}"] = runs
    return by_model


def test_pairing_resolves_effects_smaller_than_the_seed_shift(tmp_path):
    by_model = design_results()
    design = find_design(by_model)
    assert design.stems == ["patch", "conv"] and design.mixers == MIXERS and design.seeds == [0, 1, 2]
    e = effects(design.table(lambda r: r["best_val_acc"]), design.mixers)
    # a 1 pp stem effect under a +-3 pp seed shift: unpaired it would drown, paired it is resolved
    assert e.stem.mean == pytest.approx(0.01, abs=0.003) and e.stem.resolved
    assert e.mixer_pairs[("attention", "conv")].mean == pytest.approx(-0.08, abs=0.003)
    assert e.mixer_pairs[("attention", "conv")].resolved
    assert not any(c.resolved for c in e.interaction_pairs.values())  # no interaction was put in
    assert e.more[("attention", "conv")].resolved and e.more[("attention", "conv")].mean > 0
    paths = write_factorial(by_model, tmp_path)
    assert [p.name for p in paths] == ["factorial.md", "factorial.png"] and paths[1].stat().st_size > 10_000
    text = paths[0].read_text()
    assert "The conv stem is better, averaged over mixers" in text
    assert "Mixer conv beats attention by 8." in text
    assert "The mixer (attention vs conv) matters more than the stem" in text
    assert "No stem x mixer interaction is resolved" in text
    assert "## Equal wall time" in text and "by 5.0 min" in text  # the fastest cell (identity) ran 300 s


def test_equal_wall_time_reads_each_run_history():
    run = result("patch", "attention", 0, 0.70, epochs=4, wall=800.0)  # epochs end at 200, 400, 600, 800 s
    assert acc_at_time(450.0)(run) == pytest.approx(0.70 - 0.02 * 2)  # epochs 0, 1 done: the better is epoch 1
    assert acc_at_time(100.0)(run) is None


def test_longer_arm_and_incomplete_grids(tmp_path):
    by_model = design_results()
    by_model["patch-attention-long"] = [result("patch", "attention", 0, 0.74, epochs=16, wall=3600.0)]
    by_model["patch-conv-long"] = [result("patch", "conv", 0, 0.80, epochs=16, wall=2400.0)]
    by_model["patch-attention-lr"] = [result("patch", "attention", 0, 0.71, lr=0.001)]
    design = find_design(by_model)
    assert design.epochs == 4 and set(design.cells) == {(s, m) for s in ("patch", "conv") for m in MIXERS}
    assert set(design.arms) == {("patch", "attention", "max_epochs 16"), ("patch", "conv", "max_epochs 16"),
                                ("patch", "attention", "lr 0.001")}
    text = write_factorial(by_model, tmp_path)[0].read_text()
    assert "## Arms" in text and "| patch + attention | lr 0.001 | 0 | 71.00 |" in text
    main_gap = 100 * (by_model["patch-attention"][0]["best_val_acc"] - by_model["patch-conv"][0]["best_val_acc"])
    assert f"patch stem, attention − conv: {main_gap:+.2f} pp in the main design (4 epochs), -6.00 pp with " \
           "max_epochs 16 (seeds 0)" in text
    del by_model["conv-pool"]  # a missing cell: no factorial analysis at all, and no files
    assert find_design(by_model) is None and write_factorial(by_model, tmp_path / "none") == []
    assert find_design({"vit": [{"seed": 0, "best_val_acc": 0.6, "study": {"config": {"model": {}}}}]}) is None


def test_runs_that_shared_the_machine_are_left_out_of_the_wall_time_view(tmp_path):
    """Seed 2 ran two at a time (`compare --jobs 2`: one thread each of 2 cores, twice the wall time): the wall-time
    view and the cells' wall times come from seeds 0 and 1, which had the machine to themselves."""
    by_model = design_results()
    for runs in by_model.values():
        for run in runs:
            run["environment"] = {"cpu_cores": 2}  # compare's view: the whole machine
            run["torch_threads"] = 1 if run["seed"] == 2 else 2
            run["hardware"] = {"cpu_cores": run["torch_threads"]}  # the run's own view: pinned to its share
            run["concurrent_runs"] = 2 if run["seed"] == 2 else 1
            run["load_1min_max"] = 2.3  # within its 2 threads + 0.75: alone
            if run["seed"] == 2:
                run["wall_time_s"] *= 2
                for h in run["history"]:
                    h["wall_time"] *= 2
    text = write_factorial(by_model, tmp_path)[0].read_text()
    assert "by 5.0 min" in text  # identity's 300 s, not (300 + 300 + 600) / 3
    assert "Seed 2 ran several runs at once (`--jobs N`), so wall times here come from seeds 0, 1 alone." in text
    assert "| patch + identity | 800,000 | 1.200 | 90 (2 runs) | 5.0 |" in text  # speed: seeds 0 and 1 only
    assert "3 paired seeds" in text  # accuracies still use every seed
    # a run that shared the cores with other work (load far above its threads) has no speed of its own
    for runs in by_model.values():
        for run in runs:
            run["load_1min_max"] = 4.5
    text = write_factorial(by_model, tmp_path)[0].read_text()
    assert "| patch + identity | 800,000 | 1.200 | – | 5.0 |" in text and "no run here qualifies" in text


def test_tuned_finals_form_one_design_though_each_cell_has_its_own_lr(tmp_path):
    """In a tuned study every cell trains at its own chosen lr: that is the cell's, not a different recipe (arm)."""
    by_model = {}
    for stem in ("patch", "conv"):
        for j, mixer in enumerate(MIXERS):
            lr = 0.001 * (j + 1)
            runs = [result(stem, mixer, seed, 0.6 + 0.01 * j + 0.001 * seed, lr=lr) for seed in (1, 2, 3)]
            for run in runs:
                run["study"]["tuned"] = {"held_out_top1": 0.5, "trial": f"{stem}-{mixer}-trial0", "model.lr": lr}
            by_model[f"{stem}-{mixer}"] = runs
    design = find_design(by_model)
    assert design is not None and design.seeds == [1, 2, 3] and not design.arms
    assert len(design.cells) == 8
    # without the tuned record the same runs are eight recipes, no design
    for runs in by_model.values():
        for run in runs:
            del run["study"]["tuned"]
    assert find_design(by_model) is None


def test_analyse_is_the_one_place_the_numbers_come_from(tmp_path):
    """The markdown prints what `analyse` computed, and the wall-time view drops seeds that shared the machine."""
    by_model = design_results()
    for runs in by_model.values():  # seed 2 ran two at a time, one core each
        runs[2].update(torch_threads=1, environment={"cpu_cores": 2})
    f = analyse(by_model)
    assert f.epochs.seeds == [0, 1, 2] and f.time.seeds == [0, 1] and f.crowded == [2]
    assert f.budget_s == pytest.approx(300.0)  # the identity cells' mean wall time
    conv_conv = f.epochs.cells[(1, 1)]
    assert conv_conv.n == 3
    assert conv_conv.mean == pytest.approx(np.mean([r["best_val_acc"] for r in by_model["conv-conv"]]))
    assert f.costs[("patch", "attention")].wall_min == pytest.approx(15.0)
    text = (write_factorial(by_model, tmp_path)[0]).read_text()
    assert f"| stem: conv − patch (mean over mixers) | {100 * f.epochs.effects.stem.mean:+.2f} |" in text
    assert "Seed 2 ran several runs at once" in text
    assert analyse({"patch-conv": by_model["patch-conv"]}) is None  # one cell is no grid


def test_tuned_finals_all_run_two_at_a_time_and_one_is_missing(tmp_path):
    """The tuned study's finals as `run.sh` makes them: every run one of two at once, so there is no wall-time view
    (not a silent one from crowded runs); the report says the cells are tuned; and while a seed's run is missing,
    that seed is named as left out, not silently dropped."""
    by_model = design_results()
    for runs in by_model.values():
        for run in runs:
            run.update(torch_threads=1, environment={"cpu_cores": 2}, concurrent_runs=2)
            run["study"]["tuned"] = {"held_out_top1": 0.5, "trial": "x-trial0", "model.lr": 0.003}
    f = analyse(by_model)
    assert f.time is None and f.budget_s is None and f.crowded == [0, 1, 2] and f.epochs.effects is not None
    paths = write_factorial(by_model, tmp_path)
    text = paths[0].read_text()
    assert "Left out: no seed's runs had the machine to themselves" in text and "by 5.0 min" not in text
    assert "**Each cell is tuned:** it trains with its own `model.lr`" in text
    assert "Left out until every cell has them" not in text and paths[1].stat().st_size > 0
    by_model["conv-pool"] = by_model["conv-pool"][:2]  # seed 2's conv + pool has not finished
    text = write_factorial(by_model, tmp_path)[0].read_text()
    assert "2 paired seeds (0, 1" in text
    assert "Left out until every cell has them (a factorial pairs each seed across all cells): seed 2, which conv " \
           "+ pool lacks." in text


def test_which_factor_matters_more_labels_its_interval():
    by_model = design_results()
    text_lines = [line for line in write_factorial_text(by_model) if "matters more than" in line]
    assert text_lines and all("| − |stem|)." in line for line in text_lines)


def write_factorial_text(by_model) -> list[str]:
    from convmixer_lit.study.factorial import _markdown
    return _markdown(analyse(by_model))


def test_one_seed_names_where_its_wall_times_come_from():
    by_model = {m: runs[:1] for m, runs in design_results().items()}
    text = "\n".join(write_factorial_text(by_model))
    assert "One seed: effects and intervals need 2 or more paired seeds." in text
    assert "Wall times come from seed 0, whose runs had the whole machine." in text and "(below)" not in text
