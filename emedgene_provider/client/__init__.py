"""The Emedgene API without Airflow: calls, auth, retry policy, status model, errors.

The case JSON these calls send is built and checked in :mod:`emedgene_provider.cases`.
"""
