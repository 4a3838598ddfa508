"""The `sharpen` command: every stage is reachable, and the trainer stays Spark-free."""

from __future__ import annotations

import subprocess
import sys

from sharpen.cli import build_parser, main


def test_import_training_does_not_import_pyspark():
    code = ("import sys, training, training.pretrain, training.cli, mixtures.shards; "
            "assert not any(m == 'pyspark' or m.startswith('pyspark.') for m in sys.modules), "
            "'pyspark imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_stage_has_a_subcommand():
    parser = build_parser()
    for argv in (["curate", "--input", "a", "--output", "b"],
                 ["curate", "dedup", "--input", "a", "--output", "b", "--threshold", "0.8",
                  "--master", "local[1]"],
                 ["mix", "--curated", "c", "--recipe", "r.yaml", "--output", "o"],
                 ["train", "--plan", "p.yaml", "--data", "d", "--output", "o"],
                 ["export", "runs/demo/train", "--output", "o"],
                 ["sandbox", "run", "prog.py", "--tests", "t.py", "--timeout", "2"],
                 ["demo"]):
        args = parser.parse_args(argv)
        assert callable(args.func)


def test_user_errors_are_one_line_not_a_traceback(capsys, tmp_path):
    rc = main(["mix", "--curated", str(tmp_path), "--recipe", str(tmp_path / "nope.yaml"),
               "--output", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "Traceback" not in err
