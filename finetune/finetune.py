"""Siamese damage finetuning: ``python finetune/finetune.py --config xbd_resnet50 key=value ...``.

Same arguments as ``ssl-siam finetune``; also runs under ``torchrun``.
"""

import sys

from ssl_siam.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
