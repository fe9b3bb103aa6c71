"""zohosim: a local stand-in for Zoho Accounts + CRM + Campaigns (see docs/zohosim.md). No Django here."""

from zohosim.app import create_app
from zohosim.config import SimConfig
from zohosim.server import LiveServer
from zohosim.state import SimState

__all__ = ["LiveServer", "SimConfig", "SimState", "create_app"]
