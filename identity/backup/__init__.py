"""Backups of the whole database: one encrypted file, consistent, restorable into SQLite
or PostgreSQL (docs/operations.md, "Backup and restore").

``container`` is the encrypted, authenticated file; ``records`` and ``contents`` what it
holds (typed JSON lines); ``service`` makes and checks backups, ``restoring`` restores them.
"""

from identity.backup.container import BackupError, Secret
from identity.backup.restoring import NotEmpty, Restored, restore
from identity.backup.service import Progress, create, verify

__all__ = [
    "BackupError",
    "NotEmpty",
    "Progress",
    "Restored",
    "Secret",
    "create",
    "restore",
    "verify",
]
