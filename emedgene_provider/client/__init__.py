"""The Emedgene API without Airflow: calls, auth, retry policy, status model, payloads, errors."""
