"""The test run's settings: config.settings, with a secret key of the tests' own.

config.settings refuses to start without SECRET_KEY when DEBUG is off (as in production).
The key goes into the environment, so the processes tests start (workers, manage.py) get it too.
"""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-never-used-outside-the-test-run-0123456789")

from config.settings import *  # noqa: F403
