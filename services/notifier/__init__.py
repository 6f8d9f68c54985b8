"""Notifier: job outcomes to live streams and to tenants' signed webhooks, with retries."""
