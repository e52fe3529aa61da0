"""Self-supervised objectives, one file each; importing this package registers them in ``OBJECTIVES``.

A new objective is one file here (its options dataclass and its ``@OBJECTIVES.register("name")`` class) plus its
module on the import line below, whose order is the order objectives are listed in (the default, simsiam, first).
"""

from ssl_siam.ssl import simsiam, byol, dino  # noqa: F401, I001
from ssl_siam.ssl.base import OBJECTIVES, Objective

__all__ = ["OBJECTIVES", "Objective"]
