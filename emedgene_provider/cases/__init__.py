"""Case JSON for ``POST /api/cases/v2/cases``, without Airflow or HTTP.

- :mod:`~emedgene_provider.cases.builder`: a typed :class:`~emedgene_provider.cases.builder.Case`
  from what a LIMS knows, to the JSON, with every problem listed at once.
- :mod:`~emedgene_provider.cases.validation`: the local check of any case JSON, however it was
  made (the create operator runs it before sending).
- :mod:`~emedgene_provider.cases.batch_csv`: an Emedgene batch CSV manifest to case JSONs, through
  the builder.
- :mod:`~emedgene_provider.cases.extra_data`: the values the provider stamps into a case's
  ``extra_data`` (idempotency key, Family Id) and reads back.

A DAG file, a notebook or a LIMS script imports these without loading Airflow or an HTTP library.
"""
