"""A trained KenLM model as the platform uses it: CCNet's per-document perplexity.

CCNet (Wenzek et al. 2020, `cc_net/perplexity.py`, `DocLM`) scores a document paragraph
by paragraph (its lines) and combines them length-weighted:

    ppl(doc) = 10 ** ( -sum_p log10 P(p) / sum_p (n_tokens(p) + 1) )

where log10 P(p) is KenLM's score of the whole paragraph with <s> and </s> and the +1
counts </s>. A long paragraph weighs as much as its tokens, so a document's one short
line of boilerplate barely moves it. Each paragraph is prepared by
`ccnet_normalize.prepare_line`, the function that wrote the training corpus.

Two deliberate differences from CCNet: lines that are empty after preparation are
skipped (CCNet scores each as an empty sentence, so a document's blank lines between
paragraphs would change its perplexity), and the value is not rounded to 0.1. A
document with no token at all (empty or only whitespace and control characters) has no
perplexity: NaN here, null in the `quality_kenlm_ppl` column, as CCNet leaves the field
out; the ensemble then drops the KenLM signal for that document.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from curation.quality.ccnet_normalize import paragraphs
from curation.quality.model_dir import ModelDir, read_model_dir

KIND = "kenlm"
MODEL_FILE = "model.binary"


def load_kenlm_file(path: str | Path, field: str = "model") -> Any:
    """The kenlm.Model in `path`; a missing or unreadable file is a one-line ValueError."""
    import kenlm

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{field}: KenLM model file {p} not found")
    config = kenlm.Config()
    config.show_progress = False  # its progress bar on stderr would interleave with Spark's
    config.arpa_complain = kenlm.ARPALoadComplain.NONE
    try:
        return kenlm.Model(str(p), config)
    except (OSError, RuntimeError, ValueError, MemoryError) as e:
        msg = " ".join(str(e).split())[-300:] or type(e).__name__
        raise ValueError(f"{field}: {p} is not a readable KenLM model ({msg})") from None


def doc_log_score(lm: Any, text: str) -> tuple[float, int]:
    """(sum of log10 probabilities, number of scored tokens incl. one </s> per paragraph)."""
    total, length = 0.0, 0
    for para in paragraphs(text):
        total += lm.score(para, bos=True, eos=True)
        length += len(para.split()) + 1
    return total, length


def doc_perplexity(lm: Any, text: str) -> float:
    """CCNet's length-weighted perplexity of `text` under `lm`; NaN when it has no token."""
    total, length = doc_log_score(lm, text)
    return 10.0 ** min(-total / length, 300.0) if length else math.nan  # no float overflow


class KenLMModel:
    """A loaded KenLM model directory (model.binary + provenance.json)."""

    def __init__(self, model_dir: ModelDir, lm: Any):
        self.model_dir = model_dir
        self.lm = lm

    @classmethod
    def load(cls, path: str | Path, verify: bool = True,
             field: str = "quality.kenlm_model") -> KenLMModel:
        """Read and check the directory (`verify`: the model's sha256, on the driver), then
        load the model; every failure is a one-line ValueError naming the file."""
        md = read_model_dir(path, KIND, verify=verify, field=field)
        return cls(md, load_kenlm_file(md.model_file, field))

    @property
    def order(self) -> int:
        return int(self.lm.order)

    def doc_perplexity(self, text: str) -> float:
        return doc_perplexity(self.lm, text)

    def perplexities(self, texts: list[str]) -> list[float | None]:
        """Per-document perplexities of a batch; None (null) where a document has no token."""
        out: list[float | None] = []
        for text in texts:
            ppl = doc_perplexity(self.lm, text or "")
            out.append(ppl if math.isfinite(ppl) else None)
        return out
