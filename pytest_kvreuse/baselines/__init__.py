"""Saved runs and drift: numbered baselines (``storage``), the comparison of two runs
(``drift``) and the guard a test run compares against (``guard``)."""

# The storage directory, relative to the rootdir (here so the plugin can name it in its
# help without importing the storage code).
DEFAULT_STORAGE = ".kvreuse"
