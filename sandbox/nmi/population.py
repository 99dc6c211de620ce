"""A seeded, deterministic population for the NMI simulator: customers, their cards and their transactions.

Customers live in many countries and time zones (US states that straddle zones, ZIP codes that straddle state
lines, Canadian provinces, Australian states, the Canaries and the Azores, ...), each with a phone number that
``phonenumbers`` accepts as valid, typed the way merchants' forms collect them (national digits, punctuated,
international). Failed sales carry realistic decline codes; successful ones settle the next night and some are
refunded later, which moves their last-modified time exactly as NMI's Query API filters on it.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import phonenumbers

# (city, region, postal code, phone area code or None)
_City = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Country:
    code: str
    weight: int
    cities: tuple[_City, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    currency: str = "USD"
    local_currency_share: float = 0.0  # share of sales in ``currency``; the rest in USD


_EN_FIRST = (
    "Maria",
    "James",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Ethan",
    "Sophia",
    "Mason",
    "Isabella",
    "Lucas",
    "Mia",
    "Logan",
    "Harper",
    "Aiden",
    "Chloe",
    "Elijah",
    "Grace",
    "Daniel",
    "Zoe",
    "Samuel",
)
_EN_LAST = (
    "Okafor",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Nguyen",
    "O'Brien",
    "Patel",
    "Kim",
    "Anderson",
    "Thomas",
    "Jackson",
    "White",
    "Harris",
    "Clark",
)
_ES_FIRST = (
    "Lucía",
    "Mateo",
    "Sofía",
    "Santiago",
    "Valentina",
    "Diego",
    "Camila",
    "Javier",
    "Carmen",
    "Pablo",
)
_ES_LAST = ("García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Muñoz")
_DE_FIRST = ("Lena", "Jonas", "Anna", "Lukas", "Marie", "Felix", "Sophie", "Paul", "Hannah", "Maximilian")
_DE_LAST = (
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
)
_FR_FIRST = ("Camille", "Léa", "Hugo", "Chloé", "Louis", "Manon", "Gabriel", "Inès", "Jules", "Zoé")
_FR_LAST = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
)
_PT_FIRST = ("João", "Ana", "Pedro", "Beatriz", "Gabriel", "Mariana", "Rafael", "Larissa", "Tiago", "Inês")
_PT_LAST = (
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Costa",
    "Pereira",
    "Ferreira",
    "Almeida",
    "Carvalho",
    "Rocha",
)
_IT_FIRST = ("Giulia", "Lorenzo", "Chiara", "Matteo", "Sara", "Alessandro", "Martina", "Francesco")
_IT_LAST = ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci")
_NL_FIRST = ("Daan", "Emma", "Sem", "Julia", "Lucas", "Tess", "Finn", "Sanne")
_NL_LAST = ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser", "Smit")
_SV_FIRST = ("Elsa", "William", "Alice", "Oscar", "Maja", "Hugo", "Ebba", "Axel")
_SV_LAST = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson")
_JA_FIRST = ("Yui", "Haruto", "Aoi", "Sota", "Hina", "Yuto", "Sakura", "Ren")
_JA_LAST = ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura")
_IN_FIRST = ("Aarav", "Priya", "Vivaan", "Ananya", "Arjun", "Diya", "Rohan", "Isha")
_IN_LAST = ("Sharma", "Verma", "Iyer", "Reddy", "Nair", "Gupta", "Mehta", "Rao")
_ZA_FIRST = ("Thabo", "Lerato", "Sipho", "Naledi", "Pieter", "Anke", "Kagiso", "Zanele")
_ZA_LAST = ("Nkosi", "Dlamini", "van der Merwe", "Botha", "Mokoena", "Naidoo", "Khumalo", "Pretorius")
_AR_FIRST = ("Omar", "Layla", "Yusuf", "Noor", "Khalid", "Mariam")
_AR_LAST = ("Al Mansoori", "Haddad", "Rahman", "Khoury", "Al Hashimi", "Saleh")

COUNTRIES: tuple[Country, ...] = (
    Country("US", 50, (
        ("New York", "NY", "10001", "212"), ("Brooklyn", "NY", "11201", "718"),
        ("Los Angeles", "CA", "90012", "213"), ("San Francisco", "CA", "94103", "415"),
        ("San Diego", "CA", "92101", "619"), ("Chicago", "IL", "60601", "312"),
        ("Houston", "TX", "77002", "713"),
        ("Dallas", "TX", "75201", "214"), ("El Paso", "TX", "79901", "915"),
        ("Phoenix", "AZ", "85004", "602"),
        ("Tucson", "AZ", "85701", "520"), ("Denver", "CO", "80202", "303"), ("Seattle", "WA", "98101", "206"),
        ("Portland", "OR", "97205", "503"), ("Ontario", "OR", "97914", "541"),
        ("Miami", "FL", "33131", "305"),
        ("Pensacola", "FL", "32502", "850"), ("Atlanta", "GA", "30303", "404"),
        ("Boston", "MA", "02108", "617"),
        ("Newark", "NJ", "07102", "973"), ("Indianapolis", "IN", "46204", "317"),
        ("Gary", "IN", "46402", "219"),
        ("Louisville", "KY", "40202", "502"), ("Bowling Green", "KY", "42101", "270"),
        ("Nashville", "TN", "37203", "615"), ("Knoxville", "TN", "37902", "865"),
        ("Detroit", "MI", "48226", "313"),
        ("Iron Mountain", "MI", "49801", "906"), ("Boise", "ID", "83702", "208"),
        ("Coeur d'Alene", "ID", "83814", "208"), ("Bismarck", "ND", "58501", "701"),
        ("Rapid City", "SD", "57701", "605"), ("Sioux Falls", "SD", "57104", "605"),
        ("Honolulu", "HI", "96813", "808"), ("Anchorage", "AK", "99501", "907"),
        ("Salt Lake City", "UT", "84101", "801"), ("Las Vegas", "NV", "89101", "702"),
        ("Minneapolis", "MN", "55401", "612"), ("Philadelphia", "PA", "19103", "215"),
        ("Charlotte", "NC", "28202", "704"),
        # ZIP codes that straddle a state line: the state, not the ZIP, decides
        ("Fort Campbell", "KY", "42223", "270"), ("Fort Campbell", "TN", "42223", "931"),
        ("Bluemont", "VA", "20135", "540"), ("Bluemont", "WV", "20135", "304"),
        ("New Pine Creek", "OR", "97635", "541"), ("New Pine Creek", "CA", "97635", "530"),
        ("Texhoma", "OK", "73949", "580"), ("Texhoma", "TX", "73949", "806"),
        ("Teec Nos Pos", "AZ", "86514", "928"),
    ), _EN_FIRST + _ES_FIRST[:4], _EN_LAST + _ES_LAST[:4]),
    Country("CA", 8, (
        ("Toronto", "ON", "M5H 2N2", "416"), ("Vancouver", "BC", "V6B 1A1", "604"),
        ("Calgary", "AB", "T2P 1J9", "403"), ("Halifax", "NS", "B3H 1A1", "902"),
        ("St. John's", "NL", "A1C 5M2", "709"), ("Winnipeg", "MB", "R3C 0N9", "204"),
        ("Regina", "SK", "S4P 3Y2", "306"), ("Montréal", "QC", "H2Y 1C6", "514"),
    ), _EN_FIRST + _FR_FIRST[:4], _EN_LAST + _FR_LAST[:4], "CAD", 0.5),
    Country("GB", 8, (
        ("London", "", "SW1A 1AA", None), ("Manchester", "", "M1 1AE", None),
        ("Edinburgh", "", "EH1 1YZ", None),
        ("Belfast", "", "BT1 5GS", None), ("Cardiff", "", "CF10 1EP", None),
    ), _EN_FIRST, _EN_LAST, "GBP", 0.6),
    Country("IE", 2, (("Dublin", "D", "D02 X285", None), ("Cork", "CO", "T12 X70A", None)),
            _EN_FIRST, _EN_LAST, "EUR", 0.6),
    Country("DE", 4, (("Berlin", "BE", "10115", None), ("München", "BY", "80331", None),
                      ("Hamburg", "HH", "20095", None)), _DE_FIRST, _DE_LAST, "EUR", 0.7),
    Country("FR", 3, (("Paris", "IDF", "75001", None), ("Lyon", "ARA", "69001", None)),
            _FR_FIRST, _FR_LAST, "EUR", 0.7),
    Country("ES", 3, (("Madrid", "M", "28013", None), ("Barcelona", "B", "08002", None),
                      ("Las Palmas de Gran Canaria", "GC", "35001", None)), _ES_FIRST, _ES_LAST, "EUR", 0.7),
    Country("PT", 1, (("Lisboa", "11", "1100-148", None), ("Ponta Delgada", "20", "9500-150", None)),
            _PT_FIRST, _PT_LAST, "EUR", 0.7),
    Country("IT", 2, (("Roma", "RM", "00184", None), ("Milano", "MI", "20121", None)),
            _IT_FIRST, _IT_LAST, "EUR", 0.7),
    Country("NL", 2, (("Amsterdam", "NH", "1012 JS", None),), _NL_FIRST, _NL_LAST, "EUR", 0.7),
    Country("SE", 1, (("Stockholm", "AB", "111 52", None),), _SV_FIRST, _SV_LAST, "SEK", 0.4),
    Country("AU", 5, (
        ("Sydney", "NSW", "2000", None), ("Perth", "WA", "6000", None), ("Brisbane", "QLD", "4000", None),
        ("Adelaide", "SA", "5000", None), ("Darwin", "NT", "0800", None),
    ), _EN_FIRST, _EN_LAST, "AUD", 0.6),
    Country("NZ", 1, (("Auckland", "AUK", "1010", None),), _EN_FIRST, _EN_LAST, "NZD", 0.5),
    Country("BR", 2, (("São Paulo", "SP", "01001-000", "11"), ("Manaus", "AM", "69005-000", "92"),
                      ("Rio de Janeiro", "RJ", "20040-002", "21")), _PT_FIRST, _PT_LAST, "BRL", 0.3),
    Country("MX", 2, (("Ciudad de México", "CMX", "06000", None), ("Tijuana", "BCN", "22000", None),
                      ("Cancún", "ROO", "77500", None)), _ES_FIRST, _ES_LAST, "MXN", 0.3),
    Country("IN", 1, (("Mumbai", "MH", "400001", None), ("Bengaluru", "KA", "560001", None)),
            _IN_FIRST, _IN_LAST, "INR", 0.3),
    Country("JP", 2, (("Tokyo", "13", "100-0001", None), ("Osaka", "27", "530-0001", None)),
            _JA_FIRST, _JA_LAST, "JPY", 0.5),
    Country("ZA", 1, (("Johannesburg", "GP", "2001", None), ("Cape Town", "WC", "8001", None)),
            _ZA_FIRST, _ZA_LAST, "ZAR", 0.3),
    Country("SG", 1, (("Singapore", "", "018956", None),), _EN_FIRST, _EN_LAST, "SGD", 0.3),
    Country("AE", 1, (("Dubai", "DU", "", None),), _AR_FIRST, _AR_LAST, "AED", 0.3),
)  # fmt: skip

#: (response_code, weight, response_text, processor_response_code, processor_response_text)
DECLINES: tuple[tuple[str, int, str, str, str], ...] = (
    ("202", 30, "Insufficient funds", "51", "INSUFF FUNDS"),
    ("201", 18, "Do Not Honor", "05", "DO NOT HONOR"),
    ("200", 10, "DECLINE", "05", "DECLINE"),
    ("203", 5, "Over limit", "61", "EXCEEDS LIMIT"),
    ("204", 4, "Transaction not allowed", "57", "NOT PERMITTED"),
    ("223", 8, "Expired card", "54", "EXPIRED CARD"),
    ("220", 2, "Incorrect payment information", "14", "INVALID CARD NO"),
    ("221", 1, "No such card issuer", "15", "NO SUCH ISSUER"),
    ("222", 2, "No card number on file with issuer", "14", "INVALID ACCOUNT"),
    ("224", 1, "Invalid expiration date", "54", "INVALID EXP DATE"),
    ("225", 2, "Invalid card security code", "N7", "CVV2 MISMATCH"),
    ("240", 1, "Call issuer for further information", "01", "REFER TO ISSUER"),
    ("250", 1, "Pick up card", "04", "PICK UP CARD"),
    ("251", 1, "Lost card", "41", "LOST CARD"),
    ("252", 1, "Stolen card", "43", "STOLEN CARD"),
    ("253", 1, "Fraudulent card", "59", "SUSPECTED FRAUD"),
    ("261", 1, "Declined-Stop all recurring payments", "R1", "STOP RECURRING"),
    ("262", 1, "Declined-Stop this recurring program", "R0", "STOP PAYMENT ORDER"),
    ("263", 1, "Declined-Update cardholder data available", "", ""),
    ("264", 2, "Declined-Retry in a few days", "", ""),
    ("300", 2, "Transaction was rejected by gateway", "", ""),
    ("400", 1, "Transaction error returned by processor", "96", "SYSTEM MALFUNCTION"),
    ("420", 1, "Communication error", "91", "ISSUER UNAVAILABLE"),
    ("421", 1, "Communication error with issuer", "91", "ISSUER UNAVAILABLE"),
)

#: NMI's text per documented response code, for sales the simulator processes itself
RESPONSE_TEXTS = {code: text for code, _w, text, _pc, _pt in DECLINES}

# (sku, description, unit price, is subscription)
PRODUCTS: tuple[tuple[str, str, str, bool], ...] = (
    ("SUB-GOLD-M", "Monthly membership - Gold", "49.00", True),
    ("SUB-SILVER-M", "Monthly membership - Silver", "29.00", True),
    ("SUB-PRO-Y", "Annual plan - Pro", "299.00", True),
    ("SUB-ENT-Y", "Annual plan - Enterprise", "1499.00", True),
    ("EBOOK-101", "E-book: Cooking at home", "12.99", False),
    ("COURSE-PY", "Online course: Python basics", "149.00", False),
    ("TSHIRT-M", "T-shirt, medium", "24.00", False),
    ("MUG-01", "Coffee mug", "14.50", False),
    ("BOX-SNACK", "Snack box delivery", "39.90", False),
    ("SW-LIC-1", "Software license (1 seat)", "89.00", False),
    ("CONSULT-1H", "Consulting hour", "180.00", False),
    ("SUPPORT-PREM", "Premium support add-on", "19.00", True),
)

# (type, first digit of the masked number, bin, length)
CARDS: tuple[tuple[str, str, str, int], ...] = (
    ("Visa", "4", "411111", 16),
    ("Visa", "4", "401288", 16),
    ("Mastercard", "5", "543111", 16),
    ("Mastercard", "5", "555555", 16),
    ("Amex", "3", "341111", 15),
    ("Discover", "6", "601100", 16),
)

ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})


@dataclass(slots=True)
class Card:
    cc_type: str
    cc_number: str  # masked
    cc_bin: str
    cc_exp: str  # MMYY
    cc_hash: str


@dataclass(slots=True)
class Customer:
    customer_vault_id: str | None
    first_name: str
    last_name: str
    email: str
    phone: str  # as the merchant's form stored it
    address_1: str
    city: str
    state: str
    postal_code: str
    country: str
    card: Card
    company: str = ""
    # a sticky outcome for vault charges (set through the control API), e.g. ("202", "24")
    forced_decline: tuple[str, str | None] | None = None


@dataclass(slots=True)
class Action:
    amount: str
    action_type: str
    date: datetime
    success: bool
    source: str
    response_text: str
    response_code: str
    processor_response_text: str = ""
    processor_response_code: str = ""
    batch_id: str = "0"
    processor_batch_id: str = ""
    ip_address: str = ""
    username: str = ""
    api_method: str = ""
    requested_amount: str = ""


@dataclass(slots=True)
class Product:
    sku: str
    quantity: str
    description: str
    amount: str


@dataclass(slots=True)
class Transaction:
    transaction_id: str
    customer: Customer
    condition: str
    order_id: str
    order_description: str
    currency: str
    amount: str
    created: datetime
    modified: datetime
    products: list[Product] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    authorization_code: str = ""
    avs_response: str = ""
    csc_response: str = ""
    processor_id: str = "ccprocessora"
    entry_mode: str = "Keyed"
    subscription_id: str = ""
    merchant_advice_code: str = ""  # not in the Query API; sent in transact.php responses and webhooks

    def add_action(self, action: Action) -> None:
        self.actions.append(action)
        if action.date > self.modified:
            self.modified = action.date

    @property
    def sale_action(self) -> Action | None:
        for action in reversed(self.actions):
            if action.action_type == "sale":
                return action
        return None

    @property
    def refunded(self) -> Decimal:
        return sum((Decimal(a.amount) for a in self.actions if a.action_type == "refund"), Decimal("0"))


def money(value: Decimal, currency: str) -> str:
    if currency in ZERO_DECIMAL:
        value = value.quantize(Decimal("1"))
    return f"{value:.2f}"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class PopulationBuilder:
    """Makes customers and transactions from one seeded random generator (same seed, same population)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._countries = COUNTRIES
        self._country_weights = [c.weight for c in COUNTRIES]
        self._decline_weights = [d[1] for d in DECLINES]
        self._emails: set[str] = set()
        self._vault_seq = 880_000 + self.rng.randrange(1000)
        self._order_seq = 20_000 + self.rng.randrange(1000)

    # -- customers -----------------------------------------------------------------------------------------
    def customer(self, with_vault: bool = True) -> Customer:
        rng = self.rng
        country = rng.choices(self._countries, self._country_weights)[0]
        city, state, postal, area = rng.choice(country.cities)
        first = rng.choice(country.first_names)
        last = rng.choice(country.last_names)
        self._vault_seq += 1
        return Customer(
            customer_vault_id=f"CV-{self._vault_seq}" if with_vault else None,
            first_name=first,
            last_name=last,
            email=self._email(first, last),
            phone=self.phone(country.code, area),
            address_1=f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}",
            city=city,
            state=state,
            postal_code=postal,
            country=country.code,
            card=self.card(),
        )

    def _email(self, first: str, last: str) -> str:
        # as people write their names in addresses: José Müller -> jose.muller (accents dropped, not the letters)
        plain = unicodedata.normalize("NFKD", f"{first}.{last}".lower())
        base = "".join(ch for ch in plain if ch.isascii() and (ch.isalnum() or ch == "."))
        domain = self.rng.choice(("example.com", "example.org", "example.net", "mail.example.com"))
        email = f"{base}@{domain}"
        n = 1
        while email in self._emails:
            n += 1
            email = f"{base}{n}@{domain}"
        self._emails.add(email)
        if self.rng.random() < 0.05:  # people type their address in odd case; NMI stores it as typed
            email = email.capitalize()
        return email

    def phone(self, region: str, area: str | None) -> str:
        rng = self.rng
        for _ in range(50):
            number = self._candidate(region, area)
            if phonenumbers.is_valid_number(number):
                break
        else:  # pragma: no cover - the example number is valid by definition
            number = _example(region)
        style = rng.random()
        if region in ("US", "CA"):
            digits = str(number.national_number)
            if style < 0.45:
                return digits
            if style < 0.7:
                return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
            if style < 0.85:
                return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
            return f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}"
        if style < 0.4:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if style < 0.8:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def _candidate(self, region: str, area: str | None) -> phonenumbers.PhoneNumber:
        rng = self.rng
        if region in ("US", "CA") and area:
            national = (
                f"{area}{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}{rng.randint(0, 9999):04d}"
            )
            if national[3:6] == "555":
                national = national[:3] + "556" + national[6:]
            return phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
        if region == "BR" and area:
            national = f"{area}9{rng.randint(6, 9)}{rng.randint(0, 9999999):07d}"
            return phonenumbers.PhoneNumber(country_code=55, national_number=int(national))
        example = _example(region)
        digits = str(example.national_number)
        digits = digits[:-4] + f"{rng.randint(0, 9999):04d}"
        return phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(digits))

    def card(self) -> Card:
        rng = self.rng
        cc_type, first, bin_, length = rng.choice(CARDS)
        last4 = f"{rng.randint(0, 9999):04d}"
        masked = first + "x" * (length - 5) + last4
        exp = f"{rng.randint(1, 12):02d}{rng.randint(26, 31):02d}"
        digest = hashlib.md5(f"{bin_}{last4}{exp}{rng.random()}".encode(), usedforsecurity=False).hexdigest()
        return Card(cc_type, masked, bin_, exp, digest)

    # -- orders --------------------------------------------------------------------------------------------
    def order(self, currency: str) -> tuple[str, str, list[Product], Decimal, bool]:
        rng = self.rng
        self._order_seq += 1
        order_id = f"INV-{self._order_seq}"
        if rng.random() < 0.55:
            picks = [rng.choice([p for p in PRODUCTS if p[3]])]
        else:
            picks = rng.sample([p for p in PRODUCTS if not p[3]], rng.randint(1, 3))
        rate = _RATES.get(currency, Decimal("1"))
        products = []
        total = Decimal("0")
        for sku, description, price, _sub in picks:
            qty = 1 if picks[0][3] else rng.choice((1, 1, 1, 2, 3))
            unit = Decimal(price) * rate
            unit = unit.quantize(Decimal("1") if currency in ZERO_DECIMAL else Decimal("0.01"))
            products.append(Product(sku, f"{qty}.0000", description, f"{unit:.4f}"))
            total += unit * qty
        subscription = picks[0][3]
        return order_id, picks[0][1], products, total, subscription

    def decline(self) -> tuple[str, str, str, str]:
        code, _w, text, pcode, ptext = self.rng.choices(DECLINES, self._decline_weights)[0]
        return code, text, pcode, ptext

    def currency_for(self, customer: Customer) -> str:
        country = next(c for c in self._countries if c.code == customer.country)
        if country.local_currency_share and self.rng.random() < country.local_currency_share:
            return country.currency
        return "USD"


_STREETS = ("Harbor View Rd", "Main St", "Oak Avenue", "Maple Dr", "High Street", "Station Road", "Elm St",
            "Park Lane", "Church Road", "Rue de la Paix", "Hauptstraße", "Calle Mayor", "Queen St W",
            "King St")  # fmt: skip

# rough USD -> local rates so local-currency prices look local
_RATES = {
    "USD": Decimal("1"), "CAD": Decimal("1.35"), "GBP": Decimal("0.79"), "EUR": Decimal("0.92"),
    "SEK": Decimal("10.5"), "AUD": Decimal("1.5"), "NZD": Decimal("1.65"), "BRL": Decimal("5.0"),
    "MXN": Decimal("17.0"), "INR": Decimal("83.0"), "JPY": Decimal("150"), "ZAR": Decimal("18.5"),
    "SGD": Decimal("1.35"), "AED": Decimal("3.67"),
}  # fmt: skip


def _example(region: str) -> phonenumbers.PhoneNumber:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        raise ValueError(f"no example mobile number for {region}")
    return example


def settle_time(created: datetime, rng: random.Random) -> datetime:
    """Batches close nightly: the next day between 02:00 and 04:00 UTC."""
    day = (created + timedelta(days=1)).replace(hour=2, minute=0, second=0)
    return day + timedelta(seconds=rng.randint(0, 7200))
