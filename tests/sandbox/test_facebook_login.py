"""The fake Facebook Login: the dialog's permission and Page checkboxes, rerequest, the code and long-lived
exchanges, debug_token, and revocation, over real HTTP."""

from __future__ import annotations

import time

import requests
from authlib.integrations.httpx_client import OAuth2Client

from tests.sandbox.facebook import (
    APP_ID,
    APP_SECRET,
    LEAD_PERMISSIONS,
    REDIRECT_URI,
    Facebook,
    callback,
    dialog_url,
    error_of,
    exchange,
    login,
    login_at,
)


def connect(facebook: Facebook, **options: object) -> tuple[dict[str, str], str]:
    """Log in through the dialog and exchange the code: the callback parameters and the user token."""
    answer, _ = login(facebook.url, LEAD_PERMISSIONS, **options)  # type: ignore[arg-type]
    params = callback(answer)
    token = facebook.graph.ok("GET", "/oauth/access_token", None, **exchange_params(params["code"]))
    return params, token["access_token"]


def exchange_params(code: str) -> dict[str, str]:
    return {"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT_URI, "code": code}


def test_the_dialog_redirects_back_with_code_state_and_the_fragment_and_the_code_buys_a_user_token(
    facebook: Facebook,
) -> None:
    answer, form = login(facebook.url, LEAD_PERMISSIONS)
    location = answer.headers["location"]
    params = callback(answer)
    token = facebook.graph.ok("GET", "/oauth/access_token", None, **exchange_params(params["code"]))
    me = facebook.graph.ok("GET", "/me", token["access_token"], fields="id,name")

    assert location.endswith("#_=_") and params["state"] == "st4te"
    assert [p for p, checked in form.boxes["permission"]] == LEAD_PERMISSIONS
    assert token["token_type"] == "bearer" and 0 < token["expires_in"] <= 7200
    assert me == {"id": facebook.dana()["id"], "name": "Dana Demo"}


def test_a_declined_permission_is_listed_as_declined_and_left_out_of_debug_token(facebook: Facebook) -> None:
    _, token = connect(facebook, decline=("leads_retrieval",))

    permissions = facebook.graph.ok("GET", "/me/permissions", token)["data"]
    debug = facebook.graph.ok("GET", "/debug_token", f"{APP_ID}|{APP_SECRET}", input_token=token)["data"]

    assert {"permission": "leads_retrieval", "status": "declined"} in permissions
    assert {"permission": "pages_show_list", "status": "granted"} in permissions
    assert "leads_retrieval" not in debug["scopes"] and "pages_show_list" in debug["scopes"]
    assert debug["type"] == "USER" and debug["is_valid"] is True and debug["user_id"] == facebook.dana()["id"]


def test_only_the_pages_the_user_ticks_are_listed_by_me_accounts_and_debug_token(facebook: Facebook) -> None:
    first, second = (page["id"] for page in facebook.dana()["pages"])
    _, token = connect(facebook, pages=[second])

    accounts = facebook.graph.ok("GET", "/me/accounts", token)["data"]
    debug = facebook.graph.ok("GET", "/debug_token", f"{APP_ID}|{APP_SECRET}", input_token=token)["data"]

    assert [page["id"] for page in accounts] == [second]
    assert accounts[0]["access_token"].startswith("EAA") and "MANAGE" in accounts[0]["tasks"]
    assert {"scope": "leads_retrieval", "target_ids": [second]} in debug["granular_scopes"]
    assert first not in str(debug)


def test_a_declined_permission_is_asked_again_only_with_auth_type_rerequest(facebook: Facebook) -> None:
    connect(facebook, decline=("leads_retrieval",))

    _, plain = login(facebook.url, LEAD_PERMISSIONS)
    answer, rerequested = login(facebook.url, LEAD_PERMISSIONS, auth_type="rerequest")
    token = facebook.graph.ok("GET", "/oauth/access_token", None, **exchange_params(callback(answer)["code"]))

    assert "permission" not in plain.boxes, "granted ones are not asked again, declined ones stay declined"
    assert [p for p, _ in rerequested.boxes["permission"]] == ["leads_retrieval"]
    permissions = facebook.graph.ok("GET", "/me/permissions", token["access_token"])["data"]
    assert {"permission": "leads_retrieval", "status": "granted"} in permissions
    assert all(p["status"] == "granted" for p in permissions)


def test_cancelling_the_dialog_redirects_with_access_denied(facebook: Facebook) -> None:
    answer, _ = login(facebook.url, LEAD_PERMISSIONS, action="cancel")

    assert callback(answer) == {
        "error_reason": "user_denied",
        "error": "access_denied",
        "error_description": "Permissions error.",
        "state": "st4te",
    }


def test_an_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(facebook: Facebook) -> None:
    url = dialog_url(facebook.url, LEAD_PERMISSIONS).replace("8000", "9999")

    page = requests.get(url, timeout=10, allow_redirects=False)

    assert page.status_code == 400 and "URL blocked" in page.text


def test_codes_are_single_use_bound_to_the_redirect_uri_and_the_secret(facebook: Facebook) -> None:
    code = callback(login(facebook.url, LEAD_PERMISSIONS)[0])["code"]
    other = callback(login(facebook.url, LEAD_PERMISSIONS)[0])["code"]

    wrong_secret = error_of(exchange(facebook.graph, code, client_secret="nope"))
    wrong_uri = error_of(exchange(facebook.graph, code, redirect_uri=REDIRECT_URI + "x"))
    first = exchange(facebook.graph, code)
    again = error_of(exchange(facebook.graph, code))
    unknown = error_of(exchange(facebook.graph, other + "x"))

    assert (wrong_secret["code"], wrong_secret["message"]) == (1, "Error validating client secret.")
    assert (wrong_uri["code"], wrong_uri["error_subcode"]) == (100, 36008)
    assert first.status_code == 200
    assert (again["code"], again["error_subcode"]) == (100, 36009)
    assert unknown["code"] == 100


def test_the_long_lived_exchange_lasts_60_days_and_its_page_tokens_never_expire(facebook: Facebook) -> None:
    _, short = connect(facebook)
    params = {"grant_type": "fb_exchange_token", "client_id": APP_ID, "client_secret": APP_SECRET}
    long = facebook.graph.ok("GET", "/oauth/access_token", None, fb_exchange_token=short, **params)
    page_token = facebook.graph.ok("GET", "/me/accounts", long["access_token"])["data"][0]["access_token"]
    app_token = f"{APP_ID}|{APP_SECRET}"

    user_debug = facebook.graph.ok("GET", "/debug_token", app_token, input_token=long["access_token"])["data"]
    page_debug = facebook.graph.ok("GET", "/debug_token", app_token, input_token=page_token)["data"]

    assert long["expires_in"] == 5183944 and long["access_token"] != short
    assert user_debug["expires_at"] - time.time() > 59 * 86400
    assert user_debug["data_access_expires_at"] - time.time() > 89 * 86400
    assert page_debug["type"] == "PAGE" and page_debug["expires_at"] == 0 and page_debug["profile_id"]


def test_an_expired_token_answers_190_463_and_cannot_be_exchanged(facebook: Facebook) -> None:
    token = facebook.token(long_lived=False)["access_token"]
    facebook.admin.set_expiry(token=token, expires_at=time.time() - 1)

    response = facebook.graph.get("/me", token)
    params = {"grant_type": "fb_exchange_token", "client_id": APP_ID, "client_secret": APP_SECRET}
    exchanged = error_of(facebook.graph.get("/oauth/access_token", None, fb_exchange_token=token, **params))

    error = error_of(response)
    assert (error["code"], error["error_subcode"], error["type"]) == (190, 463, "OAuthException")
    assert error["message"].startswith("Error validating access token: Session has expired on")
    assert response.headers["www-authenticate"].startswith('OAuth "Facebook Platform" "invalid_token"')
    assert (exchanged["code"], exchanged["error_subcode"]) == (190, 463)


def test_debug_token_reports_settable_expiries_and_invalid_tokens(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]
    soon = int(time.time()) + 6 * 86400
    facebook.admin.set_expiry(token=token, data_access_expires_at=soon, expires_at=soon + 3600)
    app_token = f"{APP_ID}|{APP_SECRET}"

    debug = facebook.graph.ok("GET", "/debug_token", app_token, input_token=token)["data"]
    garbage = facebook.graph.ok("GET", "/debug_token", app_token, input_token="EAAnope")["data"]

    assert (debug["data_access_expires_at"], debug["expires_at"]) == (soon, soon + 3600)
    assert garbage["is_valid"] is False and garbage["error"]["code"] == 190


def test_delete_me_permissions_revokes_the_user_and_page_tokens_with_458(facebook: Facebook) -> None:
    tokens = facebook.token()
    page_token = next(iter(tokens["page_tokens"].values()))

    revoked = facebook.graph.ok("DELETE", "/me/permissions", tokens["access_token"])
    user_error = error_of(facebook.graph.get("/me", tokens["access_token"]))
    page_error = error_of(facebook.graph.get("/me", page_token))

    assert revoked == {"success": True}
    assert (user_error["code"], user_error["error_subcode"]) == (190, 458)
    assert (page_error["code"], page_error["error_subcode"]) == (190, 458)
    assert facebook.admin.grants() == []


def test_a_password_change_invalidates_tokens_with_460(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]
    facebook.admin.invalidate_tokens(facebook.dana()["id"], subcode=460)

    error = error_of(facebook.graph.get("/me", token))

    assert (error["code"], error["error_subcode"]) == (190, 460)
    assert "changed their password" in error["message"]


def test_authlib_runs_the_login_as_the_hub_does(facebook: Facebook) -> None:
    client = OAuth2Client(
        APP_ID,
        APP_SECRET,
        scope=",".join(LEAD_PERMISSIONS),
        redirect_uri=REDIRECT_URI,
        token_endpoint_auth_method="client_secret_post",
    )
    url, state = client.create_authorization_url(f"{facebook.url}/v25.0/dialog/oauth")
    answer, _ = login_at(facebook.url, url)

    arrived = answer.headers["location"].split("#")[0]  # a browser never sends the `#_=_` fragment to the hub
    token = client.fetch_token(f"{facebook.url}/v25.0/oauth/access_token", authorization_response=arrived, state=state)

    assert callback(answer)["state"] == state
    assert token["token_type"] == "bearer" and facebook.graph.ok("GET", "/me", token["access_token"])["name"]
    client.close()


def test_one_permission_can_be_revoked_and_is_then_declined(facebook: Facebook) -> None:
    token = facebook.token()["access_token"]

    revoked = facebook.graph.ok("DELETE", "/me/permissions/leads_retrieval", token)
    permissions = facebook.graph.ok("GET", "/me/permissions", token)["data"]

    assert revoked == {"success": True}
    assert {"permission": "leads_retrieval", "status": "declined"} in permissions
