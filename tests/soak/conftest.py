"""The soak's marker, registered here (pyproject.toml's marker list belongs to another change)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "soak: runs soak/run.py, the chaos soak (minutes; only with SOAK=1, see soak/README.md)",
    )
