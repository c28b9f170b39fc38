"""Reader and writer of the weight exchange format of UnifiedDiffusion.Networks.WeightExport.

A folder holds STEM.json, a JSON list of {"name", "shape", "offset", "dtype"} (offset in bytes,
dtype "float32" or "int64"), and STEM.bin, the raw little-endian row-major data. The network
weights use the stem "weights"; optional extra tensors (a test input, the C# output) use "extra".
Only the standard library and torch are needed.
"""
import json, os, struct, sys
from collections import OrderedDict

import torch

_DTYPES = {"float32": (torch.float32, "f", 4), "int64": (torch.int64, "q", 8)}


def read_tensors(folder, stem="weights"):
    """OrderedDict name -> CPU tensor, in file order."""
    with open(os.path.join(folder, stem + ".json"), encoding="utf-8") as f:
        index = json.load(f)
    with open(os.path.join(folder, stem + ".bin"), "rb") as f:
        data = f.read()
    tensors = OrderedDict()
    for entry in index:
        name, shape, offset, dtype = entry["name"], [int(d) for d in entry["shape"]], int(entry["offset"]), entry["dtype"]
        if dtype not in _DTYPES:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        torch_dtype, code, width = _DTYPES[dtype]
        count = 1
        for d in shape:
            count *= d
        end = offset + count * width
        if offset < 0 or end > len(data):
            raise ValueError(f"{name} lies outside {stem}.bin (truncated file?)")
        if name in tensors:
            raise ValueError(f"{name} appears twice in {stem}.json")
        if sys.byteorder == "little" and count > 0:
            tensor = torch.frombuffer(bytearray(data[offset:end]), dtype=torch_dtype).clone()
        else:
            tensor = torch.tensor(struct.unpack_from(f"<{count}{code}", data, offset), dtype=torch_dtype)
        tensors[name] = tensor.reshape(shape)
    return tensors


def read_extra(folder):
    """The extra tensors (empty when there are none)."""
    if not os.path.exists(os.path.join(folder, "extra.json")):
        return OrderedDict()
    return read_tensors(folder, "extra")


def write_tensors(folder, stem, tensors):
    """Writes name -> tensor (float32 or int64) in the same format, in the order given."""
    os.makedirs(folder, exist_ok=True)
    index, offset = [], 0
    with open(os.path.join(folder, stem + ".bin"), "wb") as f:
        for name, tensor in tensors.items():
            t = tensor.detach().cpu().contiguous()
            dtype = {torch.float32: "float32", torch.int64: "int64"}.get(t.dtype)
            if dtype is None:
                raise ValueError(f"{name}: unsupported dtype {t.dtype}")
            code = _DTYPES[dtype][1]
            blob = struct.pack(f"<{t.numel()}{code}", *t.reshape(-1).tolist())
            f.write(blob)
            index.append({"name": name, "shape": list(t.shape), "offset": offset, "dtype": dtype})
            offset += len(blob)
    with open(os.path.join(folder, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)


def load_into(module, folder, name_map=lambda name: name):
    """Copies the weights in FOLDER into MODULE (strict: same names after NAME_MAP, same shapes)."""
    saved = OrderedDict((name_map(k), v) for k, v in read_tensors(folder, "weights").items())
    state = module.state_dict()
    missing = [k for k in state if k not in saved]
    unexpected = [k for k in saved if k not in state]
    if missing or unexpected:
        raise KeyError(f"weight names differ: missing {missing[:5]} (of {len(missing)}), unexpected {unexpected[:5]} (of {len(unexpected)})")
    for k, v in saved.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{k}: shape {tuple(v.shape)} in the file, {tuple(state[k].shape)} in the module")
    module.load_state_dict(saved, strict=True)
    return module


if __name__ == "__main__":
    for name, t in read_tensors(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "weights").items():
        print(name, tuple(t.shape), t.dtype)
