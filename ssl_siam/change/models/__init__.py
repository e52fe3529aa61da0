"""The Siamese change model: siamese.py (shared / pseudo / asymmetric encoders, the model), fusion.py (FUSIONS),
attention.py (Oktay et al. 2018 gates), decoder.py (UNet decoder with deep supervision). Importing this package
registers the fusions; a new fusion is a file here with ``@FUSIONS.register("name")`` and its import line below."""

from ssl_siam.change.models import fusion  # noqa: F401  (absdiff, concat, concat_diff, learned)
