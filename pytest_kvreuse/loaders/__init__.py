"""Trace loaders: one module per format, registered and detected in ``registry``.

Kept empty on purpose: importing ``pytest_kvreuse.loaders.<module>`` runs this file first,
and the plugin imports the light modules (registry, fingerprint) at collection.
"""
