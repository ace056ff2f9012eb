"""mcsync: a one-way mirror of an app's Postgres contacts into Mailchimp audiences."""

__version__ = "0.1.0"
