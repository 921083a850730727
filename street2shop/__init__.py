"""street2shop: street-to-shop fashion retrieval, from crawl to served index.

The pipeline's folders install as sub-packages of this one: ``storage`` (versioned
artifacts), ``shop`` (the demo shop), ``crawler``, ``cleaning``, ``models``, ``retrieval``,
``tasks`` and ``flows`` (Prefect), ``service`` (the search API).
"""

__version__ = "0.1.0"
