"""`bertkit convert`: a google-research/bert TensorFlow release (bert_model.ckpt.*, bert_config.json, vocab.txt)
as a Hugging Face BERT dir (transformers 5 dropped its converter). No TensorFlow needed: the checkpoint's
tensor-bundle format is read here.

    out = run_convert(cfg)   # convert.checkpoint=path/to/chinese_L-12_H-768_A-12 → BertForPreTraining dir

A TF checkpoint is an index (`<prefix>.index`, a LevelDB-style table: tensor name → dtype, shape, shard,
offset, size, CRC) and data shards (`<prefix>.data-00000-of-00001`, raw little-endian tensors). Names map to
transformers' BertForPreTraining (kernel → weight, transposed; gamma/beta → LayerNorm weight/bias; layer_N →
layer.N); optimizer slots (adam_m/adam_v) and global_step are skipped, and every weight of the model must be
found, so a checkpoint of another architecture is one clear error, not a half-random model.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from bertkit.atomic import atomic_dir, check_output
from bertkit.config import ConvertRecipe
from bertkit.errors import BertkitError
from bertkit.training.checkpoint import write_model

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic number
BLOCK_TRAILER = 5  # compression type byte, crc32c
# TensorFlow DataType enum → numpy dtype (what BERT checkpoints hold).
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16, 14: "bfloat16"}
SKIPPED = re.compile(r"(^|/)(adam_[mv]|global_step|bad_steps|loss_scale|good_steps)($|/)")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _block(data: bytes, handle: tuple[int, int], path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one table block: prefix-compressed keys, restart array at the end."""
    offset, size = handle
    if data[offset + size] != 0:
        raise BertkitError(f"{path}: compressed index blocks are not supported; re-save the checkpoint with TF")
    block = data[offset : offset + size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + length]))
        pos += length
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited and fixed as bytes."""
    out, pos = [], 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, kind = tag >> 3, tag & 7
        if kind == 0:
            value, pos = _varint(message, pos)
        elif kind == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            value, pos = message[pos : pos + width], pos + width
        else:
            raise ValueError(f"protobuf wire type {kind}")
        out.append((number, value))
    return out


def _entry(value: bytes) -> dict:
    """A BundleEntryProto: dtype, shape, shard_id, offset, size (and slices, for partitioned variables)."""
    entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0, "sliced": False}
    for number, field in _fields(value):
        if number == 1:
            entry["dtype"] = field
        elif number == 2:  # TensorShapeProto: repeated Dim (size = field 1)
            dims = [dict(_fields(d)) for n, d in _fields(field) if n == 2]
            entry["shape"] = [d.get(1, 0) for d in dims]
        elif number in (3, 4, 5):
            entry[{3: "shard", 4: "offset", 5: "size"}[number]] = field
        elif number == 7:
            entry["sliced"] = True
    return entry


def read_tf_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF (V2) checkpoint `<prefix>.index` + `<prefix>.data-*` by name."""
    index = Path(f"{prefix}.index")
    try:
        data = index.read_bytes()
        if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            raise BertkitError(f"{index}: not a TensorFlow checkpoint index (no table footer)")
        footer = data[-FOOTER_SIZE:]
        _, pos = _handle(footer)  # the metaindex: unused
        index_handle, _ = _handle(footer, pos)
        entries = {}
        for _, handle_bytes in _block(data, index_handle, index):
            for key, value in _block(data, _handle(handle_bytes)[0], index):
                if key:  # the empty key holds the bundle header
                    entries[key.decode("utf-8")] = _entry(value)
        header_shards = {e["shard"] for e in entries.values()}
        shards = {
            s: sorted(index.parent.glob(f"{index.name[: -len('.index')]}.data-{s:05d}-of-*")) for s in header_shards
        }
        tensors = {}
        for name, e in entries.items():
            if SKIPPED.search(name):
                continue
            if e["sliced"] or e["dtype"] not in DTYPES:
                raise BertkitError(f"{index}: tensor {name} is partitioned or of TF dtype {e['dtype']}; not supported")
            if not shards[e["shard"]]:
                raise BertkitError(f"{index}: data shard {e['shard']} of tensor {name} is missing beside it")
            with open(shards[e["shard"]][0], "rb") as f:
                f.seek(e["offset"])
                raw = f.read(e["size"])
            if DTYPES[e["dtype"]] == "bfloat16":
                array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
            tensors[name] = array.reshape(e["shape"]).astype(array.dtype.newbyteorder("="))
    except (OSError, ValueError, IndexError, struct.error) as e:
        raise BertkitError(f"{index}: cannot read the checkpoint ({type(e).__name__}: {e}); check its files") from e
    return tensors


def hf_name(tf_name: str) -> tuple[str, bool]:
    """(transformers BertForPreTraining parameter name, whether the TF tensor is transposed) of a TF name."""
    parts = []
    transpose = False
    for part in tf_name.split("/"):
        layer = re.fullmatch(r"layer_(\d+)", part)
        if layer:
            parts += ["layer", layer[1]]
        elif part == "kernel":
            parts.append("weight")
            transpose = True
        elif part in ("gamma", "output_weights"):
            parts.append("weight")
        elif part in ("beta", "output_bias"):
            parts.append("bias")
        else:
            parts.append(part)
    name = ".".join(parts)
    if name.endswith("_embeddings"):  # bert.embeddings.word_embeddings → its .weight
        name += ".weight"
    return name, transpose


def convert_state(tensors: dict[str, np.ndarray], model) -> dict[str, torch.Tensor]:
    """The model's state dict from the TF tensors; every parameter must be there with its shape."""
    state = {}
    for tf_name, array in tensors.items():
        name, transpose = hf_name(tf_name)
        state[name] = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array))
    expected = model.state_dict()
    # The decoder's weight is the word embeddings and its bias the MLM bias (tied); buffers are not weights.
    derived = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "bert.embeddings.position_ids"}
    missing = sorted(set(expected) - set(state) - derived)
    if missing:
        raise BertkitError(
            f"the checkpoint lacks {len(missing)} BERT weights (e.g. {', '.join(missing[:3])}); is it a "
            "google-research/bert BERT checkpoint?"
        )
    unused = sorted(set(state) - set(expected))
    if unused:
        raise BertkitError(f"the checkpoint has tensors BERT does not ({', '.join(unused[:3])}); is it a BERT?")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise BertkitError(
                f"{name}: shape {tuple(tensor.shape)} in the checkpoint, {tuple(expected[name].shape)} from "
                "bert_config.json; give the config that came with the checkpoint"
            )
    return state


def _checkpoint_files(source: Path) -> tuple[Path, Path, Path]:
    """(checkpoint prefix, bert_config.json, vocab.txt) of a release dir, or of a checkpoint prefix."""
    directory = source if source.is_dir() else source.parent
    if source.is_dir():
        indexes = sorted(directory.glob("*.index"))
        if len(indexes) != 1:
            raise BertkitError(
                f"{directory}: {len(indexes)} checkpoints (*.index) here; set convert.checkpoint to one prefix "
                "(e.g. .../bert_model.ckpt)"
            )
        prefix = indexes[0].with_suffix("")
    else:
        prefix = source
    for needed in (Path(f"{prefix}.index"), directory / "bert_config.json", directory / "vocab.txt"):
        if not needed.is_file():
            raise BertkitError(f"{needed}: not found; a google-research/bert release has it beside the checkpoint")
    return prefix, directory / "bert_config.json", directory / "vocab.txt"


def run_convert(cfg: ConvertRecipe) -> Path:
    """The release of convert.checkpoint as a BertForPreTraining dir in `<output_dir>/converted`."""
    from transformers import BertForPreTraining

    out, prefix, config, vocab = setup(cfg)
    model = BertForPreTraining(config)
    state = convert_state(read_tf_checkpoint(prefix), model)
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    return finish(cfg, out, model, prefix, vocab, len(state))


def setup(cfg: ConvertRecipe):
    """(output dir, checkpoint prefix, its BertConfig, vocab.txt), checked before any tensor is read."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import BertConfig

    c = cfg.convert
    if c.checkpoint is None:
        raise BertkitError("convert.checkpoint is not set; point it at a google-research/bert release dir")
    out = c.output_dir or cfg.output_dir / "converted"
    check_output(out, "convert.output_dir", cfg.overwrite)
    prefix, config_file, vocab = _checkpoint_files(Path(c.checkpoint))
    try:
        google = json.loads(config_file.read_text(encoding="utf-8"))
        config = BertConfig(**{k: v for k, v in google.items() if k != "directionality"})
    except StrictDataclassError as e:  # a value of the wrong type, e.g. "hidden_size": "x"
        raise BertkitError(f"{config_file}: {_wrong_type(e, google)}; fix the file") from None
    except (ValueError, TypeError) as e:
        raise BertkitError(f"{config_file}: not a BERT config ({e})") from None
    return out, prefix, config, vocab


_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "NoneType": "null"}


def _wrong_type(error: Exception, google: dict) -> str:
    """The one line "hidden_size must be an integer, got 'x'" from huggingface_hub's strict-dataclass message."""
    text = str(error)
    key = re.search(r"field '(\w+)'", text)
    if key is None or key.group(1) not in google:
        return text.splitlines()[-1].strip()
    kinds = list(dict.fromkeys(re.findall(r"expected (\w+), got", text)))
    if "float" in kinds and "int" in kinds:  # "a number" already takes an integer
        kinds.remove("int")
    wanted = " or ".join(_KINDS.get(kind, kind) for kind in kinds) or "another type"
    return f"{key.group(1)} must be {wanted}, got {google[key.group(1)]!r}"


def finish(cfg: ConvertRecipe, out: Path, model, prefix: Path, vocab: Path, tensors: int) -> Path:
    """The model with the release's tokenizer, written together or not at all."""
    from transformers import BertTokenizer

    # Google's names say the casing: cased_L-12…/multi_cased… keep case; uncased and Chinese lower-case.
    c = cfg.convert
    lowercase = c.lowercase if c.lowercase is not None else "_cased" not in f"_{prefix.parent.name.lower()}"
    tokenizer = BertTokenizer.from_pretrained(str(vocab.parent), do_lower_case=lowercase)
    with atomic_dir(out) as tmp:
        write_model(model, tokenizer, tmp)
    print(f"converted {prefix} ({tensors} tensors, lower-case {lowercase}) → {out} (loads with BertForPreTraining)")
    return out
