"""Root of the test run: puts the project on sys.path (so plain `pytest` works, not only
`python -m pytest`) and loads the plugin that lets the test flush empty the ledger."""

pytest_plugins = ["tests.ledger_flush", "tests.browser"]
