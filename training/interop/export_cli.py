"""`sharpen export`: a training checkpoint as a Hugging Face Llama directory.

The result loads with `transformers.AutoModelForCausalLM.from_pretrained(OUTPUT)` and
`AutoTokenizer.from_pretrained(OUTPUT)`, offline. transformers is imported only when the
command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint as a Hugging Face Llama model (safetensors, config, tokenizer)",
        description=__doc__,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="checkpoint dir (RUN/checkpoints/STAGE), or a run dir for its latest checkpoint",
    )
    p.add_argument("--output", required=True, type=Path, help="directory to write")
    p.add_argument(
        "--plan",
        type=Path,
        help="the run's stage plan (model shape, RoPE base per stage); default: RUN/plan.yaml",
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        help="the run's tokenizer.json, or the mixture output dir holding tokenizer/; "
        "default: RUN/tokenizer.json if the run saved one, else weights only",
    )
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument(
        "--verify", action="store_true", help="reload with transformers and compare logits"
    )
    p.add_argument("--force", action="store_true", help="replace an export already in --output")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from training.interop.export import export_checkpoint

    summary = export_checkpoint(
        args.checkpoint,
        args.output,
        args.tokenizer,
        plan=args.plan,
        dtype=getattr(torch, args.dtype),
        verify=args.verify,
        overwrite=args.force,
    )
    print(json.dumps(summary, indent=2))
    diff = summary.get("max_abs_logit_diff")
    if diff is not None and args.dtype == "float32" and diff > 1e-4:
        raise ValueError(f"exported model's logits differ from ours by {diff:.3g}")
    return 0
