"""Fill the ledger with two years of believable consent history, through the one write path.

Every event is recorded by `services.consent_record`, so versions, hashes, current states and outbox
rows are the real thing; contacts come from `contact_resolve`, bounces from `suppression_add`.
Occurred-at times lie in the past two years; recorded-at is now, as for any back-filled import.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from compliance import services
from compliance.management.commands.create_demo_users import demo_users_ensure
from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentStatus,
    Contact,
    ErasureRequest,
    Frequency,
    LegalHold,
    PolicyVersion,
    Purpose,
    Source,
    Suppression,
)
from compliance.roles import Role

KEY_PREFIX = "demo:"
API_CLIENT_NAME = "demo-mobile-app"
EVENTS_PER_TRANSACTION = 400
HISTORY_DAYS = 730
# The demo's erased person (among the contacts with an email and a name, in the order made) and why.
ERASED_DEMO_CONTACT = 2
ERASURE_DEMO_REASON = "Ticket DEMO-14: the person asked by email to be forgotten (GDPR Art. 17)"
LEGAL_HOLD_DEMO_REASON = "Demo: a customer complaint under review; keep the data until it is closed"

EMAIL = "email_marketing"
SMS = "sms_marketing"
PHONE = "phone_marketing"
PROFILING = "profiling"
SHARING = "third_party_sharing"
PURPOSES = (EMAIL, SMS, PHONE, PROFILING, SHARING)
MARKETING = (EMAIL, SMS, PHONE)

POLICIES = (
    (
        "2024-09",
        date(2024, 9, 1),
        """Privacy notice (version 2024-09)

Who we are. Northwind Retail GmbH, Hafenstrasse 12, 20457 Hamburg, is responsible for your data.
Our data protection officer is reachable at privacy@northwind.example.

What we use your data for. With your consent we send you offers by email, text message or phone,
personalise the app from your purchases and app usage (profiling), and share your contact details
with selected partners. You choose each of these separately and may withdraw any of them at any
time, in the app, on our website, by phone or with the unsubscribe link in every email.

How long we keep it. Marketing consent is asked again after 24 months (phone and partner sharing
after 12). We keep the record of your decisions for as long as we process your data and three
years after, as proof.

Your rights. Access, rectification, erasure, restriction, portability and objection (Articles 15
to 21 GDPR), and a complaint to the supervisory authority.""",
    ),
    (
        "2026-03",
        date(2026, 3, 1),
        """Privacy notice (version 2026-03)

Who we are. Northwind Retail GmbH, Hafenstrasse 12, 20457 Hamburg, is responsible for your data.
Our data protection officer is reachable at privacy@northwind.example.

What changed. We now name our partners for third-party sharing (Blue Harbour Logistics, Lumen
Insurance Services) and we use Zoho CRM and Zoho Campaigns (Zoho Corporation B.V., Netherlands)
to manage contacts and send emails. You may choose how often we write to you: daily, weekly or
monthly.

What we use your data for. With your consent we send you offers by email, text message or phone,
personalise the app from your purchases and app usage (profiling), and share your contact details
with the partners named above. Each choice is separate and may be withdrawn at any time, in the
app, on our website, by phone or with the unsubscribe link in every email.

How long we keep it. Marketing consent is asked again after 24 months (phone and partner sharing
after 12). We keep the record of your decisions for as long as we process your data and three
years after, as proof.

Your rights. Access, rectification, erasure, restriction, portability and objection (Articles 15
to 21 GDPR), and a complaint to the supervisory authority.""",
    ),
)

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Julia", "Karim",
    "Lea", "Lukas", "Maja", "Mehmet", "Mia", "Noah", "Olga", "Paul", "Sofia", "Tom", "Yusuf", "Zoe",
    "Amelie", "Elias", "Fatima", "Ida", "Leon", "Marie", "Nico",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Schulz", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Braun", "Zimmermann",
    "Krüger", "Hartmann", "Lange", "Yilmaz", "Kaya", "Nowak", "Kowalski", "Dubois", "Rossi", "Silva",
)  # fmt: skip
ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.de", "post.example.eu")
USER_AGENTS: dict[str, tuple[str, ...]] = {
    Source.MOBILE_APP: (
        "NorthwindApp/4.12.0 (iPhone; iOS 18.3; Scale/3.00)",
        "NorthwindApp/4.11.2 (Android 15; Pixel 8)",
        "NorthwindApp/4.9.0 (Android 14; SM-S921B)",
    ),
    Source.WEB_PORTAL: (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0",
    ),
    Source.EMAIL_LINK: (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 Mobile",
    ),
}
ADMIN_REASONS = (
    "Customer wrote to privacy@ asking to withdraw all marketing; recorded by hand (ticket #{n}).",
    "Opt-in recorded against the wrong contact by an agent; compensating event (ticket #{n}).",
    "Customer confirmed by letter that they withdraw this consent (ref. DSR-{n}).",
)


@dataclass
class _Plan:
    """One demo contact's identity and how many events its history gets."""

    index: int
    identity: services.ContactIdentity
    events: int
    purposes: list[str] = field(default_factory=list)


class _Writer:
    """Generates one contact's history step by step and records it through the service."""

    def __init__(
        self,
        *,
        rnd: random.Random,
        seed: int,
        lookups: services.Lookups,
        api_client: ApiClient,
        users: dict[str, AbstractUser],
        policies: list[PolicyVersion],
        now: datetime,
    ) -> None:
        self.rnd = rnd
        self.seed = seed
        self.lookups = lookups
        self.api_client = api_client
        self.users = users
        self.policies = sorted(policies, key=lambda p: p.effective_at)
        self.now = now
        self.written = 0

    # -- the pieces of one event ------------------------------------------------------------

    def policy_at(self, moment: datetime) -> str:
        label = self.policies[0].label
        for policy in self.policies:
            if policy.effective_at <= moment.date():
                label = policy.label
        return label

    def ip(self) -> str:
        rnd = self.rnd
        if rnd.random() < 0.3:
            return f"2a02:{rnd.randrange(0x1000, 0xFFFF):x}:{rnd.randrange(0xFFFF):x}::{rnd.randrange(1, 0xFFFF):x}"
        return f"{rnd.choice((31, 46, 78, 84, 91, 109, 176, 185, 213))}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"

    def frequency(self, purpose: str) -> str | None:
        if purpose not in MARKETING or self.rnd.random() < 0.3:
            return None
        return self.rnd.choice(Frequency.values)

    def opt_in_source(self, purpose: str) -> str:
        roll = self.rnd.random()
        if roll < 0.38:
            return Source.MOBILE_APP
        if roll < 0.70:
            return Source.WEB_PORTAL
        if roll < 0.88 and purpose != EMAIL:
            return Source.CUSTOMER_SERVICE
        if roll < 0.96:
            return Source.IMPORT
        return Source.ADMIN

    def withdrawal_source(self, purpose: str) -> str:
        options = [
            Source.MOBILE_APP,
            Source.WEB_PORTAL,
            Source.CUSTOMER_SERVICE,
            Source.PREFERENCE_CENTRE,
            Source.CRM,
            Source.ADMIN,
        ]
        weights = [25, 20, 15, 10, 8, 4]
        if purpose == EMAIL:
            options += [Source.EMAIL_LINK, Source.CAMPAIGNS]
            weights += [40, 15]
        return self.rnd.choices(options, weights)[0]

    # -- writing ------------------------------------------------------------------------------

    def record(
        self,
        contact: Contact,
        plan: _Plan,
        step: int,
        *,
        purpose: str,
        status: str,
        source: str,
        at: datetime,
        frequency: str | None = None,
        evidence: dict[str, Any] | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        rnd = self.rnd
        api_client = actor_user = None
        reason = ""
        evidence = dict(evidence or {})
        if source in (Source.MOBILE_APP, Source.WEB_PORTAL, Source.EMAIL_LINK):
            ip = ip or self.ip()
            user_agent = user_agent or rnd.choice(USER_AGENTS[source])
        if source in (Source.MOBILE_APP, Source.WEB_PORTAL):
            api_client = self.api_client
        elif source == Source.CUSTOMER_SERVICE:
            actor_user = self.users[Role.OFFICER]
            evidence.setdefault("call_id", f"CS-{at:%Y%m%d}-{rnd.randrange(10000, 99999)}")
        elif source == Source.ADMIN:
            actor_user = self.users[Role.ADMIN]
            reason = rnd.choice(ADMIN_REASONS).format(n=rnd.randrange(1000, 9999))
        elif source == Source.EMAIL_LINK:
            evidence.setdefault("unsubscribe_token", f"u{rnd.getrandbits(64):016x}")
        elif source == Source.CAMPAIGNS:
            evidence.setdefault("campaigns_list", rnd.choice(("Newsletter", "Offers", "Product news")))
            evidence.setdefault("reported_at", (at + timedelta(minutes=rnd.randrange(5, 600))).isoformat())
        elif source == Source.CRM:
            evidence.setdefault("crm_field", "Email_Opt_Out" if purpose == EMAIL else f"{purpose}_opt_out")
            evidence.setdefault(
                "modified_by", rnd.choice(("j.berger@northwind.example", "s.yildiz@northwind.example"))
            )
        elif source == Source.IMPORT:
            evidence.setdefault("file", "legacy-newsletter-export-2024.csv")
            evidence.setdefault("row", plan.index + 2)
        elif source == Source.SYSTEM:
            reason = "Consent not refreshed within its validity period."
        decision = services.ConsentDecision(
            purpose=purpose,
            status=status,
            source=source,
            occurred_at=at,
            idempotency_key=f"{KEY_PREFIX}{self.seed}:{plan.index}:{step}",
            frequency=frequency,
            ip_address=ip,
            user_agent=user_agent or "",
            policy_version=self.policy_at(at) if status == ConsentStatus.OPTED_IN else None,
            evidence=evidence,
            reason=reason,
        )
        services.consent_record(
            contact=contact,
            decision=decision,
            api_client=api_client,
            actor_user=actor_user,
            lookups=self.lookups,
        )
        self.written += 1

    def history(self, contact: Contact, plan: _Plan) -> None:
        """`plan.events` events for this contact, in time order, each allowed by the ledger's rules."""
        rnd = self.rnd
        start = self.now - timedelta(days=HISTORY_DAYS - rnd.randrange(0, 90))
        span = (self.now - timedelta(hours=2) - start).total_seconds()
        slots = sorted(start + timedelta(seconds=rnd.uniform(0, span)) for _ in range(plan.events))
        status: dict[str, str] = dict.fromkeys(plan.purposes, "")
        step = 0
        at = start
        while step < plan.events:
            at = max(slots[step], at + timedelta(seconds=1))
            purpose = rnd.choice(plan.purposes)
            current = status[purpose]
            if current == ConsentStatus.OPTED_IN:
                roll = rnd.random()
                if roll < 0.68:
                    new, source = ConsentStatus.OPTED_OUT, self.withdrawal_source(purpose)
                    self.record(contact, plan, step, purpose=purpose, status=new, source=source, at=at)
                elif roll < 0.82:
                    new = ConsentStatus.EXPIRED
                    self.record(contact, plan, step, purpose=purpose, status=new, source=Source.SYSTEM, at=at)
                else:  # the person confirms or changes how often (a refresh under the policy in force)
                    new, source = ConsentStatus.OPTED_IN, rnd.choice((Source.MOBILE_APP, Source.WEB_PORTAL))
                    evidence = {"double_opt_in_confirmed_at": at.isoformat()} if purpose == EMAIL else None
                    self.record(
                        contact, plan, step, purpose=purpose, status=new, source=source, at=at,
                        frequency=self.frequency(purpose), evidence=evidence,
                    )  # fmt: skip
                status[purpose] = new
                step += 1
            elif purpose == EMAIL and current != ConsentStatus.PENDING:
                # Double opt-in: pending now, confirmed from the email's link a little later (most of the time).
                source = rnd.choice((Source.MOBILE_APP, Source.WEB_PORTAL, Source.WEB_PORTAL, Source.IMPORT))
                self.record(
                    contact, plan, step, purpose=EMAIL, status=ConsentStatus.PENDING, source=source, at=at
                )
                status[EMAIL] = ConsentStatus.PENDING
                step += 1
                if step < plan.events and rnd.random() < 0.85:
                    at = at + timedelta(minutes=rnd.randrange(2, 240))
                    self._confirm(contact, plan, step, at, source)
                    status[EMAIL] = ConsentStatus.OPTED_IN
                    step += 1
            elif purpose == EMAIL:  # pending: confirmed late
                self._confirm(contact, plan, step, at, rnd.choice((Source.MOBILE_APP, Source.WEB_PORTAL)))
                status[EMAIL] = ConsentStatus.OPTED_IN
                step += 1
            else:
                source = self.opt_in_source(purpose)
                self.record(
                    contact, plan, step, purpose=purpose, status=ConsentStatus.OPTED_IN, source=source, at=at,
                    frequency=self.frequency(purpose),
                )  # fmt: skip
                status[purpose] = ConsentStatus.OPTED_IN
                step += 1

    def _confirm(self, contact: Contact, plan: _Plan, step: int, at: datetime, source: str) -> None:
        if source not in (Source.MOBILE_APP, Source.WEB_PORTAL):
            source = Source.WEB_PORTAL  # the confirmation link opens the web portal
        at = min(at, self.now - timedelta(minutes=1))
        self.record(
            contact, plan, step, purpose=EMAIL, status=ConsentStatus.OPTED_IN, source=source, at=at,
            frequency=self.frequency(EMAIL),
            evidence={"double_opt_in_confirmed_at": at.isoformat(), "confirmation_ip": self.ip()},
        )  # fmt: skip


def _plans(rnd: random.Random, contacts: int, events: int) -> list[_Plan]:
    counts = [events // contacts + (1 if i < events % contacts else 0) for i in range(contacts)]
    # Some people change their mind often, some once: move events between contacts, keeping the total.
    for _ in range(contacts):
        a, b = rnd.randrange(contacts), rnd.randrange(contacts)
        moved = rnd.randrange(0, max(1, counts[a] // 2))
        counts[a] -= moved
        counts[b] += moved
    plans = []
    for index, count in enumerate(counts):
        first, last = rnd.choice(FIRST_NAMES), rnd.choice(LAST_NAMES)
        roll = rnd.random()
        has_email = roll < 0.9
        has_phone = roll > 0.75 or rnd.random() < 0.45
        has_app = rnd.random() < 0.55
        local = f"{first}.{last}".lower().translate(ASCII)
        identity = services.ContactIdentity(
            email=f"{local}.{index}@{rnd.choice(DOMAINS)}" if has_email else None,
            phone=(f"+49151{10000000 + index:08d}" if index % 3 else f"+336{20000000 + index:08d}")
            if has_phone
            else None,
            app_user_id=f"app-{100000 + index}" if has_app or not (has_email or has_phone) else None,
            first_name=first,
            last_name=last,
        )
        purposes = [PROFILING, SHARING]
        if identity.email:
            purposes += [EMAIL, EMAIL]  # email is the channel most people decide on
        if identity.phone:
            purposes += [SMS, PHONE]
        plans.append(_Plan(index=index, identity=identity, events=count, purposes=purposes))
    return plans


class Command(BaseCommand):
    help = (
        "Load demo consent history (contacts, events over two years, suppressions, two policy versions, "
        "the demo-mobile-app API client) through the ledger's write path, then seal the ledger."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--contacts", type=int, default=2000, help="How many contacts (default 2000).")
        parser.add_argument(
            "--events", type=int, default=20000, help="How many consent events (default 20000)."
        )
        parser.add_argument("--seed", type=int, default=7, help="Random seed, for the same data every time.")

    def handle(self, *args: Any, **options: Any) -> None:
        contacts, events, seed = options["contacts"], options["events"], options["seed"]
        if contacts < 1 or events < contacts:
            raise CommandError("Give at least one contact and at least as many events as contacts.")
        if ConsentEvent.objects.filter(idempotency_key__startswith=KEY_PREFIX).exists():
            self.stdout.write(
                "Demo data is already loaded; nothing to do. (Flush the database to load it again.)"
            )
            return
        missing = set(PURPOSES) - set(Purpose.objects.values_list("code", flat=True))
        if missing:
            raise CommandError(f"Purposes missing (run migrate first): {', '.join(sorted(missing))}.")

        started = time.monotonic()
        rnd = random.Random(seed)
        users = demo_users_ensure()
        policies = [
            PolicyVersion.objects.filter(label=label).first()
            or services.policy_version_publish(label=label, effective_at=effective_at, text=text)
            for label, effective_at, text in POLICIES
        ]
        api_client, key = self._api_client()
        writer = _Writer(
            rnd=rnd,
            seed=seed,
            lookups=services.Lookups(),
            api_client=api_client,
            users=users,
            policies=policies,
            now=timezone.now(),
        )
        plans = _plans(rnd, contacts, events)
        made: list[Contact] = []
        for chunk in self._chunks(plans):
            with transaction.atomic():
                for plan in chunk:
                    contact = services.contact_resolve(identity=plan.identity)
                    writer.history(contact, plan)
                    made.append(contact)
            self.stdout.write(f"  {writer.written} events for {len(made)} contacts", ending="\r")
        self.stdout.write("")
        suppressed = self._suppressions(rnd, made)
        erasure = self._erasure(made, users[Role.ADMIN])
        seal = services.ledger_seal()

        self.stdout.write(
            f"Loaded {len(made)} contacts and {writer.written} consent events over the past two years, "
            f"{suppressed} suppressions, policy versions {', '.join(p.label for p in policies)} "
            f"in {time.monotonic() - started:.1f} s."
        )
        if erasure is not None:
            erased, held = erasure
            self.stdout.write(
                f"Erased contact {erased.contact_id} at its request (erasure {erased.pk}: {erased.events_kept} "
                f"events kept, {erased.values_deleted} personal values deleted); contact {held.contact_id} is "
                f"under legal hold {held.pk} (docs/erasure.md, 'In the demo')."
            )
        if seal is not None:
            self.stdout.write(
                f"Sealed the ledger: seal {seal.sequence} covers {seal.event_count} events ({seal.hash})."
            )
        if key:
            self.stdout.write(
                f"API client {api_client.name} may write {', '.join(api_client.sources)}; its key (shown once):"
            )
            self.stdout.write(key)
        else:
            self.stdout.write(
                f"API client {api_client.name} existed already; its key was shown when it was made."
            )

    def _api_client(self) -> tuple[ApiClient, str]:
        existing = ApiClient.objects.filter(name=API_CLIENT_NAME).first()
        if existing is not None:
            return existing, ""
        return services.api_client_create(
            name=API_CLIENT_NAME, sources=[Source.MOBILE_APP, Source.WEB_PORTAL]
        )

    @staticmethod
    def _chunks(plans: list[_Plan]) -> Any:
        chunk: list[_Plan] = []
        size = 0
        for plan in plans:
            chunk.append(plan)
            size += plan.events
            if size >= EVENTS_PER_TRANSACTION:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    @staticmethod
    def _erasure(contacts: list[Contact], admin: AbstractUser) -> tuple[ErasureRequest, LegalHold] | None:
        """One person erased through the service, as an admin would at their request, and the next
        one under a legal hold: the admin sees the proof kept and the person gone, and a hold that
        refuses an erasure (docs/erasure.md, "In the demo")."""
        named = [contact for contact in contacts if contact.email and contact.first_name]
        if len(named) < ERASED_DEMO_CONTACT + 2:
            return None  # a demo this small has nobody to spare
        erased, held = named[ERASED_DEMO_CONTACT], named[ERASED_DEMO_CONTACT + 1]
        erasure = services.erasure_request(
            contact=erased, channel=ErasureRequest.Channel.ADMIN, reason=ERASURE_DEMO_REASON, actor_user=admin
        ).erasure
        hold = services.legal_hold_set(contact=held, reason=LEGAL_HOLD_DEMO_REASON, actor_user=admin)
        return erasure, hold

    @staticmethod
    def _suppressions(rnd: random.Random, contacts: list[Contact]) -> int:
        with_email = [contact for contact in contacts if contact.email]
        bounced = rnd.sample(with_email, min(len(with_email), max(1, len(contacts) // 40)))
        for number, contact in enumerate(bounced):
            kind = Suppression.Kind.COMPLAINT if number % 5 == 4 else Suppression.Kind.HARD_BOUNCE
            services.suppression_add(
                contact=contact,
                kind=kind,
                source=Source.CAMPAIGNS,
                detail="550 5.1.1 The email account that you tried to reach does not exist"
                if kind == Suppression.Kind.HARD_BOUNCE
                else "Marked as spam (feedback loop)",
                evidence={"campaigns_list": "Newsletter", "bounce_type": kind},
            )
        return len(bounced)
