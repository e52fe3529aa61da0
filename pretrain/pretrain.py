"""Self-supervised pretraining: ``python pretrain/pretrain.py --config simsiam_resnet50 key=value ...``.

Same arguments as ``ssl-siam pretrain``; also runs under ``torchrun``.
"""

import sys

from ssl_siam.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
