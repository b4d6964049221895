"""Write provenance.json for a results folder: versions, config, command line, input checksums.

Checksums are fast fingerprints: size, mtime and a SHA-256 of the first 64 KiB plus 16 KiB
samples at eight evenly spaced offsets, so 20,000 micrographs take seconds.

Example:
    deepem provenance --config-json '{"seed": 0}' --inputs mics/*.mrc -o results/provenance.json \\
        --html results/provenance.html
"""

import contextlib
import hashlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from deepem.commands import common
from deepem.errors import DeepEMError
from deepem.io.atomic import atomic_path, write_text
from deepem.pages import provenance_page
from deepem.provenance import versions


def add_args(parser):
    parser.add_argument("--config-json", required=True, help="the resolved workflow config as JSON")
    parser.add_argument("--inputs", nargs="*", default=[], help="input files to fingerprint")
    common.add_device_arg(parser)
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--html", help="the record as an HTML page (for the report), less the input fingerprints")


def fingerprint(path, head=1 << 16, sample=1 << 14, samples=8):
    path = Path(path)
    try:
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            digest.update(fh.read(head))
            for k in range(1, samples + 1):
                fh.seek(max(0, stat.st_size * k // (samples + 1)))
                digest.update(fh.read(sample))
    except OSError as exc:
        raise DeepEMError(f"{path}: cannot fingerprint this input ({exc.strerror}); give the files the run read") from None
    return {"size": stat.st_size, "mtime": stat.st_mtime, "sha256_sampled": digest.hexdigest()}


def snakemake_version():
    try:
        import snakemake
    except ImportError:  # a job environment without Snakemake
        return None
    return snakemake.__version__


def snakemake_command():
    """The command line of the Snakemake process above this one (Linux /proc), or None."""
    pid = os.getppid()
    for _ in range(6):
        try:
            argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            if any(Path(a).name.startswith("snakemake") for a in argv[:2]):
                return shlex.join(argv)
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def main(args):
    try:
        config = json.loads(args.config_json)
    except ValueError as exc:
        raise DeepEMError(f"--config-json: not JSON ({exc}); give the resolved config as a JSON object") from None
    record = {
        "versions": {**versions(), "snakemake": snakemake_version()},
        "config": config,
        "command": snakemake_command() or shlex.join(sys.argv),
        "host": platform.node(),
        "device": args.device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "inputs": {str(Path(p).resolve()): fingerprint(p) for p in args.inputs},
    }
    with contextlib.ExitStack() as stack:  # both outputs are renamed into place only once both are written
        write_text(stack.enter_context(atomic_path(args.output)), json.dumps(record, indent=1, sort_keys=True) + "\n")
        if args.html:
            write_text(stack.enter_context(atomic_path(args.html)), provenance_page(record))
    print(f"provenance of {len(args.inputs)} inputs -> {args.output}")
