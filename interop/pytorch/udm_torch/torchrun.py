"""torchrun (torch.distributed.run) with one fix, for Debian's torch 1.13 on Python 3.11.

    /usr/bin/python3 -m udm_torch.torchrun --standalone --nproc_per_node 2 -m udm_torch.train_ddp EXPORT --out NEW --steps 20

torch 1.13's torchrun parses --redirects and --tee (default "0") by looking the value up among
the members of the IntFlag Std; from Python 3.11 on, iterating a Flag yields only its single-bit
members, so "0" (Std.NONE) and "3" (Std.ALL) are not found, the parse returns None and every
launch stops with "AttributeError: 'NoneType' object has no attribute 'get'". This module makes
the parse take the value itself, Std(int(v)), and then runs torchrun's own main() with the same
arguments. Where the parse works (newer torch, older Python) nothing is changed. Plain
`torchrun --redirects 2 --tee 2 ...` also avoids the bug on this torch (stderr goes through a
log file and is copied to the console).
"""
import re
import sys

from torch.distributed.elastic.multiprocessing import api


def _from_str(cls, value):
    if re.fullmatch(r"\s*\d\s*", value):
        return cls(int(value))
    if re.fullmatch(r"(\s*\d+:\d\s*,?)+", value):
        return {int(rank): cls(int(std)) for rank, std in (item.split(":") for item in value.split(",") if item.strip())}
    raise ValueError(f"{value!r} is not a redirect setting such as 0, 3 or 0:3,1:0")


def patch():
    """Makes Std.from_str return Std.NONE for "0" again (a no-op where it already does)."""
    if api.Std.from_str("0") is None:
        api.Std.from_str = classmethod(_from_str)


def main():
    patch()
    from torch.distributed.run import main as torchrun_main
    sys.argv[0] = "torchrun"
    torchrun_main()


if __name__ == "__main__":
    main()
