from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Signed reports"

    def ready(self) -> None:
        # An erasure deletes our stored copies of the reports that name the person (reports/erasure.py).
        from reports.erasure import connect as erasure_connect

        erasure_connect()
