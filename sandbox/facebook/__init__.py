"""The fake Facebook: Login, Graph (Pages and Lead Ads), webhooks, and its admin API."""
