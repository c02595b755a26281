"""A study: several models over several seeds, each (model, seed) one `fit` run, and one report over them all.

`python -m convmixer_lit.compare` is its command. One job per module, lower modules never importing higher ones:

    plan.py        which runs, from which configs and flags; the record that says "same settings"
    runs.py        what a run's files say (finished, resumable, not started) and how a finished one is saved
    relay.py       a child's console output into its log, progress-bar redraws thinned
    process.py     one `fit` child process: started, relayed, stopped on Ctrl+C or SIGTERM
    launchers/     local.py: up to N runs at once on this machine; slurm.py: each run a SLURM job (submitit)
    report.py      summary.csv, summary.md (Welch tests between models) and the figures
    factorial.py   the stem x mixer analysis of a factorial study (experiments/mixer-study/)
"""
