"""Google Contacts through the People API: https://developers.google.com/people/api/rest/v1/people.connections/list"""
