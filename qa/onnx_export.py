"""A model's ONNX file for the ``onnx`` and ``onnx-int8`` runtimes: exported once, kept in the user's cache,
checked on every load.

The file is made here, offline, from the model's own folder (the packaged all-MiniLM-L6-v2, or any
sentence-transformers folder): torch exports the transformer to ONNX (``onnx``, float32), and ONNX
Runtime's dynamic quantization makes the int8 file from that (``onnx-int8``). Nothing is downloaded.
sentence-transformers' own ONNX backend needs optimum-onnx, which requires transformers < 4.58 while
sentence-transformers 6 requires transformers 5: the two cannot be installed together, so qa exports
with torch's exporter and ONNX Runtime's quantizer, which are what that backend calls underneath.

Each export is a folder of the cache, one per (model files' checksum, runtime, ``EXPORT_VERSION``)::

    <user cache>/qa/onnx/<model checksum>-<runtime>-v<EXPORT_VERSION>/
        model.onnx        the transformer, its last hidden state as output
        tokenizer.json    the model's tokenizer (Hugging Face ``tokenizers``)
        export.json       how to pool, the input length, the model it came from, each file's size and SHA-256

An export is written to a hidden sibling folder and renamed into place under a file lock, so two first
uses at once export once and a killed export leaves nothing half-written. Before it is kept, the export
must give the vectors the torch runtime gives (float32: cosine ≥ 0.9999 on probe texts; int8: ≥ 0.95).
Every load checks each file's size and SHA-256 against ``export.json``; a damaged entry is exported anew,
never used. Loading an export imports neither torch nor sentence-transformers: only exporting does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa import storage
from qa.errors import QAError

logger = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Changes whenever an export would come out differently (exporter settings, quantization, files)."""
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FILE = "export.json"
POOLING_MODES = ("mean", "cls", "max")
MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.95}
"""How close an export's vectors must be to the torch runtime's on the probe texts for it to be kept. int8
measured 0.989 to 0.999 on SQuAD paragraphs and questions, 0.97 on a one-word text; float32 differs by
about 2e-7."""
PROBE_TEXTS = (
    "Which treaty has Pakistan not joined?",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
    "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway.",
    "ok",
    " ".join(f"word{i}" for i in range(400)),  # longer than the model reads: checks the truncation
)


class ExportFailed(QAError):
    """The model could not be exported to ONNX, or its export does not give the model's vectors."""


@dataclass(frozen=True)
class Export:
    """A checked export: where it is, its ONNX file's bytes, and how its output becomes a vector."""

    folder: Path
    onnx: bytes
    """The ONNX file, read once to check its checksum and handed as is to ONNX Runtime."""
    pooling: str
    """``mean`` (over the tokens the attention mask keeps), ``cls`` (the first token) or ``max``."""
    max_tokens: int
    lower_case: bool
    """Whether sentence-transformers lower-cases texts before the tokenizer, for this model."""

    @property
    def tokenizer(self) -> Path:
        return self.folder / TOKENIZER_FILE


def cache_root() -> Path:
    """``$QA_CACHE_DIR/onnx`` if set, else ``onnx`` in the user's cache folder (``~/.cache/qa`` on Linux)."""
    if os.environ.get("QA_CACHE_DIR"):
        return Path(os.environ["QA_CACHE_DIR"]) / "onnx"
    import platformdirs

    return Path(platformdirs.user_cache_dir("qa", appauthor=False)) / "onnx"


# --------------------------------------------------------------------------------- the model's files


def model_checksum(folder: Path) -> str:
    """SHA-256 of the model folder's files (relative path, size and SHA-256 of each).

    Hashing the 90 MB of weights takes about 0.3 s here, which a cold ``qa ask`` would pay every time:
    each file's SHA-256 is remembered in the cache by (path, size, modification time, inode), as git's
    index does, and computed again only when one of those changes.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ExportFailed(f"{folder} has no files: it is not a model folder")
    memo_file = cache_root() / "file-hashes.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
        memo = memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    changed = False
    for path in files:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
        sha = memo.get(key)
        if not isinstance(sha, str):
            sha, changed = _sha256_file(path), True
            memo[key] = sha
        digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{sha}\n".encode())
    if changed:
        _write_json_atomically(memo_file, memo)
    return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomically(path: Path, data: object) -> None:
    """Best effort (the memo only saves time): a temporary file renamed over the old one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        logger.debug("cannot remember file checksums in %s: %s", path, error)


def encoder_settings(folder: Path) -> dict[str, Any]:
    """How sentence-transformers turns the model's output into a vector, read from the model's folder.

    Raises:
        ExportFailed: The model is not a transformer followed by mean, CLS or max pooling (and perhaps a
            normalisation), which is all the ONNX runtimes reproduce.
    """
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
        pooling_path = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        pooling_config = json.loads((folder / pooling_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as error:
        raise ExportFailed(
            f"{folder} is not a sentence-transformers model folder with a pooling module ({error})"
        ) from error
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportFailed(f"the ONNX runtimes run a transformer, pooling and normalisation; this model has {kinds}")
    modes = [
        mode
        for mode in POOLING_MODES
        if pooling_config.get(f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token")
    ]
    others = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v is True]
    if isinstance(pooling_config.get("pooling_mode"), str):  # later sentence-transformers write one name
        modes, others = [pooling_config["pooling_mode"]], []
    if len(modes) != 1 or len(others) > 1 or modes[0] not in POOLING_MODES:
        raise ExportFailed(
            f"the ONNX runtimes pool by {', '.join(POOLING_MODES)}; this model's pooling is {pooling_config}"
        )
    try:
        config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return {"pooling": modes[0], "lower_case": bool(config.get("do_lower_case", False))}


# ------------------------------------------------------------------------------------------- loading


def export_folder(source: Path, runtime: str) -> Path:
    """The cache folder of the export of the model in ``source`` for ``runtime`` (which may not exist yet)."""
    return cache_root() / f"{model_checksum(source)[:24]}-{runtime}-v{EXPORT_VERSION}"


def read_export(folder: Path) -> Export:
    """The export in ``folder``, every file checked against its recorded size and SHA-256.

    Raises:
        ExportFailed: Missing, incomplete or damaged.
    """
    try:
        record = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
        files, settings = record["files"], record["encoder"]
        onnx = (folder / ONNX_FILE).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportFailed(f"the ONNX export at {folder} is incomplete ({error})") from error
    for name, expected in files.items():
        data = onnx if name == ONNX_FILE else _read(folder / name)
        if (
            data is None
            or len(data) != expected.get("bytes")
            or hashlib.sha256(data).hexdigest() != expected.get("sha256")
        ):
            raise ExportFailed(f"the ONNX export at {folder} is damaged: {name} does not match its checksum")
    if set(files) != {ONNX_FILE, TOKENIZER_FILE}:
        raise ExportFailed(f"the ONNX export at {folder} lists {sorted(files)}, not its two files")
    return Export(folder, onnx, str(settings["pooling"]), int(settings["max_tokens"]), bool(settings["lower_case"]))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def load_export(name: str, source: Path, runtime: str, *, check: Callable[[Export], float] | None = None) -> Export:
    """The checked export of the model ``name`` (files in ``source``) for ``runtime``, made first if needed.

    ``check`` is given a new export and returns the lowest cosine between its vectors and the torch
    runtime's on :data:`PROBE_TEXTS`; an export under :data:`MIN_COSINE` is not kept.

    Raises:
        ExportFailed: The export cannot be made (the message says why), or does not give the model's vectors.
    """
    folder = export_folder(source, runtime)
    try:
        return read_export(folder)
    except ExportFailed as error:
        if folder.exists():
            logger.warning("%s; exporting it again", error)
    try:
        with storage.writer_lock(folder, wait=True):  # another process exporting it: wait, then use its export
            try:
                return read_export(folder)
            except ExportFailed:
                pass
            logger.warning("exporting %s to ONNX (%s) into %s, once", name, runtime, folder)
            storage.write_atomically(folder, lambda temporary: _export(name, source, runtime, temporary, check))
    except OSError as error:
        # A cache folder that cannot be written (a read-only or missing home, a file in its place) is a
        # failed export, which the default runtime answers by falling back to torch.
        raise ExportFailed(
            f"the ONNX export cannot be written into {folder.parent} ({error.strerror or error}); "
            "set QA_CACHE_DIR to a folder you can write to"
        ) from error
    return read_export(folder)


# ----------------------------------------------------------------------------------------- exporting


def _export(name: str, source: Path, runtime: str, folder: Path, check: Callable[[Export], float] | None) -> None:
    """Write the export of ``source`` for ``runtime`` into the empty ``folder``."""
    settings = encoder_settings(source)
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:
        raise ExportFailed(f"exporting to ONNX needs torch and transformers ({error})") from error
    try:
        import onnxruntime  # noqa: F401 - fail before the slow part when it is missing
    except ImportError as error:
        raise ExportFailed(f"the ONNX runtimes need onnxruntime and onnx, which qa installs ({error})") from error
    from qa.embedding import SentenceTransformerEncoder

    max_tokens = SentenceTransformerEncoder(name).max_tokens
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(str(source))
            # safetensors only: a pytorch_model.bin is a pickle, which runs code as it loads.
            model = AutoModel.from_pretrained(str(source), use_safetensors=True)
            model.eval()
    except (OSError, ValueError) as error:
        raise ExportFailed(f"cannot read the model in {source} ({error})") from error
    if not getattr(tokenizer, "is_fast", False):
        raise ExportFailed(f"the ONNX runtimes need a fast (Rust) tokenizer; {name} has {type(tokenizer).__name__}")
    tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    sample = tokenizer(["a first text", "and a second, longer text"], padding=True, return_tensors="pt")
    inputs = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in sample]

    class LastHiddenState(torch.nn.Module):
        """The transformer with its inputs by position, as the exporter traces them."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(inputs, tensors, strict=True))).last_hidden_state

    float_file = folder / ("model-float32.onnx" if runtime != "onnx" else ONNX_FILE)
    axes = {"0": "batch", "1": "tokens"}
    try:
        with torch.no_grad(), _quiet():
            # The TorchScript exporter: the dynamo one needs onnxscript, and gives the same graph here.
            torch.onnx.export(
                LastHiddenState(model),
                tuple(sample[key] for key in inputs),
                str(float_file),
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes={key: {int(k): v for k, v in axes.items()} for key in [*inputs, "last_hidden_state"]},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        if runtime == "onnx-int8":
            _quantize(float_file, folder / ONNX_FILE)
            float_file.unlink()
    except Exception as error:  # the exporter and quantizer raise many kinds; each is an export failure
        raise ExportFailed(f"exporting {name} to ONNX failed: {type(error).__name__}: {error}") from error
    files = {
        file: {"bytes": (folder / file).stat().st_size, "sha256": _sha256_file(folder / file)}
        for file in (ONNX_FILE, TOKENIZER_FILE)
    }
    record = {
        "export_version": EXPORT_VERSION,
        "model": name,
        "runtime": runtime,
        "source": str(source),
        "source_checksum": model_checksum(source),
        "encoder": {**settings, "max_tokens": max_tokens, "inputs": inputs},
        "made_with": _versions(),
        "files": files,
    }
    (folder / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if check is not None:
        lowest = check(read_export(folder))
        if lowest < MIN_COSINE[runtime]:
            raise ExportFailed(
                f"the {runtime} export of {name} gives vectors too far from the model's (cosine {lowest:.4f}, "
                f"at least {MIN_COSINE[runtime]} wanted); use --runtime torch"
            )
        record["check"] = {"probe_texts": len(PROBE_TEXTS), "lowest_cosine_to_torch": round(lowest, 6)}
        (folder / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _quantize(source: Path, target: Path) -> None:
    """int8 weights, and activations quantized as each call runs (dynamic quantization: no calibration data).

    Per-channel weights, full 8-bit range: what sentence-transformers' ``avx512_vnni`` configuration sets.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's warnings about traced shapes (expected for a transformer), the quantizer's
    advice and transformers' progress bar: qa's stderr is for qa's progress and errors."""
    import warnings

    from transformers.utils import logging as transformers_logging

    bar = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.disable(logging.WARNING)  # the quantizer logs its advice as a warning, on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        if bar:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found
