"""ZohoConfig: data centres, overrides, settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from sync.zoho import DATA_CENTRES, ZohoConfig


def make(**kw: object) -> ZohoConfig:
    return ZohoConfig(client_id="cid", client_secret="csecret-value", refresh_token="rtoken-value", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dc", "accounts", "api", "campaigns"),
    [
        ("us", "https://accounts.zoho.com", "https://www.zohoapis.com", "https://campaigns.zoho.com"),
        ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu", "https://campaigns.zoho.eu"),
        ("in", "https://accounts.zoho.in", "https://www.zohoapis.in", "https://campaigns.zoho.in"),
        (
            "au",
            "https://accounts.zoho.com.au",
            "https://www.zohoapis.com.au",
            "https://campaigns.zoho.com.au",
        ),
        ("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp", "https://campaigns.zoho.jp"),
        ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca", "https://campaigns.zohocloud.ca"),
        (
            "cn",
            "https://accounts.zoho.com.cn",
            "https://www.zohoapis.com.cn",
            "https://campaigns.zoho.com.cn",
        ),
        ("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa", "https://campaigns.zoho.sa"),
    ],
)
def test_the_data_centre_picks_the_hosts(dc: str, accounts: str, api: str, campaigns: str) -> None:
    config = make(dc=dc.upper())

    assert config.dc == dc
    assert config.accounts_url == accounts
    assert config.campaigns_url == campaigns
    assert DATA_CENTRES[dc].api_domain == api
    # No API override: the CRM host will come from the token's api_domain.
    assert config.api_domain == ""


def test_ca_and_sa_campaigns_hosts_are_marked_unverified() -> None:
    assert {dc.code for dc in DATA_CENTRES.values() if dc.campaigns_unverified} == {"ca", "sa"}


def test_overrides_win_over_the_data_centre() -> None:
    config = make(
        dc="eu",
        accounts_url="http://127.0.0.1:9/",
        api_domain="http://127.0.0.1:9",
        campaigns_url="http://127.0.0.1:9",
    )

    assert config.accounts_url == "http://127.0.0.1:9"
    assert config.api_domain == "http://127.0.0.1:9"
    assert config.campaigns_url == "http://127.0.0.1:9"


def test_an_unknown_data_centre_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Zoho data centre 'mars'"):
        make(dc="mars")


def test_it_is_built_from_settings(settings: Settings) -> None:
    settings.ZOHO_DC = "au"
    settings.ZOHO_CLIENT_ID = "id-from-settings"
    settings.ZOHO_CLIENT_SECRET = "secret-from-settings"
    settings.ZOHO_REFRESH_TOKEN = "refresh-from-settings"
    settings.ZOHO_CAMPAIGNS_URL = "http://campaigns.test"
    settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["k1", "k2"]
    settings.ZOHO_CRM_API_VERSION = "v7"
    settings.ZOHO_TIMEOUT_S = 7.5
    settings.ZOHO_API_USER_ID = "5725767000000000042"

    config = ZohoConfig.from_settings()

    assert config.client_id == "id-from-settings"
    assert config.refresh_token == "refresh-from-settings"
    assert config.accounts_url == "https://accounts.zoho.com.au"
    assert config.campaigns_url == "http://campaigns.test"
    assert config.campaigns_list_keys == ("k1", "k2")
    assert config.crm_api_version == "v7"
    assert config.timeout_s == 7.5
    assert config.api_user_id == "5725767000000000042"


def test_a_bad_data_centre_in_settings_is_a_configuration_error(settings: Settings) -> None:
    settings.ZOHO_DC = "moon"

    with pytest.raises(ImproperlyConfigured, match="moon"):
        ZohoConfig.from_settings()


def test_its_repr_hides_the_secrets() -> None:
    text = repr(make())

    assert "csecret-value" not in text
    assert "rtoken-value" not in text
    assert "cid" in text


def test_the_client_package_does_not_import_the_engine() -> None:
    """sync/zoho is handed the quota gate (ZOHO_QUOTA_GATE); it never imports sync.quota itself."""
    script = (
        "import sys, django; django.setup()\n"
        "import pkgutil, importlib, sync.zoho\n"
        "for m in pkgutil.iter_modules(sync.zoho.__path__): importlib.import_module(f'sync.zoho.{m.name}')\n"
        "print('sync.quota' in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )

    assert done.stdout.strip() == "False"
