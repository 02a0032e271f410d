"""Facebook Lead Ads: a connection's Pages, their lead forms and leads through the Graph API.
https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving"""
