"""The records' change feed: `updated_since` pages records and tombstones on (time, id); a contact deleted at the
provider is a tombstone (`{"id", "deleted_at"}`) until the retention sweep, after the window, expires it; a
disconnect that deletes the data leaves a tombstone per record; every record table writes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update

from crm.kinds import kinds
from crm.models import TombstoneRow
from sync.celery_app import make_celery
from tests.google.conftest import new_account
from tests.privacy.conftest import PrivacyHub


def test_a_deleted_contact_is_a_tombstone_in_the_feed_until_the_retention_sweep(privacy_hub: PrivacyHub) -> None:
    hub, admin = privacy_hub, privacy_hub.google.admin
    tag = uuid.uuid4().hex[:8]
    browser = hub.google.browser(user=f"follower-{tag}", workspace=f"ws-feed-{tag}")
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    account = new_account(admin, contacts=0)
    names = [admin.add_contact(account, {"names": [{"givenName": f"Feed{i}"}]}) for i in range(4)]
    connection_id = hub.google.connect(browser, account)
    assert hub.google.wait_run(browser, connection_id)["status"] == "succeeded"

    first = hub.feed(browser, "contacts", since, limit=3)
    assert sorted(item["external_id"] for item in first) == sorted(names), "each record once across pages"
    assert [(i["updated_at"], i["id"]) for i in first] == sorted((i["updated_at"], i["id"]) for i in first)
    record_id = next(item["id"] for item in first if item["external_id"] == names[0])

    admin.delete_contact(account, names[0])
    assert hub.google.sync_now(browser, connection_id)["status"] == "succeeded"
    after = hub.feed(browser, "contacts", since, limit=2)
    stones = [item for item in after if "deleted_at" in item]
    assert [set(stone) for stone in stones] == [{"id", "deleted_at"}] and stones[0]["id"] == record_id
    assert sorted(item["external_id"] for item in after if "external_id" in item) == sorted(names[1:])
    assert after[-1] == stones[0], "the deletion is the newest change"

    with hub.google.sessions() as session, session.begin():  # the clock moves past the retention window
        session.execute(
            update(TombstoneRow)
            .where(TombstoneRow.record_id == uuid.UUID(record_id))
            .values(deleted_at=datetime.now(UTC) - timedelta(days=hub.google.settings.retention_days + 1))
        )
    long_ago = (datetime.now(UTC) - timedelta(days=hub.google.settings.retention_days + 10)).isoformat()
    assert record_id in {item["id"] for item in hub.feed(browser, "contacts", long_ago)}, "kept until the sweep"
    swept = make_celery(hub.google.settings).send_task("synchub.maintenance.enforce_retention").get(timeout=60)
    assert swept["tombstones_expired"] >= 1
    assert record_id not in {item["id"] for item in hub.feed(browser, "contacts", long_ago)}

    kept = {item["id"] for item in after if "external_id" in item}
    gone = browser.delete(f"{hub.url}/api/v1/connections/{connection_id}", params={"delete_data": "true"})
    assert gone.status_code == 200, gone.text
    last = hub.feed(browser, "contacts", since)
    assert {item["id"] for item in last} == kept and all(set(item) == {"id", "deleted_at"} for item in last)


def test_every_record_kind_table_writes_tombstones_on_delete(privacy_hub: PrivacyHub) -> None:
    with privacy_hub.google.sessions() as session:
        triggered = set(
            session.scalars(
                text(
                    "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_proc p ON p.oid = t.tgfoid WHERE p.proname = 'crm_tombstone'"
                )
            )
        )
    assert {kind.table.name for kind in kinds().values()} <= triggered
