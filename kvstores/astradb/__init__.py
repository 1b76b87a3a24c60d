"""AstraDB and the Data API: `AstraDBByteStore` and `AstraDBStore`, on astrapy (``pip install
"kvstores[astradb]"``), sync and natively async. The README's "AstraDB" section documents
construction, the layout, the requests per batch and the ceilings."""

from kvstores.astradb.store import (
    MAX_BYTES_VALUE,
    MAX_DOCUMENT_CHARS,
    AstraDBBase,
    AstraDBByteStore,
    AstraDBStore,
)

__all__ = [
    "MAX_BYTES_VALUE",
    "MAX_DOCUMENT_CHARS",
    "AstraDBBase",
    "AstraDBByteStore",
    "AstraDBStore",
]
