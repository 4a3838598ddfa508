"""Thin FSDP2 trainer over stage shards. Never imports pyspark.

`run_training(plan, data, output, nproc=2)` runs a YAML stage plan under torchrun;
`python -m training.pretrain` is the per-rank entry point.
"""


def run_training(*args, **kwargs):  # lazy: `import training` stays light
    from training.cli import run_training as _run

    return _run(*args, **kwargs)
