"""File plumbing: atomic writes, the checkpoint file format, the restricted unpickler and
the verified download. Everything above reads and writes files through these."""

__all__: list[str] = []
