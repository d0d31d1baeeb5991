"""HTTP routes of the coverage service (coverage requests arrive with their issue)."""

from shared.http import Api

api = Api("coverage", "1.0.0", "Coverage requests: ask a colleague to take your shifts.")
