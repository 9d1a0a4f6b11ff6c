"""Exports checkpoints written by `rtchunk_train.train --checkpoint-only` as policy bundles, in place.

    python -m rtchunk_train.export DIR [DIR ...]
"""

import argparse
from pathlib import Path

from .bundle import write_expected
from .train import export_trained, load_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directories", type=Path, nargs="+", help="folders holding checkpoint.npz and train.json")
    args = parser.parse_args()
    for directory in args.directories:
        config, params, stats, meta, losses = load_checkpoint(directory)
        write_expected(directory, export_trained(directory, config, params, stats, meta, losses))
        print(f"wrote {directory}")


if __name__ == "__main__":
    main()
