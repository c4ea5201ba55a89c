"""Catalogs of tracks: ``store`` (the LanceDB catalog, ``Catalog``), ``npz`` (rows in memory,
``.npz`` files), ``indexing`` (``ttmr index``), ``ray`` (indexing on Ray). ``Catalog`` is
imported on first use, so that importing this package does not import LanceDB."""


def __getattr__(name: str):
    if name == "Catalog":
        from runtime.catalog.store import Catalog

        return Catalog
    raise AttributeError(f"module 'runtime.catalog' has no attribute {name!r}")
