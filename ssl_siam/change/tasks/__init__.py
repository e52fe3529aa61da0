"""Change tasks, one file each; importing this package registers them in ``TASKS``."""

from ssl_siam.change.tasks import binary, damage, semantic  # noqa: F401
from ssl_siam.change.tasks.base import TASKS, ChangeTask, change_task

__all__ = ["TASKS", "ChangeTask", "change_task"]
