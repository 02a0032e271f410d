"""CalDAV calendars (iCloud, Fastmail, Nextcloud, Radicale...) with an app password: connect by form, sync by
sync-collection or ctag/etag, events into the CRM's calendar event kind."""
