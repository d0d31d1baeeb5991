"""Local fakes of the outside vendors (APNs, FCM, Twilio) for tests and `make up`."""
