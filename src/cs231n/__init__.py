"""Compatibility names for notebooks written against the classic CS231n modules.

Each submodule re-exports the same objects from :mod:`nndl`; nothing lives here.
"""
