"""The simulators' own webhook signatures, checked against the providers' published test vectors (not against the
client's code, which they must not borrow: a wrong signature would then be agreed with), and the client's checks
accept what the simulators sign."""

import json

from app.channels.sms import verify_twilio_signature
from app.channels.whatsapp import verify_whatsapp_signature
from sandbox.twilio import signature as twilio
from sandbox.whatsapp import signature as whatsapp

# https://www.twilio.com/docs/usage/webhooks/webhooks-security (the worked example), auth token 12345
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
# the same example as Twilio's helper libraries test it (twilio-php, twilio-csharp RequestValidatorTest)
SDK_PARAMS = {**TWILIO_PARAMS, "Caller": "+14158675309", "From": "+14158675309"}


def test_twilio_documented_example():
    assert twilio.sign("12345", TWILIO_URL, TWILIO_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_helper_library_vectors_sort_parameters_and_sign_the_url_as_called():
    shuffled = dict(reversed(list(SDK_PARAMS.items())))
    assert twilio.sign("12345", TWILIO_URL, shuffled) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # the host's case is kept: the URL is signed exactly as Twilio called it
    mixed_case = "https://MyCompany.com/myapp.php?foo=1&bar=2"
    assert twilio.sign("12345", mixed_case, SDK_PARAMS) == "g9IN/x4Cft2g517EjYvEvM/W7LU="


def test_twilio_signature_changes_with_every_input():
    good = twilio.sign("12345", TWILIO_URL, TWILIO_PARAMS)
    assert twilio.sign("12346", TWILIO_URL, TWILIO_PARAMS) != good
    assert twilio.sign("12345", TWILIO_URL.replace("bar=2", "bar=3"), TWILIO_PARAMS) != good
    assert twilio.sign("12345", TWILIO_URL, {**TWILIO_PARAMS, "Digits": "1235"}) != good


def test_the_client_accepts_what_the_twilio_simulator_signs():
    url = "https://recoup.example/hooks/twilio/status"
    params = {"MessageSid": "SM0123", "MessageStatus": "delivered", "Body": "Hola, ¿qué tal? 👋"}
    sent = twilio.sign("token-abc", url, params)
    assert verify_twilio_signature("token-abc", url, params, sent)
    assert not verify_twilio_signature("token-abc", url, {**params, "MessageStatus": "failed"}, sent)
    assert not verify_twilio_signature("other-token", url, params, sent)


# X-Hub-Signature-256 is the same header GitHub sends; GitHub publishes test values for it
# (docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries). Meta publishes none.
def test_hub_signature_published_example():
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert whatsapp.sign("It's a Secret to Everybody", b"Hello, World!") == expected


def test_hmac_sha256_rfc_4231_test_case_2():
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert whatsapp.sign("Jefe", b"what do ya want for nothing?") == f"sha256={expected}"


# a status webhook body as the simulator sends it (compact JSON); the digest was computed with
# `openssl dgst -sha256 -hmac recoup-test-app-secret`, not with Python
META_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages",'
    b'"value":{"messaging_product":"whatsapp","statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4'
    b'OTJBMTE4RTUA","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234"}]}}]}]}'
)


def test_whatsapp_webhook_body_vector_from_openssl():
    expected = "sha256=10df7e6a33863bba01dc8bbbcb4c343eb41b4dca3a93d90e2d8caeaac5ced61c"
    assert whatsapp.sign("recoup-test-app-secret", META_BODY) == expected
    # the raw bytes are signed: the same JSON spaced differently is another signature
    respaced = json.dumps(json.loads(META_BODY)).encode()
    assert whatsapp.sign("recoup-test-app-secret", respaced) != expected


def test_the_client_accepts_what_the_whatsapp_simulator_signs():
    sent = whatsapp.sign("recoup-test-app-secret", META_BODY)
    assert verify_whatsapp_signature("recoup-test-app-secret", META_BODY, sent)
    assert not verify_whatsapp_signature("recoup-test-app-secret", META_BODY + b" ", sent)
    assert not verify_whatsapp_signature("another-secret", META_BODY, sent)
