"""HTTP routes of the callrouter service (routing numbers, alerts and voice webhooks arrive with their issues)."""

from shared.http import Api

api = Api("callrouter", "1.0.0", "Call routing: IVR, responder dialing, voicemail, call-routing alerts.")
