"""Training data as the C# side reads it (src/UnifiedDiffusion/Runs/DataSets.cs, Data/*.cs).

    open_data(name, experiment) -> ImageData | TokenData

Images: "mnist", "fashion-mnist" (IDX files in the udm data cache: $UDM_DATA, $XDG_CACHE_HOME/udm
or ~/.cache/udm, filled by `udm data get NAME`), "digits" (scikit-learn's digits.csv.gz, the first 1,500 rows) or
"idx:FOLDER" (train-images-idx3-ubyte and train-labels-idx1-ubyte, optionally .gz). Bytes map
linearly to [-1, 1]; the class count is the largest label + 1.

Text: "text:FILE" and "moby-dick" (lower-cased, 36 symbols, windows of text.window characters,
the first 90% train), "names" and the poem sets "wujue", "qijue", "line5" (split by FNV-1a hash).
The vocabulary is rebuilt from the training split exactly as Vocabulary.Build does (most frequent
first, ties by UTF-16 ordinal order, at most text.vocabularySize tokens with [PAD], [UNK], [MASK]
first), so token ids agree with the C# model's. Sequences with characters outside the vocabulary
are dropped, as the C# side does.
"""
import glob
import gzip
import json
import os
import struct

import torch

from .losses import FIRST_REGULAR, PAD

IMAGE_SETS = ("mnist", "fashion-mnist", "digits")
POEM_SETS = {"wujue": 20, "qijue": 28, "line5": 5}
TEXT_SETS = tuple(POEM_SETS) + ("moby-dick", "names")
SPECIALS = ("[PAD]", "[UNK]", "[MASK]")


class DataError(ValueError):
    """Data that cannot be read; the message says what to do."""


def cache_root():
    """The udm data cache as DataCache.DefaultRoot finds it: $UDM_DATA, else $XDG_CACHE_HOME/udm
    (when absolute), else $HOME/.cache/udm."""
    if os.environ.get("UDM_DATA"):
        return os.environ["UDM_DATA"]
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "udm")
    home = os.environ.get("HOME", "")
    if not home or not os.path.isabs(home):
        raise DataError("no data cache folder: HOME is not set; set UDM_DATA (or XDG_CACHE_HOME) to the folder `udm data get` filled")
    return os.path.join(home, ".cache", "udm")


def _cached(name):
    folder = os.path.join(cache_root(), name)
    if not os.path.isdir(folder):
        raise DataError(f"{name} is not in the udm data cache ({folder}); fetch it with `udm data get {name}` or set UDM_DATA")
    return folder


# ---------------------------------------------------------------- images

class ImageData:
    """Images float32 [N, C, H, W] in [-1, 1] and labels int64 [N]; batches drawn with replacement."""

    def __init__(self, name, images, labels):
        self.name, self.images, self.labels = name, images, labels
        self.class_count = int(labels.max().item()) + 1 if labels.numel() else 1
        self.kind = "images"

    def __len__(self):
        return self.images.shape[0]

    def sample(self, count, generator):
        index = torch.randint(0, len(self), (count,), generator=generator)
        return self.images.index_select(0, index), self.labels.index_select(0, index)


def _read_maybe_gzip(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path} is a truncated or corrupt gzip file ({e}); fetch it again") from None
    return raw


def _find(folder, stem):
    for path in (os.path.join(folder, stem), os.path.join(folder, stem + ".gz")):
        if os.path.exists(path):
            return path
    raise DataError(f"{folder} has no {stem} (or {stem}.gz); fetch the data again or fix the folder")


def read_idx_images(path):
    """uint8 [N, rows, cols] from an IDX image file (magic 0x00000803, big-endian sizes)."""
    data = _read_maybe_gzip(path)
    if len(data) < 16 or struct.unpack(">i", data[:4])[0] != 0x803:
        raise DataError(f"{path} is not an IDX image file (its magic number is not 0x00000803)")
    count, rows, cols = struct.unpack(">iii", data[4:16])
    if count <= 0 or rows <= 0 or cols <= 0 or len(data) < 16 + count * rows * cols:
        raise DataError(f"{path} is truncated or has an absurd header ({count} images of {rows}x{cols})")
    pixels = torch.frombuffer(bytearray(data[16:16 + count * rows * cols]), dtype=torch.uint8)
    return pixels.reshape(count, rows, cols)


def read_idx_labels(path):
    """uint8 [N] from an IDX label file (magic 0x00000801)."""
    data = _read_maybe_gzip(path)
    if len(data) < 8 or struct.unpack(">i", data[:4])[0] != 0x801:
        raise DataError(f"{path} is not an IDX label file (its magic number is not 0x00000801)")
    (count,) = struct.unpack(">i", data[4:8])
    if count <= 0 or len(data) < 8 + count:
        raise DataError(f"{path} is truncated or has an absurd header ({count} labels)")
    return torch.frombuffer(bytearray(data[8:8 + count]), dtype=torch.uint8)


def _images(name, pixels, labels, max_value):
    x = pixels.to(torch.float32).unsqueeze(1).mul_(2.0 / max_value).sub_(1.0)
    return ImageData(name, x.contiguous(), labels.to(torch.int64))


def open_idx(name, folder):
    """The training split of an IDX folder."""
    images = read_idx_images(_find(folder, "train-images-idx3-ubyte"))
    labels = read_idx_labels(_find(folder, "train-labels-idx1-ubyte"))
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{folder} holds {images.shape[0]} training images but {labels.shape[0]} labels")
    return _images(name, images, labels, 255.0)


def open_digits(folder):
    """scikit-learn's 8x8 digits (values 0..16): the first 1,500 rows train, as DataSets.OpenImages."""
    text = _read_maybe_gzip(os.path.join(folder, "digits.csv.gz")).decode("utf-8")
    rows = []
    for line in text.splitlines():
        parts = line.strip().split(",")
        if not line.strip():
            continue
        try:
            rows.append([int(float(p)) for p in parts])
        except ValueError:
            if rows:
                raise DataError(f"{folder}/digits.csv.gz has a line that is not numbers: {line[:40]!r}") from None
    if not rows or any(len(r) != 65 for r in rows):
        raise DataError(f"{folder}/digits.csv.gz is not 64 pixels and a label per line; fetch it again with `udm data get digits`")
    table = torch.tensor(rows[:1500], dtype=torch.int64)
    return _images("digits", table[:, :64].reshape(-1, 8, 8), table[:, 64], 16.0)


# ---------------------------------------------------------------- text

def _utf16(s):
    return s.encode("utf-16-be", "surrogatepass")


def fnv1a(s):
    """32-bit FNV-1a of the UTF-8 bytes (TextSplits.StableHash)."""
    h = 2166136261
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def split_by_hash(strings):
    """The training split of distinct strings: FNV-1a mod 100 below 90 (TextSplits.ByHash)."""
    return [s for s in strings if fnv1a(s) % 100 < 90]


def normalize(text):
    """PlainTextCorpus.Normalize: lower case, a-z and .,;:'!?- kept, anything else a space, runs of spaces one."""
    out, space = [], True
    for raw in text:
        lower = raw.lower()
        c = lower[0] if lower else raw
        if not ("a" <= c <= "z" or c in ".,;:'!?-"):
            c = " "
        if c == " ":
            if not space:
                out.append(" ")
            space = True
        else:
            out.append(c)
            space = False
    return "".join(out).rstrip()


def windows(text, window):
    """The training windows (first 90%) of a normalised text."""
    if window < 1:
        raise DataError(f"a window of {window} characters is too short; use at least 1")
    text = normalize(text)
    all_windows = [text[i:i + window] for i in range(0, len(text) - window + 1, window)]
    return all_windows[:int(len(all_windows) * 0.90)]


def is_han(code):
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x323AF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


def poem_lines(paragraphs):
    lines, current = [], []
    for paragraph in paragraphs:
        for ch in paragraph:
            if is_han(ord(ch)):
                current.append(ch)
            elif current:
                lines.append("".join(current))
                current = []
        if current:
            lines.append("".join(current))
            current = []
    return lines


def poem_set(folder, name):
    """The training split of a poem set (PoemCorpus.Derive): wujue/qijue quatrains or line5 lines."""
    poems = []
    for path in sorted(glob.glob(os.path.join(folder, "poet.*.json")), key=_utf16):
        with open(path, encoding="utf-8-sig") as f:
            items = json.load(f)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("paragraphs"), list):
                poems.append([p for p in item["paragraphs"] if isinstance(p, str)])
    if name == "line5":
        candidates = (line for poem in poems for line in poem_lines(poem) if len(line) == 5)
    else:
        size = 5 if name == "wujue" else 7
        candidates = ("".join(lines) for lines in map(poem_lines, poems) if len(lines) == 4 and all(len(x) == size for x in lines))
    return split_by_hash(list(dict.fromkeys(candidates)))


def name_set(folder, max_length):
    """The training split of the names (NameCorpus.Load)."""
    names = []
    for path in sorted(glob.glob(os.path.join(folder, "*.txt")), key=_utf16):
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            names.extend(line.rstrip("\n").rstrip("\r") for line in f)
    cleaned = (n.strip().lower() for n in names)
    kept = (n for n in cleaned if 0 < len(n) <= max_length and all("a" <= c <= "z" or c in "-'" for c in n))
    return split_by_hash(list(dict.fromkeys(kept)))


def build_vocabulary(texts, max_size):
    """Vocabulary.Build: specials, then characters by descending count, ties in UTF-16 ordinal order."""
    counts = {}
    for text in texts:
        for ch in text:
            counts[ch] = counts.get(ch, 0) + 1
    chosen = sorted(counts, key=lambda c: (-counts[c], _utf16(c)))[:max(0, max_size - FIRST_REGULAR)]
    return list(SPECIALS) + chosen


class TokenData:
    """Token sequences int64 [N, L] and their vocabulary; batches drawn with replacement."""

    def __init__(self, name, texts, vocabulary, length):
        ids = {token: i for i, token in enumerate(vocabulary)}
        kept = [t for t in texts if all(ids.get(c, 0) >= FIRST_REGULAR for c in t)]
        if not kept:
            raise DataError(f"the text set {name} has no training sequences")
        rows = []
        for text in kept:
            if len(text) > length:
                raise DataError(f"{text[:24]!r} has {len(text)} characters but sequences hold {length}")
            rows.append([ids[c] for c in text] + [PAD] * (length - len(text)))
        self.name, self.vocabulary, self.length = name, vocabulary, length
        self.sequences = torch.tensor(rows, dtype=torch.int64)
        self.uses_padding = bool(self.sequences.eq(PAD).any().item())
        self.kind = "text"

    def __len__(self):
        return self.sequences.shape[0]

    def sample(self, count, generator):
        index = torch.randint(0, len(self), (count,), generator=generator)
        return self.sequences.index_select(0, index), None


# ---------------------------------------------------------------- by name

def open_data(name, experiment):
    """The training data a config's "data" names, read as the C# side reads it."""
    raw = name.strip()
    key = raw.lower()
    text = experiment.get("text") or {}
    if key.startswith("idx:"):
        folder = raw[4:]
        if not os.path.isdir(folder):
            raise DataError(f"IDX folder {folder} does not exist; give a folder with train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz)")
        return open_idx(key, folder)
    if key in ("mnist", "fashion-mnist"):
        return open_idx(key, _cached(key))
    if key == "digits":
        return open_digits(_cached(key))
    window, vocabulary_size = int(text.get("window", 32)), int(text.get("vocabularySize", 3000))
    if key.startswith("text:") or key == "moby-dick":
        path = raw[5:] if key.startswith("text:") else os.path.join(_cached(key), "data.txt")
        if not os.path.isfile(path):
            raise DataError(f"text file {path} does not exist; give an existing file (text:FILE)")
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            texts, length = windows(f.read(), window), window
    elif key == "names":
        length = int(text.get("nameLength", 12))
        texts = name_set(_cached(key), length)
    elif key in POEM_SETS:
        texts, length = poem_set(_cached("poems"), key), POEM_SETS[key]
    else:
        raise DataError(f"the PyTorch kit does not read data set {name!r}: it reads {', '.join(IMAGE_SETS)}, idx:FOLDER, "
                        f"{', '.join(TEXT_SETS)} and text:FILE (the toy point sets train in seconds with `udm train`)")
    if not texts:
        raise DataError(f"the data set {key} has no training sequences; check the files")
    return TokenData(key, texts, build_vocabulary(texts, vocabulary_size), length)
