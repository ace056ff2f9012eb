"""A local, stateful stand-in for the Mailchimp Marketing API v3 and its OAuth flow.

It deliberately imports nothing from the rest of mcsync, so it cannot share the client's mistakes.
"""
