"""Lead forms and their answers as Meta stores them, with the mess real leads carry: custom questions, multiple
choice, an empty answer, unicode, a phone without its country code."""

from __future__ import annotations

import random
from typing import Any

CONTACT_QUESTIONS: tuple[dict[str, Any], ...] = (
    {"key": "full_name", "label": "Full name", "type": "FULL_NAME"},
    {"key": "email", "label": "Email", "type": "EMAIL"},
    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
    {
        "key": "what_are_you_interested_in?",
        "label": "What are you interested in?",
        "type": "CUSTOM",
        "options": [{"key": "pricing", "value": "Pricing"}, {"key": "integrations", "value": "Integrations"}],
    },
    {"key": "anything_else_we_should_know?", "label": "Anything else we should know?", "type": "CUSTOM"},
)
DEMO_QUESTIONS: tuple[dict[str, Any], ...] = (
    {"key": "first_name", "label": "First name", "type": "FIRST_NAME"},
    {"key": "last_name", "label": "Last name", "type": "LAST_NAME"},
    {"key": "email", "label": "Email", "type": "EMAIL"},
    {"key": "phone_number", "label": "Phone number", "type": "PHONE"},
    {"key": "city", "label": "City", "type": "CITY"},
    {
        "key": "company_size",
        "label": "Company size",
        "type": "CUSTOM",
        "options": [
            {"key": "1_10", "value": "1-10"},
            {"key": "11_50", "value": "11-50"},
            {"key": "51+", "value": "51+"},
        ],
    },
)
FORM_KINDS = {"contact": CONTACT_QUESTIONS, "demo": DEMO_QUESTIONS}
NAMES = (
    ("Joe", "Example"),
    ("José", "Núñez"),
    ("Zoë", "Ångström"),
    ("小龙", "李"),
    ("Ørjan", "Æsirsen"),
    ("Aoife", "O'Brien"),
    ("Mehmet", "Y\u0131lmaz"),
    ("Priya", "Raghunathan"),
    ("Анна", "Иванова"),
    ("Chloé", "Lefèvre"),
)
PHONES = ("+15555550123", "0612345678", "(555) 010-4477", "+44 20 7946 0958", "555 0100", "+49 30 901820")
CITIES = ("Zürich", "São Paulo", "Kraków", "Austin", "", "Reykjavík")
COMMENTS = ("", "Call me after 5pm 🙂", "Need a quote for 12 seats.\nThanks!", "—", "我们想了解价格")


def answers(questions: tuple[dict[str, Any], ...], index: int, rng: random.Random) -> list[dict[str, Any]]:
    """The `field_data` of the `index`th lead of a form: the first leads show each kind of mess in turn."""
    first, last = NAMES[index % len(NAMES)] if index < len(NAMES) else rng.choice(NAMES)
    email = f"{ascii_handle(first, last, index)}@example.com"
    phone = PHONES[index % len(PHONES)] if index < len(PHONES) else rng.choice(PHONES)
    values: dict[str, list[str]] = {
        "full_name": [f"{first} {last}"],
        "first_name": [first],
        "last_name": [last],
        "email": [email],
        "phone_number": [phone],
        "city": [CITIES[index % len(CITIES)]],
        "anything_else_we_should_know?": [COMMENTS[index % len(COMMENTS)]],
    }
    data = []
    for question in questions:
        if "options" in question:
            picked = choices(question["options"], index, rng)
            data.append({"name": question["key"], "values": picked})
        else:
            data.append({"name": question["key"], "values": values.get(question["key"], [""])})
    return data


def choices(options: list[dict[str, str]], index: int, rng: random.Random) -> list[str]:
    """One option, or several (a multiple-choice question answered twice) for every third lead."""
    if index % 3 == 1 and len(options) > 1:
        return [option["value"] for option in options[:2]]
    return [rng.choice(options)["value"]]


def ascii_handle(first: str, last: str, index: int) -> str:
    plain = "".join(c for c in f"{first}.{last}".lower() if c.isascii() and (c.isalnum() or c == "."))
    return f"{plain.strip('.') or 'lead'}{index}"


def question_body(question: dict[str, Any], form_id: str, position: int) -> dict[str, Any]:
    body = {"key": question["key"], "label": question["label"], "type": question["type"]}
    body["id"] = f"{form_id}{position:02d}"
    if "options" in question:
        body["options"] = question["options"]
    return body
