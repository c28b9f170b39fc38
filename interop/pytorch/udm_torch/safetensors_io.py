"""safetensors files with the standard library and torch only (Debian has no safetensors package).

Layout: 8 bytes little-endian header length N, N bytes of JSON {name: {"dtype", "shape",
"data_offsets": [begin, end]}, optional "__metadata__": {str: str}}, then the data; offsets count
from the first byte after the header, tensors are little-endian and row-major.

    tensors, metadata = read(path)             # OrderedDict name -> CPU tensor, in file order
    write(path, tensors, metadata=None)        # any name -> tensor mapping
    check(path, expected)                      # the header against a state dict, before reading data
    load_state(module, tensors, source)        # strict copy into a module, errors name the tensor

Every problem raises SafetensorsError with one line that names the file and the tensor.
"""
import json
import os
import struct
import sys
from collections import OrderedDict

import torch

# safetensors dtype -> (torch dtype, bytes per element)
DTYPES = OrderedDict([
    ("F64", (torch.float64, 8)), ("F32", (torch.float32, 4)), ("F16", (torch.float16, 2)), ("BF16", (torch.bfloat16, 2)),
    ("I64", (torch.int64, 8)), ("I32", (torch.int32, 4)), ("I16", (torch.int16, 2)), ("I8", (torch.int8, 1)),
    ("U8", (torch.uint8, 1)), ("BOOL", (torch.bool, 1)),
])
_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not the safetensors the caller needs; the message says which tensor and why."""


def dtype_name(dtype):
    """The safetensors name of a torch dtype (F32, I64, ...)."""
    if dtype not in _NAMES:
        raise SafetensorsError(f"safetensors has no type for {dtype}")
    return _NAMES[dtype]


def _numel(shape):
    count = 1
    for d in shape:
        count *= d
    return count


def read_header(path):
    """(header dict without "__metadata__", metadata dict, data start, data length), validated:
    known dtypes, non-negative integer shapes, offsets that match the shape, inside the file and
    not overlapping."""
    file = os.path.basename(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsError(f"{file} is truncated: it has no header")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8 or length > _MAX_HEADER:
            raise SafetensorsError(f"{file}: its header claims {length} bytes but only {size - 8} follow; the file is truncated or not safetensors")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, ValueError):
        raise SafetensorsError(f"{file}: its header is not JSON; the file is damaged or not safetensors") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{file}: its header is not a JSON object; the file is not safetensors")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{file}: __metadata__ must map strings to strings")
    data_length = size - 8 - length
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise SafetensorsError(f"{file}: tensor {name} has no description")
        dtype = entry.get("dtype")
        if dtype not in DTYPES:
            raise SafetensorsError(f"{file}: tensor {name} has dtype {dtype!r}, which is not one of {', '.join(DTYPES)}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise SafetensorsError(f"{file}: tensor {name} has shape {shape!r}; a shape is a list of non-negative integers")
        offsets = entry.get("data_offsets")
        width = DTYPES[dtype][1]
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or offsets[0] < 0 or offsets[1] - offsets[0] != _numel(shape) * width or offsets[1] > data_length):
            raise SafetensorsError(f"{file}: tensor {name} lies outside the file's {data_length} data bytes "
                                   f"(data_offsets {offsets}, {_numel(shape) * width} bytes needed); the file is truncated or damaged")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise SafetensorsError(f"{file}: tensors {first} and {second} overlap; the file is damaged")
    return header, metadata, 8 + length, data_length


def read(path, names=None):
    """(OrderedDict name -> CPU tensor in file order, metadata dict). `names` limits what is read."""
    header, metadata, start, _ = read_header(path)
    tensors = OrderedDict()
    with open(path, "rb") as f:
        for name, entry in header.items():
            if names is not None and name not in names:
                continue
            begin, end = entry["data_offsets"]
            torch_dtype, _ = DTYPES[entry["dtype"]]
            f.seek(start + begin)
            data = bytearray(f.read(end - begin))
            if len(data) != end - begin:
                raise SafetensorsError(f"{os.path.basename(path)}: tensor {name} is cut short; the file is truncated")
            if not data:
                tensor = torch.empty(entry["shape"], dtype=torch_dtype)
            else:
                tensor = torch.frombuffer(data, dtype=torch_dtype)
                if sys.byteorder != "little":
                    tensor = _swap(tensor)
                tensor = tensor.reshape(entry["shape"])
            tensors[name] = tensor
    return tensors, metadata


def _swap(tensor):
    """Little-endian data on a big-endian machine: reverse the bytes of every element."""
    width = tensor.element_size()
    if width == 1:
        return tensor
    raw = tensor.view(torch.uint8).reshape(-1, width).flip(1).contiguous()
    return raw.view(tensor.dtype).reshape(-1)


def write(path, tensors, metadata=None):
    """Writes name -> tensor (CPU or not, any layout) to `path`, in the given order. The header is
    padded with spaces to a multiple of 8 bytes, as the reference implementation does."""
    header, blobs, offset = OrderedDict(), [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, tensor in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("__metadata__ is reserved and cannot name a tensor")
        t = tensor.detach().to("cpu").contiguous()
        dtype = dtype_name(t.dtype)
        if t.numel() == 0:
            blob = b""
        else:
            flat = t.reshape(-1)
            if sys.byteorder != "little":
                flat = _swap(flat)
            blob = bytearray(t.numel() * t.element_size())
            torch.frombuffer(blob, dtype=torch.uint8).copy_(flat.view(torch.uint8))
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def check(path, expected):
    """Checks the header of `path` against `expected` (name -> tensor, e.g. a module's state dict)
    as `udm import` does: every tensor present, the same dtype and shape, inside the file, and
    nothing else. Raises SafetensorsError naming the first tensor that does not fit."""
    file = os.path.basename(path)
    header, _, _, _ = read_header(path)
    for name, tensor in expected.items():
        if name not in header:
            raise SafetensorsError(f"{file} has no tensor {name} {list(tensor.shape)}, which the network in config.json needs")
        entry = header[name]
        wanted = dtype_name(tensor.dtype)
        if entry["dtype"] != wanted:
            raise SafetensorsError(f"{file}: tensor {name} is {entry['dtype']}; it must be {wanted}")
        if list(entry["shape"]) != list(tensor.shape):
            raise SafetensorsError(f"{file}: tensor {name} has shape {entry['shape']}; the network in config.json needs {list(tensor.shape)}")
    for name in header:
        if name not in expected:
            raise SafetensorsError(f"{file} holds tensor {name}, which the network in config.json does not have; export from a matching run")


def load_state(module, tensors, source="the weights"):
    """Copies name -> tensor into `module` after checking names, dtypes and shapes against its
    state dict (strict); raises SafetensorsError naming the first mismatch."""
    state = module.state_dict()
    for name, target in state.items():
        if name not in tensors:
            raise SafetensorsError(f"{source} has no tensor {name} {list(target.shape)}, which the network needs")
        t = tensors[name]
        if t.dtype != target.dtype:
            raise SafetensorsError(f"{source}: tensor {name} is {t.dtype}; it must be {target.dtype}")
        if tuple(t.shape) != tuple(target.shape):
            raise SafetensorsError(f"{source}: tensor {name} has shape {list(t.shape)}; the network needs {list(target.shape)}")
    for name in tensors:
        if name not in state:
            raise SafetensorsError(f"{source} holds tensor {name}, which the network does not have")
    module.load_state_dict(OrderedDict((k, tensors[k]) for k in state), strict=True)
    return module
