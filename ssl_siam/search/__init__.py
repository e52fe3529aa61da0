"""Finding tiles like a query in an archive: ``embed`` (an archive's tiles through a frozen encoder into a chunked,
resumable index: :mod:`ssl_siam.search.embed`, :mod:`ssl_siam.search.index`); ``search`` comes next."""
