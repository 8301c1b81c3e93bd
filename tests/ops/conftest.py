"""The real-worker fixture of the reliability suite, for the request-id flow test."""

from tests.reliability.conftest import start_worker  # noqa: F401 - a fixture
