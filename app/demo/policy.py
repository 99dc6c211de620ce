"""The demo's starting policy: the standard policy (examples/policies/standard.policy, unchanged) with an experiment
running, so the living demo opens on a test whose results fill in as the history and the clock go by (issue 18).

The standard policy plans first-time and repeat customers alike (``plan for first_time, repeat``). An arm's ``plan
for repeat`` would then be added next to that plan, and ``repeat`` would have two (docs/policy-language.md), so the
demo writes the shared plan once per segment, word for word (the control plans exactly as the standard policy
does), and its experiment replaces the repeat customers' plan with one that starts on WhatsApp.
"""

from __future__ import annotations

from pathlib import Path

STANDARD_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policies" / "standard.policy"

EXPERIMENT_NAME = "whatsapp first for repeat customers"
CONTROL = "control"
VARIANT = "whatsapp_first"
#: the plan the standard policy shares between two segments, written once for each in the demo
SHARED_PLAN = "  plan for first_time, repeat\n"
SPLIT_FOR = ("first_time", "repeat")

EXPERIMENT = f"""
  # Do customers who have paid before answer WhatsApp better than email? Half of them start on WhatsApp;
  # the test stops that arm if it costs more than 2 opt-outs per hundred cases.
  experiment "{EXPERIMENT_NAME}"
    arm {CONTROL} 50%
    arm {VARIANT} 50%
      plan for repeat
        step after 2h via whatsapp, email template "payment_failed"
        step after 2d via sms template "reminder_short"
        step after 5d via email template "final_notice"
        give up after 14d
      end
    end
    guardrail opt_out 2%
  end
"""


def demo_policy_text(standard: str | None = None) -> str:
    """The standard policy's text with the shared plan split per segment and the experiment added at its end."""
    text = standard if standard is not None else STANDARD_POLICY.read_text(encoding="utf-8")
    start = text.find(SHARED_PLAN)
    close = text.find("\n  end\n", start)
    if start < 0 or close < 0:
        raise ValueError(f"the standard policy no longer has {SHARED_PLAN.strip()!r}: update app/demo/policy.py")
    body = text[start + len(SHARED_PLAN):close + 1]
    split = "\n".join(f"  plan for {segment}\n{body}  end\n" for segment in SPLIT_FOR)
    text = text[:start] + split + text[close + len("\n  end\n"):]
    last = text.rstrip().rfind("\nend")
    if last < 0:
        raise ValueError("the standard policy has no closing 'end'")
    return text[:last] + "\n" + EXPERIMENT + text[last:]
