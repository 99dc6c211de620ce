"""All models, imported here so that metadata (and Alembic) sees every table."""

from app.models.analytics import (
    CaseDay,
    CaseFact,
    CaseRollup,
    CaseWeek,
    MessageDay,
    MessageFact,
    MessageRollup,
    MessageWeek,
)
from app.models.audit import AuditEntry, Setting
from app.models.cases import CaseTransition, EscalationTask, RecoveryCase, Team
from app.models.channels import ChannelAccount
from app.models.customers import ConsentEvent, Customer, OptOut
from app.models.experiments import ArmAssignment, Experiment
from app.models.gateways import FetchCursor, GatewayAccount, InboundEvent
from app.models.messages import MessageEvent, OutboxMessage
from app.models.payments import Payment, PaymentLink
from app.models.policies import MessageTemplate, MessageTemplateVersion, Policy, PolicyVersion
from app.models.quarantine import QuarantinedRecord
from app.models.transactions import Transaction
from app.models.users import ROLES, Role, User, user_roles

__all__ = [
    "ROLES",
    "ArmAssignment",
    "AuditEntry",
    "CaseDay",
    "CaseFact",
    "CaseRollup",
    "CaseWeek",
    "CaseTransition",
    "ChannelAccount",
    "ConsentEvent",
    "Customer",
    "EscalationTask",
    "Experiment",
    "FetchCursor",
    "GatewayAccount",
    "InboundEvent",
    "MessageEvent",
    "MessageDay",
    "MessageFact",
    "MessageRollup",
    "MessageWeek",
    "MessageTemplate",
    "MessageTemplateVersion",
    "OptOut",
    "OutboxMessage",
    "Payment",
    "PaymentLink",
    "Policy",
    "PolicyVersion",
    "QuarantinedRecord",
    "RecoveryCase",
    "Role",
    "Setting",
    "Team",
    "Transaction",
    "User",
    "user_roles",
]
