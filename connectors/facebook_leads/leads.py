"""Leads as Graph gives them, mapped to CRM leads: standard answers into fields, every other answer kept with its
question (https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from crm.records import Answer, Lead

LEAD_FIELDS = "id,created_time,field_data,ad_id,form_id,campaign_id,is_organic,platform"
STANDARD = {
    "email": "email",
    "phone_number": "phone",
    "full_name": "full_name",
    "first_name": "first_name",
    "last_name": "last_name",
}


def identifier(value: object) -> str | None:
    """An id as text: Graph sends ids as strings, though numbers occur (providers.md 4.6); empty means none."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value) if isinstance(value, int | str) else None
    return text or None


def created(value: object) -> datetime | None:
    """`2015-02-28T08:49:14+0000` (no colon in the offset), or Unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
    except ValueError:
        return None


def e164(phone: str | None, region: str | None) -> str | None:
    """The number in E.164 when it parses as a valid number, its country from the number itself or else the
    deployment's region; without a region, a number without a country code stays unnormalised."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def to_lead(item: Mapping[str, Any], page_id: str, questions: Mapping[str, str], region: str | None) -> Lead:
    """Map one lead by each answer's name, never by position; `questions` gives the words a key was asked in."""
    standard: dict[str, str | None] = {}
    answers: list[Answer] = []
    for answer in item.get("field_data") or ():
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str):
            continue
        key = answer["name"]
        values = tuple(str(v) for v in answer.get("values") or () if v is not None)
        if key in STANDARD and key not in standard:
            standard[STANDARD[key]] = values[0] if values and values[0] != "" else None
        else:
            answers.append(Answer(key, questions.get(key, key), values))
    organic = item.get("is_organic")
    platform = item.get("platform")
    external_id = identifier(item.get("id"))
    if external_id is None:
        raise ValueError("a lead without an id")
    phone = standard.get("phone")
    return Lead(
        external_id=external_id,
        page_id=page_id,
        form_id=identifier(item.get("form_id")),
        ad_id=identifier(item.get("ad_id")),
        campaign_id=identifier(item.get("campaign_id")),
        is_organic=organic if isinstance(organic, bool) else None,
        platform=platform if isinstance(platform, str) else None,
        created_time=created(item.get("created_time")),
        email=standard.get("email"),
        phone=phone,
        phone_e164=e164(phone, region),
        full_name=standard.get("full_name"),
        first_name=standard.get("first_name"),
        last_name=standard.get("last_name"),
        answers=tuple(answers),
    )


def questions_of(form: Mapping[str, Any]) -> dict[str, str]:
    """A form's question keys and the words they were asked in (its `questions`' labels)."""
    return {
        str(q["key"]): str(q.get("label") or q["key"])
        for q in form.get("questions") or ()
        if isinstance(q, Mapping) and q.get("key")
    }
