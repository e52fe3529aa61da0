"""Self-supervised objectives; importing this package registers them in ``OBJECTIVES``."""

from ssl_siam.ssl import byol, dino, simsiam  # noqa: F401
from ssl_siam.ssl.base import OBJECTIVES, Objective

__all__ = ["OBJECTIVES", "Objective"]
