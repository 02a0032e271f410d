"""Google Calendar through the Calendar API v3: https://developers.google.com/calendar/api/v3/reference"""
