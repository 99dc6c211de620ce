"""What customers did with the messages in the demo's history: delivery, reads, clicks, opt-outs and payments,
drawn from a seeded model with a few stories planted for a merchant to find on the dashboard.

The stories (each a number below, so a test can name it):

1. **Spanish speakers answer WhatsApp.** For them a delivered WhatsApp message wins about twice what an email
   does (:data:`CHANNEL_PULL`); for everyone else the two are close. The policy sends WhatsApp to VIPs and
   high-value cases only: the dashboard's channel funnel, filtered to EUR (the Spanish storefront), shows it.
2. **Late afternoon beats morning.** A message that lands at 16:00-20:59 in the customer's zone pays about twice
   as often as one at 08:00-11:59 (:data:`HOUR_PULL`): the dashboard's "customer's local hour" breakdown.
3. **Expired cards come back through a new card.** The card on file cannot be charged, so almost every recovery
   of an expired card is a card update on the payment page (``new_card``); soft declines mostly pay with the card
   on file (``vault``), hard ones with a new card or a bank transfer (:func:`Story.method`).
4. **Soft declines recover best**, and the policy's payment retry wins some of them with no touch at all.
5. **Opt-outs happen**: STOP to about one delivered SMS in 80 (SMS and WhatsApp end for that number), an
   unsubscribe from about one opened email in 150, a few WhatsApp users block.
6. **The holdout** (no messages) recovers only when an operator records a payment made elsewhere.
7. **Repeat customers answer WhatsApp, and a few block a shop's first message there.** The demo's policy runs an
   experiment (app.demo.policy) that starts half the repeat customers on WhatsApp instead of email. A customer who
   has paid before answers a WhatsApp message a little more readily (:data:`REPEAT_WHATSAPP_PULL`), on top of
   WhatsApp being read more than email: the arm recovers about 3 points more. A shop's first message on WhatsApp is
   blocked (or answered STOP) several times as often as a later one (:data:`FIRST_TOUCH_QUITS`): about half a
   point more opt-outs, well under the experiment's guardrail (2 points), so the results page reads
   "better, with an interval" and the guardrail holds.

Pure: no Flask, no database; the same seed draws the same outcomes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from app.outbox.states import OutboxState as S
from rules.vocabulary import Channel

#: how likely one delivered touch is to bring the payment, by decline reason (before the factors below)
BASE_PULL = {
    "insufficient_funds": 0.27, "do_not_honor": 0.17, "expired_card": 0.32, "invalid_card_data": 0.2,
    "lost_stolen_fraud": 0.11, "stop_recurring": 0.04, "retry_later": 0.28, "issuer_unavailable": 0.28,
    "gateway_error": 0.28,
}  # fmt: skip
DEFAULT_PULL = 0.15
#: story 1: (Spanish speaker?, channel) -> factor
CHANNEL_PULL: dict[tuple[bool, str], float] = {
    (True, Channel.WHATSAPP): 2.1, (True, Channel.EMAIL): 1.0, (True, Channel.SMS): 1.3,
    (False, Channel.WHATSAPP): 1.15, (False, Channel.EMAIL): 1.0, (False, Channel.SMS): 1.15,
}  # fmt: skip
#: story 7: a customer who has paid before, on WhatsApp
REPEAT_WHATSAPP_PULL = 1.1
#: story 2: the customer's local hour when the message lands -> factor
HOUR_PULL = tuple(0.8 if h < 8 else 0.65 if h < 12 else 0.95 if h < 16 else 1.35 if h < 21 else 0.9
                  for h in range(24))
#: later steps of a case pull less (the customer who wanted to pay mostly has)
STEP_PULL = (1.0, 0.85, 0.7, 0.6)
#: how often a delivered message is seen (an email's pixel, WhatsApp's read receipt; an SMS always), and clicked
#: by someone who does not pay; and how often a customer who saw it opts out (STOP, unsubscribe) instead (story 5)
SEEN: dict[str, float] = {Channel.EMAIL: 0.46, Channel.WHATSAPP: 0.82, Channel.SMS: 1.0}
CLICKS: dict[str, float] = {Channel.EMAIL: 0.22, Channel.SMS: 0.1, Channel.WHATSAPP: 0.18}
QUITS: dict[str, float] = {Channel.SMS: 0.013, Channel.EMAIL: 0.0066, Channel.WHATSAPP: 0.006}
#: story 7: added to QUITS for a case's first message (a shop's first word on WhatsApp is blocked more often)
FIRST_TOUCH_QUITS: dict[str, float] = {Channel.WHATSAPP: 0.025}
#: a retry of the card on file (story 4), by decline reason: how often the charge goes through
RETRY_WINS = {"insufficient_funds": 0.24, "retry_later": 0.5, "issuer_unavailable": 0.55, "gateway_error": 0.55,
              "do_not_honor": 0.12}
#: recovered elsewhere (an operator records it), of the cases Recoup did not recover: holdout, others
ELSEWHERE = (0.09, 0.02)


@dataclass(frozen=True)
class Delivery:
    """What a provider reported for one message: delivered (or, by email, accepted), read, failed with a code."""

    delivered: bool
    read: bool
    failed: str | None = None  # the provider's error code
    failed_text: str | None = None
    status: str = S.DELIVERED  # failed | undelivered when not delivered


@dataclass(frozen=True)
class Reaction:
    """What the customer did with a delivered message."""

    clicked: bool
    pays_after: timedelta | None  # paid through this message's link this long after it went
    opts_out_after: timedelta | None  # STOP / unsubscribe / block this long after it went


class Story:
    """The seeded outcome model (one per history)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed * 7919 + 17)

    # -- providers ---------------------------------------------------------------------------------------------
    def delivery(self, channel: str, *, on_whatsapp: bool) -> Delivery:
        r = self.rng.random()
        if channel == Channel.WHATSAPP:
            if not on_whatsapp:
                return Delivery(False, False, "131026", "Message undeliverable", S.FAILED)
            if r < 0.03:
                return Delivery(False, False, "131049", "This message was not delivered to maintain healthy "
                                                        "ecosystem engagement.", S.FAILED)
            return Delivery(True, self.rng.random() < SEEN[Channel.WHATSAPP])
        if channel == Channel.SMS:
            if r < 0.025:
                return Delivery(False, False, "30003", "Unreachable destination handset", S.UNDELIVERED)
            if r < 0.03:
                return Delivery(False, False, "30006", "Landline or unreachable carrier", S.FAILED)
            return Delivery(True, False)
        return Delivery(True, self.rng.random() < SEEN[Channel.EMAIL])  # an email: accepted; read = its pixel

    # -- customers ---------------------------------------------------------------------------------------------
    def pull(self, *, reason: str | None, spanish: bool, channel: str, local_hour: int, step: int,
             first_time: bool, vip: bool, band: str | None) -> float:
        """The chance that this delivered touch brings the payment."""
        p = BASE_PULL.get(reason or "", DEFAULT_PULL)
        p *= CHANNEL_PULL.get((spanish, channel), 1.0) * HOUR_PULL[local_hour]
        p *= STEP_PULL[min(step, len(STEP_PULL)) - 1] if step >= 1 else 1.0
        p *= 0.6 if first_time else REPEAT_WHATSAPP_PULL if channel == Channel.WHATSAPP else 1.0
        p *= 1.35 if vip else 1.0
        p *= 0.8 if band == "premium" else 1.0
        return min(p, 0.9)

    def react(self, channel: str, delivery: Delivery, pull: float, *, first_touch: bool = False) -> Reaction:
        """What the customer did; ``first_touch``: the case's first message (story 7)."""
        rng = self.rng
        if not delivery.delivered:
            return Reaction(False, None, None)
        seen = delivery.read or channel == Channel.SMS  # an SMS is read, nobody reports it
        # a payment needs the message seen: the chance is raised by how often it is, so ``pull`` holds per delivery
        pays = seen and rng.random() < pull / SEEN.get(channel, 1.0)
        clicked = pays or (seen and rng.random() < CLICKS.get(channel, 0.18))
        after = None
        if pays:
            minutes = rng.lognormvariate(3.4, 1.25)  # median ~30 minutes; some the next day
            if rng.random() < 0.08:
                minutes += rng.uniform(1, 5) * 1440  # an old link, days later
            after = timedelta(minutes=min(minutes, 12 * 1440))
        quits = None
        if not pays and (delivery.read or channel == Channel.SMS):
            if rng.random() < QUITS.get(channel, 0.0) + (FIRST_TOUCH_QUITS.get(channel, 0.0) if first_touch else 0.0):
                quits = timedelta(minutes=rng.uniform(1, 90))
        return Reaction(clicked, after, quits)

    def method(self, kind: str | None, reason: str | None) -> str:
        """How the payment was made (``Payment.method``; story 3)."""
        r = self.rng.random()
        if reason == "expired_card":
            return "new_card" if r < 0.93 else "vault"  # a few: the bank's updater refreshed the card on file
        if kind == "soft":
            return "vault" if r < 0.78 else "new_card"
        return "new_card" if r < 0.8 else "ach"

    def retry_wins(self, reason: str | None) -> bool:
        return self.rng.random() < RETRY_WINS.get(reason or "", 0.1)

    def elsewhere(self, *, holdout: bool) -> timedelta | None:
        """An operator records a payment made outside Recoup this long after the case opened (or None)."""
        if self.rng.random() < ELSEWHERE[0 if holdout else 1]:
            return timedelta(hours=self.rng.uniform(20, 240))
        return None

    def seconds(self, low: float, high: float) -> timedelta:
        return timedelta(seconds=self.rng.uniform(low, high))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: tuple[str, ...]) -> str:
        return self.rng.choice(options)
