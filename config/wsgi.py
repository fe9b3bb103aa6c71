import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# What loading the project made (modules, models, URL patterns, serializers: some 105,000 objects)
# lives as long as the process: frozen, the garbage collector's full passes no longer walk it
# (docs/benchmarks.md, session 15: 8-77 ms of collection in a batch of 1,000 events, 11-19 ms frozen).
gc.freeze()
