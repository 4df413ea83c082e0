"""How the suite shares two workers (`pytest -n 2 --dist loadgroup`, pytest-xdist).

Every worker builds the fixtures of the tests it runs, so tests that share an expensive
fixture go to one worker, as one xdist group:
- a folder whose conftest.py holds session fixtures (a trained MLflow run, prepared face
  folders and data sets) is one group;
- any other module is one group, so its module fixtures (a reference training run, an
  exported model, a PostgreSQL cluster) are built once;
- the layer tests hold no shared fixtures: they spread test by test.
Without `-n`, the marks change nothing.
"""

import pytest

SHARED_FOLDERS = {"data", "faces", "tracking"}
SPREAD_FOLDERS = {"layers"}


def pytest_collection_modifyitems(config, items):
    tests = config.rootpath / "tests"
    for item in items:
        path = item.path.relative_to(tests)
        folder = path.parts[0] if len(path.parts) > 1 else None
        if folder in SPREAD_FOLDERS:
            continue
        group = folder if folder in SHARED_FOLDERS else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))
