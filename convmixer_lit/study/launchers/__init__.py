"""Ways to run a study's runs: `local` (this machine, up to N at once) and `slurm` (one SLURM job per run)."""
