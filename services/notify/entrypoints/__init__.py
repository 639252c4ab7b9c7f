"""Notify's entry points: the webhooks and messages API, the SMS pages, the bus handlers, and the SMS sender."""
