"""De-identification quality and speed; prints one JSON object.

Text: per-type recall, precision and F1 on the generated PHI corpus (tests/phi_corpus.py) and reports
per second. Real text: spans found in MedPix 2.0 captions and histories (published de-identified, so
names and IDs found there are false alarms), when ../shared/data is present. DICOM: files per second
on copies of pydicom's CT_small.dcm.

    python benchmarks/deid.py [--n 2000] [--seed 0] [--dicom-files 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.phi_corpus import make_corpus, score_spans  # noqa: E402

from medfuse.text.deid import Deidentifier  # noqa: E402


def text_quality(n: int, seed: int) -> dict:
    corpus = make_corpus(n, seed)
    deid = Deidentifier()
    start, cpu = time.perf_counter(), time.process_time()
    predicted = [[(s.start, s.end, s.type) for s in deid.find(text)] for text, _ in corpus]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    scores = score_spans(corpus, predicted)
    surrogate = Deidentifier(mode="surrogate", seed=seed)
    s_start = time.perf_counter()
    for i, (text, _) in enumerate(corpus):
        surrogate.redact(text, patient_id=str(i % 50))
    return {
        "reports": n,
        "seed": seed,
        "chars_per_report": round(sum(len(t) for t, _ in corpus) / n),
        "per_type": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in s.items()} for k, s in scores.items()},
        "macro_f1": round(sum(s["f1"] for s in scores.values()) / len(scores), 4),
        "reports_per_s": round(n / wall, 1),
        "reports_per_cpu_s": round(n / cpu, 1),
        "surrogate_reports_per_s": round(n / (time.perf_counter() - s_start), 1),
    }


def medpix_false_alarms() -> dict | None:
    manifest = REPO.parent / "shared" / "data" / "medpix2" / "manifest.jsonl"
    if not manifest.is_file():
        return None
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    texts = list(dict.fromkeys(r[c] for r in rows for c in ("caption", "case_history", "case_findings") if r.get(c)))
    deid = Deidentifier()
    start = time.perf_counter()
    counts = Counter(s.type for t in texts for s in deid.find(t))
    return {"texts": len(texts), "spans_per_type": dict(sorted(counts.items())),
            "spans_per_1000_texts": round(1000 * sum(counts.values()) / len(texts), 2),
            "texts_per_s": round(len(texts) / (time.perf_counter() - start), 1),
            "note": "dates and ages found here are real dates/ages in published cases, not errors"}


def dicom_speed(n_files: int) -> dict | None:
    try:
        import pydicom
    except ImportError:
        return None
    from medfuse.data.dicom_deid import deidentify_dicom_dir

    source = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(n_files):
            shutil.copy(source, src / f"{i:05d}.dcm")
        start = time.perf_counter()
        audit = deidentify_dicom_dir(src, Path(tmp) / "out", seed=0)
        elapsed = time.perf_counter() - start
    return {"files": n_files, "files_per_s": round(n_files / elapsed, 1), "failed": audit.files_failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom-files", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps({"text": text_quality(args.n, args.seed), "medpix": medpix_false_alarms(),
                      "dicom": dicom_speed(args.dicom_files)}, indent=2))


if __name__ == "__main__":
    main()
